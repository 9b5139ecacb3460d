"""A sick database — locked by another process, full, read-only — is a fault of the database, not of the
job: the write waits and is tried again, a posted clip is never refunded, a created task's id is never
lost, and a job caught by it carries on once the database takes writes again, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.errors import StorageError
from core.jobs import JobStatus
from core.spec import GenerationSpec
from providers.wavespeed import WaveSpeedProvider
from services.intake import Requester
from services.polling import PollPolicy
from services.progress import JobCard
from storage.db import SqliteDatabase
from tests.builders import Services, built_services
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.test_job_service import RecordingReporter

SPEC = GenerationSpec(mode="t2v", quality="standard", duration=6, prompt="a lighthouse in a storm")
PRICES = {"wavespeed": {"hailuo-2.3": {"t2v-standard-6s": 280_000, "i2v-standard-6s": 280_000}}}
BUSY_TIMEOUT_MS = 20  # how long the bot's writes wait for a lock before counting as "database busy"


@contextlib.contextmanager
def holding_the_database(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's write lock on the file, held until the block ends (as a backup tool or a second
    copy of the bot would hold it)."""
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield holder
        holder.execute("ROLLBACK")
    finally:
        holder.close()


async def wait_until(condition: object, timeout: float = 20) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - another task's state, no event to wait on
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def services(tmp_path: Path, fake: FakeWaveSpeed) -> AsyncIterator[Services]:
    provider = WaveSpeedProvider("ws-test-key", fake.base_url, timeout=5)
    policy = PollPolicy(dense=0.05, sparse_cap=0.2, error_first=0.05)
    async with built_services(
        tmp_path, {"wavespeed": provider}, PRICES, edit_interval=0, poll_policy=policy,
        storage_retry_seconds=0.02, storage_retry_max_seconds=0.1,
    ) as built:  # fmt: skip
        await built.store.db.set_busy_timeout(BUSY_TIMEOUT_MS)
        yield built


async def writer_pragma(db: SqliteDatabase, pragma: str) -> None:
    """Set a pragma on the bot's own writer connection (its file-size cap, or read-only), between writes."""
    async with db._write_lock:  # the fault is injected where the bot writes
        assert db._writer is not None
        await db._writer.execute(f"PRAGMA {pragma}")


# ----- the database layer ----------------------------------------------------------------------------------


async def test_a_full_disk_is_a_storage_error_and_the_writer_recovers_once_space_is_freed(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "jobs.db") as db:
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE filler (data BLOB)")
        pages = (await db.fetchone("PRAGMA page_count"))[0]
        await writer_pragma(db, f"max_page_count = {pages + 2}")
        # SQLite rolls the whole transaction back by itself on SQLITE_FULL; a second ROLLBACK used to
        # fail with "no transaction is active" and hide the StorageError.
        with pytest.raises(StorageError, match="full"):
            async with db.transaction() as conn:
                for _ in range(50):
                    await conn.execute("INSERT INTO filler VALUES (?)", (b"x" * 3000,))
        await writer_pragma(db, "max_page_count = 1073741823")
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO filler VALUES (?)", (b"y",))
        assert (await db.fetchone("SELECT count(*) FROM filler"))[0] == 1


async def test_a_lock_held_past_the_busy_timeout_is_a_storage_error(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "jobs.db") as db:
        await db.set_busy_timeout(BUSY_TIMEOUT_MS)
        with holding_the_database(db.path), pytest.raises(StorageError, match="locked"):
            async with db.transaction():
                pass


async def test_a_read_only_database_is_a_storage_error(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "jobs.db") as db:
        await writer_pragma(db, "query_only = 1")
        with pytest.raises(StorageError, match="readonly"):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")


# ----- running jobs --------------------------------------------------------------------------------------


class LockingReporter(RecordingReporter):
    """Posts the clip, and at that moment another process takes the database's write lock."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.lock: contextlib.ExitStack = contextlib.ExitStack()

    async def deliver(self, card: JobCard, clip: Path | None) -> None:
        await super().deliver(card, clip)
        self.lock.enter_context(holding_the_database(self.path))


async def test_a_busy_database_at_settle_never_refunds_a_posted_clip(tmp_path: Path) -> None:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.1) as fake, services(tmp_path, fake) as built:
        job = await built.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        reporter = LockingReporter(built.store.db.path)
        task = built.runner.start(job, reporter)
        await wait_until(lambda: bool(reporter.delivered) and built.crew.store.waiting > 0)
        # The clip is out and the settle waits on the lock: no "failed", no refund meanwhile.
        assert all(card.stage != "failed" for card in reporter.cards)
        reporter.lock.close()
        final = await asyncio.wait_for(task, 20)
        assert final is not None and final.status == JobStatus.DELIVERED
        totals = await built.store.ledger_totals(job.id)
        assert (totals.settled, totals.refunded, totals.outstanding) == (280_000, 0, 0)
        assert len(reporter.delivered) == 1 and all(card.stage != "failed" for card in reporter.cards)


async def test_a_busy_database_across_the_submit_answer_keeps_the_task_id(tmp_path: Path) -> None:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.1) as fake, services(tmp_path, fake) as built:
        fake.slow_next_submit(0.3)
        job = await built.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        reporter = RecordingReporter()
        task = built.runner.start(job, reporter)
        await wait_until(lambda: (run := built.runner.running(job.id)) is not None and run.submitting)
        with holding_the_database(built.store.db.path):
            # The task is created and answered while the database is locked: its id waits in memory.
            await wait_until(lambda: (run := built.runner.running(job.id)) is not None and run.task_id is not None)
            await wait_until(lambda: built.crew.store.waiting > 0)
        final = await asyncio.wait_for(task, 20)
        assert final is not None and final.status == JobStatus.DELIVERED
        assert final.provider_task_id is not None and len(fake.submits) == 1
        assert fake.poll_count(final.provider_task_id) >= 1
        assert (await built.store.ledger_totals(job.id)).settled == 280_000


async def test_a_job_caught_by_a_read_only_database_carries_on_once_it_is_writable(tmp_path: Path) -> None:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.1) as fake, services(tmp_path, fake) as built:
        job = await built.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        await writer_pragma(built.store.db, "query_only = 1")
        reporter = RecordingReporter()
        task = built.runner.start(job, reporter)
        await wait_until(lambda: built.crew.store.waiting > 0)
        assert not task.done() and fake.submits == []  # nothing paid for while nothing can be recorded
        await writer_pragma(built.store.db, "query_only = 0")
        final = await asyncio.wait_for(task, 20)
        assert final is not None and final.status == JobStatus.DELIVERED
        assert (await built.store.ledger_totals(job.id)).settled == 280_000


async def test_a_job_caught_by_a_full_disk_carries_on_once_space_is_freed(tmp_path: Path) -> None:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.1) as fake, services(tmp_path, fake) as built:
        db, store = built.store.db, built.store
        job = await built.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        other = await built.jobs.create(SPEC, Requester(2, 10, 20), command="video")
        # The file may not grow any more, and the job history's last page is filled up: the job's first
        # state change needs a new page, as every write does on a full disk sooner or later.
        pages = (await db.fetchone("PRAGMA page_count"))[0]
        await writer_pragma(db, f"max_page_count = {pages}")
        with pytest.raises(StorageError, match="full"):
            for _ in range(10_000):
                await store.set_status(other.id, JobStatus.RESERVED, "filler")
        reporter = RecordingReporter()
        task = built.runner.start(job, reporter)
        await wait_until(lambda: built.crew.store.waiting > 0)
        assert not task.done()
        await writer_pragma(db, "max_page_count = 1073741823")  # space freed
        final = await asyncio.wait_for(task, 20)
        assert final is not None and final.status == JobStatus.DELIVERED
        totals = await store.ledger_totals(job.id)
        assert (totals.settled, totals.outstanding) == (280_000, 0)


async def test_a_command_on_a_locked_database_is_refused_at_once_with_nothing_charged(tmp_path: Path) -> None:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.1) as fake, services(tmp_path, fake) as built:
        with holding_the_database(built.store.db.path), pytest.raises(StorageError):
            await built.jobs.create(SPEC, Requester(1, 10, 20), command="video")
        assert (await built.store.ledger_totals()).reserved == 0


async def test_an_input_image_that_cannot_be_kept_is_a_storage_fault_with_nothing_charged(tmp_path: Path) -> None:
    from core.spec import ImageInput

    async with FakeWaveSpeed("ws-test-key", duration_s=0.1) as fake, services(tmp_path, fake) as built:
        inputs = tmp_path / "inputs"
        for leftover in inputs.iterdir():
            leftover.unlink()
        inputs.rmdir()
        inputs.write_bytes(b"")  # where the images go, the disk refuses (as full or read-only would)
        image = ImageInput(data=b"\xff\xd8\xff" + bytes(100), mime="image/jpeg", width=640, height=480)
        spec = GenerationSpec(mode="i2v", quality="standard", duration=6, prompt="", image=image)
        with pytest.raises(StorageError, match="input image"):
            await built.jobs.create(spec, Requester(1, 10, 20), command="animate")
        assert (await built.store.ledger_totals()).reserved == 0
        assert fake.submits == []


async def test_a_write_cancelled_while_it_waits_for_the_writer_stops(tmp_path: Path) -> None:
    # A stop cancels job tasks mid-write; a cancellation lost there leaves a job running after the stop.
    async with SqliteDatabase(tmp_path / "jobs.db") as db:
        for _ in range(50):

            async def write_forever() -> None:
                while True:
                    async with db.transaction() as conn:
                        await conn.execute(
                            "INSERT INTO meta (key, value) VALUES ('k', 'v') ON CONFLICT(key) DO UPDATE SET value = 'w'"
                        )

            task = asyncio.create_task(write_forever())
            await asyncio.sleep(0)  # let it start
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)  # the bound only turns a lost cancellation into a failure
