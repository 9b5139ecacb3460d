"""Provider cool-downs for the whole deployment (services/cooldowns.py, storage/cooldowns.py).

The router's part and the sharing logic on an in-memory board (pure, no clock but the test's); then, on a real
PostgreSQL, several "processes" (each its own database pool, listening connection, router and SharedCooldowns):
a provider taken out in one is out in the others until the same moment, in one started later too, back
everywhere when one sees it answer, and the listener survives its connection being killed. On SQLite, a
cool-down survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.errors import StorageError
from core.sharing import Cooldown
from core.tasks import FailureKind
from services.cooldowns import SharedCooldowns
from services.routing import ProviderRouter
from storage.connect import database_for
from storage.cooldowns import SqlCooldownBoard
from storage.postgres import PgDatabase
from tests.waiting import until

NAMES = ("first", "second")
START = 1_000.0


@dataclass
class Clocks:
    """A monotonic clock and a wall clock that move together, only when the test moves them (the wall clock
    starts at the real time, so the board's "still running" filter sees the cool-downs as running)."""

    mono: float = START
    wall_start: float = field(default_factory=time.time)

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall_start + (self.mono - START)

    def advance(self, seconds: float) -> None:
        self.mono += seconds


def new_router(clocks: Clocks, **options: Any) -> ProviderRouter:
    # Only the names matter to cool-downs (candidates are tested in tests/test_failover_and_cancel.py).
    return ProviderRouter(dict.fromkeys(NAMES), clock=clocks.monotonic, cooldown_seconds=300, **options)  # type: ignore[arg-type]


# ----- the router's part ---------------------------------------------------------------------------------------


@dataclass
class Heard:
    """A CooldownListener remembering what it was told."""

    told: list[tuple[str, ...]] = field(default_factory=list)

    def taken_out(self, name: str, until: float, reason: str) -> None:
        self.told.append(("out", name, str(until), reason))

    def brought_back(self, name: str) -> None:
        self.told.append(("back", name))


def test_the_router_tells_its_listener_what_it_decides_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    clocks, heard = Clocks(), Heard()
    router = new_router(clocks, listener=heard, failure_threshold=2)
    router.record_success("first")  # in rotation: nothing to tell
    router.record_failure("first", FailureKind.UNAVAILABLE)
    router.record_failure("first", FailureKind.BAD_REQUEST)  # not an outage
    assert heard.told == []
    router.record_failure("first", FailureKind.UNAVAILABLE)
    assert heard.told == [("out", "first", str(START + 300), "2 failure(s), last: unavailable")]
    assert router.out_until("first") == START + 300 and router.out_until("second") is None
    router.record_success("first")
    assert heard.told[-1] == ("back", "first") and router.available("first")

    caplog.clear()
    router.hold_out("second", START + 60)  # another process's decision: no WARNING here, nothing told back
    assert not router.available("second") and router.out_until("second") == START + 60
    clocks.advance(60)
    assert router.available("second") and router.out_until("second") is None
    router.hold_out("second", START + 120)
    router.bring_back("second")
    assert router.available("second")
    assert len(heard.told) == 2 and "WARNING" not in caplog.text


def test_a_cooldown_of_zero_seconds_is_not_shared() -> None:
    heard = Heard()
    router = new_router(Clocks(), listener=heard)
    router.cooldown_seconds = 0
    router.record_failure("first", FailureKind.AUTH)
    assert router.available("first") and heard.told == []


# ----- sharing, on a board in memory ---------------------------------------------------------------------------


class MemoryBoard:
    """A CooldownBoard in memory, shared by the SharedCooldowns of one test like processes on one database.
    `sick` makes every call fail as a database that is away does; `drop_listeners` kills their connections."""

    def __init__(self) -> None:
        self.rows: dict[str, Cooldown] = {}
        self.sick = False
        self._listeners: list[asyncio.Queue[str | None]] = []

    def _check(self) -> None:
        if self.sick:
            raise StorageError("database unavailable: connection refused")

    async def put(self, cooldown: Cooldown) -> None:
        self._check()
        self.rows[cooldown.provider] = cooldown
        self._tell(cooldown.provider)

    async def clear(self, provider: str) -> None:
        self._check()
        self.rows.pop(provider, None)
        self._tell(provider)

    async def running(self, now: datetime) -> list[Cooldown]:
        self._check()
        return [cooldown for cooldown in self.rows.values() if cooldown.until > now]

    @contextlib.asynccontextmanager
    async def changes(self) -> AsyncIterator[AsyncIterator[str]]:
        self._check()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._listeners.append(queue)
        try:
            yield self._heard(queue)
        finally:
            self._listeners.remove(queue)

    @staticmethod
    async def _heard(queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
        while True:
            provider = await queue.get()
            if provider is None:
                raise StorageError("lost the connection listening on the database: terminated")
            yield provider

    def _tell(self, provider: str) -> None:
        for queue in self._listeners:
            queue.put_nowait(provider)

    def drop_listeners(self) -> None:
        for queue in self._listeners:
            queue.put_nowait(None)

    @property
    def listening(self) -> int:
        return len(self._listeners)


@contextlib.asynccontextmanager
async def sharing(board: Any, clocks: Clocks) -> AsyncIterator[tuple[ProviderRouter, SharedCooldowns]]:
    router = new_router(clocks)
    shared = SharedCooldowns(router, board, wall=clocks.wall, retry_seconds=0.02, max_retry_seconds=0.05)
    await shared.start()
    try:
        yield router, shared
    finally:
        await shared.stop()


async def test_processes_on_one_board_end_a_cooldown_at_the_same_moment() -> None:
    board, clocks = MemoryBoard(), Clocks()
    async with sharing(board, clocks) as (one, _), sharing(board, clocks) as (other, _):
        await until(lambda: board.listening == 2)
        one.record_failure("first", FailureKind.AUTH)
        await until(lambda: not other.available("first"))
        assert other.available("second")
        clocks.advance(299.999)
        assert not one.available("first") and not other.available("first")
        clocks.advance(0.002)  # the same moment, to within a millisecond (the board keeps milliseconds)
        assert one.available("first") and other.available("first")


async def test_a_change_the_board_could_not_take_holds_here_and_is_shared_once_it_can(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.cooldowns")
    board, clocks = MemoryBoard(), Clocks()
    async with sharing(board, clocks) as (one, _), sharing(board, clocks) as (other, _):
        await until(lambda: board.listening == 2)
        board.sick = True
        one.record_failure("first", FailureKind.BALANCE)
        await until(lambda: "could not share a change" in caplog.text)
        assert not one.available("first") and other.available("first")
        board.drop_listeners()  # the hiccup reaches the listeners too; reconnecting re-reads the board...
        await until(lambda: "lost touch with the other processes" in caplog.text)
        board.sick = False
        await until(lambda: not other.available("first"))  # ...which never undoes a change not written yet
        assert not one.available("first")
        await until(
            lambda: "changes shared again" in caplog.text and "following the other processes again" in caplog.text
        )
    assert caplog.text.count("could not share a change") == 1, "one WARNING per outage, not one per retry"


async def test_a_change_made_while_a_process_was_not_listening_is_read_when_it_listens_again() -> None:
    board, clocks = MemoryBoard(), Clocks()
    async with sharing(board, clocks) as (router, _):
        await until(lambda: board.listening == 1)
        board.sick = True
        board.drop_listeners()
        await until(lambda: board.listening == 0)
        until_moment = datetime.fromtimestamp(clocks.wall() + 120, UTC)
        board.rows["second"] = Cooldown("second", until_moment, "1 failure(s), last: auth")  # no one told
        board.sick = False
        await until(lambda: not router.available("second"))
        assert router.out_until("second") == pytest.approx(START + 120, abs=0.001)


async def test_a_provider_brought_back_by_one_process_is_back_for_all() -> None:
    board, clocks = MemoryBoard(), Clocks()
    async with sharing(board, clocks) as (one, _), sharing(board, clocks) as (other, _):
        await until(lambda: board.listening == 2)
        one.record_failure("first", FailureKind.AUTH)
        await until(lambda: not other.available("first"))
        other.record_success("first")  # every candidate was out, so it was tried anyway, and it answered
        await until(lambda: one.available("first"))
        assert board.rows == {}


# ----- on a real PostgreSQL: processes with their own connections ---------------------------------------------


@contextlib.asynccontextmanager
async def process(url: str, clocks: Clocks) -> AsyncIterator[ProviderRouter]:
    """One process's share of it: its own pool and listening connection, router and SharedCooldowns."""
    async with PgDatabase(url, pool_size=2) as db, sharing(SqlCooldownBoard(db), clocks) as (router, _):
        yield router


async def listeners(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = 'LISTEN hailuo_cooldown'"
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def _count_is(url: str, expected: int) -> bool:
    return await listeners(url) == expected


async def test_on_postgresql_a_provider_taken_out_in_one_process_is_out_in_every_other_until_the_same_moment(
    pg_url: str,
) -> None:
    clocks = Clocks()
    async with process(pg_url, clocks) as gateway, process(pg_url, clocks) as worker:
        await until(lambda: _count_is(pg_url, 2))
        worker.record_failure("first", FailureKind.AUTH)  # a worker's submit was refused: bad key
        await until(lambda: not gateway.available("first"))  # heard through NOTIFY, not read on a timer
        assert gateway.available("second")
        async with process(pg_url, clocks) as later:  # started during the cool-down: read at start
            assert not later.available("first")
            ends = [router.out_until("first") for router in (gateway, worker, later)]
            assert all(end is not None and end == pytest.approx(START + 300, abs=0.002) for end in ends)
            clocks.advance(299.999)
            assert not any(router.available("first") for router in (gateway, worker, later))
            clocks.advance(0.002)
            assert all(router.available("first") for router in (gateway, worker, later))


async def test_on_postgresql_a_provider_that_answers_well_in_one_process_is_back_in_all(pg_url: str) -> None:
    clocks = Clocks()
    async with process(pg_url, clocks) as one, process(pg_url, clocks) as other:
        await until(lambda: _count_is(pg_url, 2))
        one.record_failure("second", FailureKind.BALANCE)
        await until(lambda: not other.available("second"))
        other.record_success("second")
        await until(lambda: one.available("second"))


async def test_on_postgresql_the_listener_survives_its_connection_being_killed(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.cooldowns")
    clocks = Clocks()
    async with process(pg_url, clocks) as one, process(pg_url, clocks) as other:
        await until(lambda: _count_is(pg_url, 2))
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN hailuo_cooldown'"
            )
        await until(lambda: caplog.text.count("following the other processes again") == 2)
        assert caplog.text.count("lost touch with the other processes") == 2
        assert "lost the connection listening on the database" in caplog.text
        one.record_failure("first", FailureKind.AUTH)
        await until(lambda: not other.available("first"))


async def test_on_postgresql_a_quiet_listener_is_checked_and_hears_only_what_was_committed(pg_url: str) -> None:
    async with PgDatabase(pg_url, listen_check_s=0.05) as db, db.listen("hailuo_test") as heard:
        first = asyncio.ensure_future(anext(heard))
        try:
            await until(lambda: _checked(pg_url))  # quiet for a while: the connection was checked
            with contextlib.suppress(RuntimeError):
                async with db.transaction() as conn:
                    await conn.notify("hailuo_test", "rolled back")
                    raise RuntimeError("the write fails")
            async with db.transaction() as conn:
                await conn.notify("hailuo_test", "committed")
            assert await asyncio.wait_for(first, 30) == "committed"
        finally:
            first.cancel()


async def _checked(url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'SELECT 1'"
        )
        row = await cursor.fetchone()
        return bool(row and row[0])


async def test_on_sqlite_a_cooldown_survives_a_restart(tmp_path: Path) -> None:
    clocks, url = Clocks(), f"sqlite:///{tmp_path / 'hailuo.db'}"
    async with database_for(url) as db:
        board = SqlCooldownBoard(db)
        async with sharing(board, clocks) as (router, _):
            router.record_failure("first", FailureKind.AUTH)
            await until(lambda: _has_rows(board, clocks))
    clocks.advance(100)
    async with database_for(url) as db, sharing(SqlCooldownBoard(db), clocks) as (router, _):
        assert not router.available("first") and router.available("second")
        assert router.out_until("first") == pytest.approx(START + 300, abs=0.002)


async def _has_rows(board: SqlCooldownBoard, clocks: Clocks) -> bool:
    return bool(await board.running(datetime.fromtimestamp(clocks.wall(), UTC)))
