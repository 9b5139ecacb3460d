"""When to poll a provider next: sparse while the task almost certainly runs, dense where it usually ends.

Pure arithmetic (no clock, no I/O), so it is tested without sleeping and replayed by the benchmark.

Why this shape. A poll costs a request (providers rate-limit, some bill per call); a late poll costs
notice delay (the clip sits finished while nobody looks). Both only matter where tasks end: a Hailuo
task that usually takes 60 s is essentially never done at 10 s, so polling then buys nothing. So:

1. **Approach** (before the window where tasks end): wait a fixed share (`approach`) of the time
   left until the window opens, capped at `sparse_cap`. The blind spot shrinks as the window nears,
   so a task that ends unusually early is still seen within a fraction of how early it was, and the
   approach costs only about log(window start / dense) / log(1 / (1 - approach)) polls (≈ 5).
2. **Window** (from `low` to `high`, where most tasks end): poll every `dense` seconds. The notice
   delay there is uniform in [0, dense]: p50 ≈ dense / 2, p99 ≈ dense.
3. **Tail** (past `high`, stragglers): stretch the interval by `tail_slope` seconds per second
   past the window, up to `tail_cap`, so a stuck task does not burn a request a second for minutes,
   while even a straggler is noticed within `tail_cap`. A change (progress moved, queue → running)
   snaps back to `dense`: the task is alive and may be about to end.

The window comes from history: `typical` is the median of past durations of the same
provider/model/quality/duration (JobService's `_typical_seconds`); `low`/`high` are low and high
quantiles of the same history when known (about p05 and p95), else 0.5× and 1.5× the median.

Expected cost, durations uniform in 30–90 s with a typical of 60 s (window 30–90 s), a poll right
after submit, a 20 ms round trip (see `simulate`; tests/test_polling.py checks these figures):

    schedule                          polls/job   notice p50   notice p99   requests vs the SDK
    SDK run() loop (every 1.0 s)         ~60         0.5 s        1.0 s
    this, dense 1.5 s (default)          ~28         0.75 s       1.5 s        0.46×
    this, with a known spread (p05/p95)  ~26         0.75 s       1.5 s        0.43×
    this, dense 1.0 s                    ~38         0.5 s        1.0 s        0.63×
    this, dense 2.0 s                    ~22         1.0 s        2.0 s        0.37×

Matching the SDK's notice delay *and* halving its requests is not possible for this distribution: a
notice delay of at most 1 s needs a poll a second over the 30 s where tasks end (≈ 30 polls per job
on average), and half the SDK's ~60 is ≈ 30, which leaves nothing for the approach. Hence dense =
1.5 s: well inside the targets (p50 ≤ 1.5 s, p99 ≤ 5 s) at under half the requests. A stale median
degrades gently: 50 % too high (no history yet, config default) keeps p99 under 4 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Without a measured spread, the window is this share of the typical duration either side of it:
# generation times of one model/quality/duration rarely vary by more than ±50 % around the median.
DEFAULT_LOW_SHARE = 0.5
DEFAULT_HIGH_SHARE = 1.5


@dataclass(frozen=True)
class PollSchedule:
    """Seconds until the next poll of one task, from how long it has been running.

    Build one per job (`for_history`) and call `next_delay` after every poll that did not end it."""

    low: float  # seconds after submit where the dense window opens
    high: float  # ... and where it closes
    dense: float = 1.5
    approach: float = 0.4
    sparse_cap: float = 15.0
    tail_slope: float = 0.1
    tail_cap: float = 5.0
    floor: float = 0.25  # never hammer, whatever the arithmetic says

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError(f"window must satisfy 0 <= low <= high (got {self.low}, {self.high})")
        if not 0 < self.floor <= self.dense <= self.tail_cap and self.dense <= self.sparse_cap:
            raise ValueError("need 0 < floor <= dense <= tail_cap and dense <= sparse_cap")
        if not 0 < self.approach < 1:
            raise ValueError("approach must be between 0 and 1")

    @classmethod
    def for_history(
        cls,
        typical: float,
        low: float | None = None,
        high: float | None = None,
        *,
        webhooks: bool = False,
        **tuning: float,
    ) -> PollSchedule:
        """The schedule for a job whose past durations have median `typical` and, when known, the
        low/high quantiles `low`/`high` (e.g. p05 and p95 of the last few hundred jobs).

        With `webhooks`, a callback wakes the job the moment it ends, so polling is only the safety
        net for a lost callback: no dense window, just a slow beat (`webhook_schedule`)."""
        if webhooks:
            return webhook_schedule(typical)
        typical = max(typical, 1.0)
        lo = low if low is not None and 0 < low <= typical else typical * DEFAULT_LOW_SHARE
        hi = high if high is not None and high >= typical else typical * DEFAULT_HIGH_SHARE
        return cls(low=lo, high=hi, **tuning)

    def next_delay(self, elapsed: float, changed: bool = False, retry_after: float | None = None) -> float:
        """Seconds to wait after a poll made `elapsed` seconds after submit that did not end the task.

        `changed`: that poll saw something new (status or progress). `retry_after`: the provider's
        Retry-After, which is always honoured as a minimum."""
        elapsed = max(elapsed, 0.0)
        if elapsed < self.low:
            # Approach: a share of the time left until the window (never less than `dense`, so the
            # last step simply lands inside it), and never longer than the cap.
            delay = min(max(self.approach * (self.low - elapsed), self.dense), self.sparse_cap)
        elif elapsed <= self.high or changed:
            delay = self.dense
        else:
            delay = min(self.dense + self.tail_slope * (elapsed - self.high), self.tail_cap)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, retry_after)
        return max(delay, self.floor)


def webhook_schedule(typical: float) -> PollSchedule:
    """Safety-net polling when callbacks are on: every 15 s around and after the typical end, rarer
    before (a lost callback then costs at most ~15 s of notice delay, not the whole job)."""
    typical = max(typical, 1.0)
    return PollSchedule(
        low=typical * DEFAULT_LOW_SHARE,
        high=typical * DEFAULT_HIGH_SHARE,
        dense=15.0,
        approach=0.5,
        sparse_cap=30.0,
        tail_slope=0.0,
        tail_cap=15.0,
    )


class PollPacer:
    """At most `per_second` polls of one provider, evenly spaced, first come first served.

    Why. Jobs submitted together reach their dense windows together: 1,000 of them polled every
    1.5 s is ~670 requests a second for a minute. That is over providers' query limits (ToAPIs'
    default tier allows 50 a second) and was most of the bot's CPU at that load (bench). Under the
    budget a poll waits at most one gap; over it, every job's effective interval stretches to
    jobs ÷ per_second, shared fairly, instead of some jobs being starved or the provider answering 429.

    `reserve` is arithmetic on a clock passed in; the job runner sleeps the delay it returns. When several
    processes run jobs, each paces its share of the provider's budget (`set_rate`, see services.poll_share)."""

    def __init__(self, per_second: float) -> None:
        self.gap = 0.0
        self.set_rate(per_second)
        self._next = float("-inf")

    @property
    def per_second(self) -> float:
        return 1.0 / self.gap

    def set_rate(self, per_second: float) -> None:
        """Pace to `per_second` from the next reservation on (slots already handed out keep their times)."""
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.gap = 1.0 / per_second

    def reserve(self, now: float) -> float:
        """Take the next free slot; returns the seconds to wait for it (0 when the budget has room)."""
        start = max(now, self._next)
        self._next = start + self.gap
        return start - now

    def backlog(self, now: float) -> float:
        """Seconds until the next free slot: how far ahead the budget is booked (0 when it has room)."""
        return max(self._next - now, 0.0)


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll: sparse while a task almost surely runs, every `dense` seconds around where
    tasks of its kind usually end (see services/polling.py), and backing off on errors."""

    dense: float = 1.5
    sparse_cap: float = 15.0  # the longest wait while a task almost surely still runs
    error_first: float = 1.0
    error_ceiling: float = 30.0

    def schedule(self, typical: float, low: float | None, high: float | None, *, webhooks: bool) -> PollSchedule:
        if webhooks:  # a callback wakes the job; polling is only the slow safety net
            return PollSchedule.for_history(typical, low, high, webhooks=True)
        return PollSchedule.for_history(
            typical,
            low,
            high,
            dense=self.dense,
            floor=min(0.25, self.dense),
            sparse_cap=max(self.sparse_cap, self.dense),
            tail_cap=max(5.0, self.dense),
        )

    def error_delay(self, errors: int, retry_after: float | None) -> float:
        return min(max(retry_after or 0.0, self.error_first * 2.0**errors), self.error_ceiling)


class DelayRule(Protocol):
    def next_delay(self, elapsed: float, changed: bool = False, retry_after: float | None = None) -> float: ...


@dataclass(frozen=True)
class Outcome:
    polls: int  # requests spent polling, including the one that saw the end
    notice_delay: float  # seconds from the task's end to the poll that saw it


def simulate(
    rule: DelayRule,
    duration: float,
    *,
    round_trip: float = 0.0,
    first_poll_at: float = 0.0,
    max_polls: int = 100_000,
) -> Outcome:
    """Replay one task on a virtual clock: it ends `duration` s after submit; a poll at t sees it done
    when t >= duration; after a poll the caller waits `round_trip` (the request) plus the delay."""
    t, polls = first_poll_at, 0
    while polls < max_polls:
        polls += 1
        if t >= duration:
            return Outcome(polls, t - duration)
        t += round_trip + rule.next_delay(t, False, None)
    raise RuntimeError(f"no end seen after {max_polls} polls")  # pragma: no cover - a schedule bug


@dataclass(frozen=True)
class SdkLoop:
    """The official wavespeed SDK's `run()` loop for comparison (docs/providers/wavespeed.md §13): poll right after
    submit, then sleep `poll_interval` after every answer that is not terminal, no backoff."""

    poll_interval: float = 1.0

    def next_delay(self, elapsed: float, changed: bool = False, retry_after: float | None = None) -> float:
        return self.poll_interval
