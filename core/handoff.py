"""The hand-over port: how a gateway process gives a reserved job to the worker processes that run it.

Services call it when a job's card is out (`JobService.start`); the composition root passes in the job
engine (`engine.queue.JobQueue`) when `workers.separate` is on, and nothing otherwise, in which case the
process runs its jobs itself, as it always has.
"""

from __future__ import annotations

from typing import Protocol


class JobHandoff(Protocol):
    async def hand_over(self, job_id: int) -> None:
        """Queue the job for a worker; handing one job over twice queues it once."""
        ...

    async def cancel(self, job_id: int) -> str | None:
        """Ask the worker running this job to cancel it; what it answered (a `CancelOutcome` value), or
        None when no worker runs it."""
        ...

    async def withdraw(self, job_id: int) -> bool:
        """Take the job out of the queue if no worker has started it; True when it was (then no process
        will run it)."""
        ...
