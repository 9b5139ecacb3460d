"""Each process that runs jobs polls a provider at an equal share of its budget: the budget ÷ the processes
running jobs now.

`max_polls_per_second` is the provider's limit for the whole deployment. A process that runs jobs counts
those whose heartbeat the job engine has seen lately (`core.sharing.WorkerCensus`, itself included) once per
heartbeat round, and paces its own polls to its share (`Crew.share_poll_budget`): no database round trip per
poll, which at 1,000s of polls a second would cost more than the polls.

The trade-off of an equal split over one shared bucket: a worker with few jobs leaves part of its share
unused while one with many waits on its own. The deployment stays within the budget, except for up to one
heartbeat round after a worker joins (the others have not counted it yet); a worker that dies leaves its
share unused until its heartbeat is stale (`workers.stalled_after_seconds`).
"""

from __future__ import annotations

import asyncio
import logging

from core.sharing import WorkerCensus
from services.run import Crew

log = logging.getLogger(__name__)


async def follow_poll_share(crew: Crew, census: WorkerCensus, every: float) -> None:
    """Until cancelled: count the processes running jobs every `every` seconds and pace to this one's share.
    While the database cannot say, the last share holds."""
    counted, failing = 0, False
    while True:
        try:
            processes = max(await census.live_workers(), 1)
        except Exception as exc:  # the database away for a moment: the next round asks again
            if not failing:
                log.warning("poll budgets: could not count the processes running jobs (%s); keeping the shares", exc)
            failing = True
        else:
            if failing:
                log.info("poll budgets: counting the processes running jobs again")
            failing = False
            crew.share_poll_budget(processes)
            if processes != counted and crew.pacers:
                shares = ", ".join(f"{name} {pacer.per_second:g}/s" for name, pacer in crew.pacers.items())
                log.info("poll budgets: %d process(es) run jobs; this one's shares: %s", processes, shares)
            counted = processes
        await asyncio.sleep(every)
