"""What /history and /show read, and what the stored-outputs service records: protocols over storage.

A kept clip is one `StoredOutput` (its files live under data_dir/outputs); `OutputRecords` is where they
are listed, `HistoryReader` a member's jobs, newest first. Failures to reach the database raise
`core.errors.StorageError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.jobs import JobRecord


@dataclass(frozen=True)
class StoredOutput:
    job_id: int
    clip: str  # file name under data_dir/outputs
    thumbnail: str | None  # its first frame as a JPEG, when one could be made
    bytes: int  # clip and thumbnail together
    stored_at: str  # ISO 8601 UTC (core.clock.iso)


class HistoryReader(Protocol):
    async def jobs_of(self, user_id: int, *, limit: int, offset: int = 0) -> list[JobRecord]:
        """A member's jobs, newest first."""
        ...

    async def count_of(self, user_id: int) -> int: ...

    async def get(self, job_id: int) -> JobRecord | None: ...


class OutputRecords(Protocol):
    async def record_output(self, output: StoredOutput) -> None:
        """Remember a kept clip (replacing what was recorded for its job)."""
        ...

    async def output(self, job_id: int) -> StoredOutput | None: ...

    async def outputs(self) -> list[StoredOutput]:
        """Every kept clip, oldest first."""
        ...

    async def forget_outputs(self, job_ids: Sequence[int]) -> None:
        """The sweep deleted these jobs' files."""
        ...
