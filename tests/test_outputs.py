"""services.outputs on its own: keeping survives what the disk and ffmpeg do, the sweep's order and leftovers,
when a provider's link may be offered again, and the [storage] settings that drive it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from datetime import timedelta
from pathlib import Path

import pytest

from app import job_settings
from core.clock import iso, utcnow
from core.errors import StorageError
from core.history import StoredOutput
from core.jobs import JobRecord, JobStatus
from media.ffmpeg import MediaError, ffmpeg_path
from services.outputs import OutputKeeper, fresh_link
from settings import SettingsError, load_config


def job_record(**changes: object) -> JobRecord:
    stamp = iso(utcnow())
    values: dict[str, object] = dict.fromkeys(f.name for f in fields(JobRecord))
    values.update(
        id=1, created_at=stamp, updated_at=stamp, user_id=1001, command="video", mode="t2v", quality="standard",
        duration=6, optimize_prompt=True, model="hailuo-2.3", prompt="a fox", provider="minimax",
        status=JobStatus.DELIVERED, cost_micros=280_000,
    )  # fmt: skip
    values.update(changes)
    return JobRecord(**values)  # type: ignore[arg-type]


class Records:
    """An in-memory `OutputRecords` (the SQLite one runs in the end-to-end tests)."""

    def __init__(self) -> None:
        self.rows: dict[int, StoredOutput] = {}
        self.broken = False

    async def record_output(self, output: StoredOutput) -> None:
        if self.broken:
            raise StorageError("database write failed: disk I/O error")
        self.rows[output.job_id] = output

    async def output(self, job_id: int) -> StoredOutput | None:
        return self.rows.get(job_id)

    async def outputs(self) -> list[StoredOutput]:
        return sorted(self.rows.values(), key=lambda o: (o.stored_at, o.job_id))

    async def forget_outputs(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            self.rows.pop(job_id, None)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=8",
         "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def delivered(tmp_path: Path, clip: Path) -> Path:
    """A copy of the clip standing in for delivery's temporary file."""
    path = tmp_path / "tmp-output.mp4"
    path.write_bytes(clip.read_bytes())
    return path


async def test_a_clip_is_linked_in_with_its_thumbnail(tmp_path: Path, clip: Path) -> None:
    records = Records()
    keeper = OutputKeeper(tmp_path / "outputs", records)
    source = delivered(tmp_path, clip)
    kept = await keeper.stash(7, source)
    assert kept == tmp_path / "outputs" / "7.mp4" and os.path.samefile(kept, source)
    source.unlink()  # delivery removes its temporary file
    output = await keeper.record(7, kept)
    assert output is not None and records.rows[7] == output
    assert (output.clip, output.thumbnail) == ("7.mp4", "7.jpg")
    assert (tmp_path / "outputs" / "7.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert output.bytes == kept.stat().st_size + (tmp_path / "outputs" / "7.jpg").stat().st_size
    found = await keeper.stored(7)
    assert found is not None and found[1] == kept


async def test_a_copy_when_no_link_is_possible_and_no_thumbnail_is_only_a_warning(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def cross_device(*args: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    async def no_ffmpeg(*args: object, **kwargs: object) -> str:
        raise MediaError("ffmpeg exited with 1: boom")

    monkeypatch.setattr("services.outputs.os.link", cross_device)
    monkeypatch.setattr("services.outputs.ffmpeg.run_ffmpeg", no_ffmpeg)
    records = Records()
    keeper = OutputKeeper(tmp_path / "outputs", records)
    kept = await keeper.stash(3, delivered(tmp_path, clip))
    assert kept is not None and kept.read_bytes() == clip.read_bytes()
    output = await keeper.record(3, kept)
    assert output is not None and output.thumbnail is None and output.bytes == clip.stat().st_size
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["3.mp4"]
    assert "job 3: no thumbnail for the kept clip" in caplog.text


async def test_a_database_that_cannot_list_the_clip_leaves_no_file(tmp_path: Path, clip: Path) -> None:
    records = Records()
    records.broken = True
    keeper = OutputKeeper(tmp_path / "outputs", records)
    kept = await keeper.stash(4, delivered(tmp_path, clip))
    assert kept is not None
    assert await keeper.record(4, kept) is None
    assert list((tmp_path / "outputs").iterdir()) == []


async def test_keeping_off_keeps_nothing(tmp_path: Path, clip: Path) -> None:
    keeper = OutputKeeper(tmp_path / "outputs", Records(), keep_days=0)
    assert await keeper.stash(1, delivered(tmp_path, clip)) is None
    assert not (tmp_path / "outputs").exists()


async def test_sweep_removes_expired_then_oldest_over_the_cap_then_leftovers(tmp_path: Path) -> None:
    folder = tmp_path / "outputs"
    folder.mkdir()
    records = Records()
    now = utcnow()
    for job_id, age_days in ((1, 40), (2, 20), (3, 10), (4, 1)):
        (folder / f"{job_id}.mp4").write_bytes(b"x" * 100)
        (folder / f"{job_id}.jpg").write_bytes(b"y" * 10)
        stamp = iso(now - timedelta(days=age_days))
        records.rows[job_id] = StoredOutput(job_id, f"{job_id}.mp4", f"{job_id}.jpg", 110, stamp)
    old = time.time() - 7200
    for name in ("9.mp4", "9.jpg.part"):  # a stop between keeping a clip and listing it
        (folder / name).write_bytes(b"z")
        os.utime(folder / name, (old, old))
    (folder / "10.mp4").write_bytes(b"z")  # just stashed: its row is on its way
    (folder / "hailuo-5.mp4").write_bytes(b"terminal")  # the terminal's saved clip: not ours
    keeper = OutputKeeper(folder, records, keep_days=30, max_bytes=250)
    assert await keeper.sweep(now) == 2  # job 1 is past 30 days; job 2 is the oldest of three over 250 bytes
    assert sorted(records.rows) == [3, 4]
    assert sorted(p.name for p in folder.iterdir()) == ["10.mp4", "3.jpg", "3.mp4", "4.jpg", "4.mp4", "hailuo-5.mp4"]
    assert await keeper.sweep(now) == 0


async def test_fresh_link_only_within_the_providers_lifetime() -> None:
    now = utcnow()
    job = job_record(
        provider="minimax",
        status=JobStatus.DELIVERED,
        output_url="https://cdn.example/clip.mp4",
        finished_at=iso(now - timedelta(minutes=30)),
    )
    assert fresh_link(job, now) == "https://cdn.example/clip.mp4"
    assert fresh_link(job, now + timedelta(minutes=26)) is None  # within five minutes of an hour
    assert fresh_link(replace(job, provider="toapis"), now + timedelta(hours=20)) is not None
    assert fresh_link(replace(job, provider="wavespeed"), now) is None  # lifetime unknown: never offered
    assert fresh_link(replace(job, output_url="file:///tmp/x.mp4"), now) is None
    assert fresh_link(replace(job, status=JobStatus.FAILED), now) is None


def test_storage_settings_reach_the_job_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[storage]\nkeep_outputs_days = 7\nmax_outputs_gib = 0.5\n", encoding="utf-8")
    settings = job_settings(load_config(path), {})
    assert settings.keep_outputs_days == 7 and settings.max_outputs_bytes == 512 * 1024**2
    path.write_text("[storage]\nkeep_outputs_days = -1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"storage\.keep_outputs_days"):
        load_config(path)
