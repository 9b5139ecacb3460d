"""Scaling polling figures back to real durations, by replaying the poll rules on a virtual clock.

Why this is needed: the benchmark compresses provider time (a 60 s job takes 60/c s) but the bot's
poll delays are absolute seconds (1 s growing to 5 s), and so is the SDK's 1 s. So at ×c a job sees
a different part of the poll schedule than a real one would: the measured requests per job and
notice delays are those of short jobs, not of 30–90 s ones, and multiplying them by c means
nothing. The delays themselves, though, are deterministic: given when a task ends and how long a
poll round trip takes, a rule says exactly when each poll happens. So each rule is replayed here
over the run's own durations (a model check: it must reproduce what was measured at ×c) and over
the same durations ×c (the figures at real durations), with the round-trip overhead measured in
the run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bench.stats import percentile
from services.polling import PollPolicy
from tests.fakes.wavespeed_server import QUEUE_SHARE


class Rule(Protocol):
    """Delay after a poll at `elapsed` s that saw `state`; stateful rules reset in `start`."""

    def start(self) -> None: ...

    def delay(self, elapsed: float, state: str) -> float: ...


class Backoff:
    """The bot's polling before PollSchedule (kept here as the reference it is compared with): poll at
    once, then 1 s growing ×1.5 to a 5 s ceiling while nothing changes, back to 1 s on a change."""

    first, growth, ceiling = 1.0, 1.5, 5.0

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.previous_delay, self.previous_state = self.first, ""

    def delay(self, elapsed: float, state: str) -> float:
        changed, self.previous_state = state != self.previous_state, state
        self.previous_delay = self.first if changed else min(self.previous_delay * self.growth, self.ceiling)
        return self.previous_delay


class Schedule:
    """services.polling.PollSchedule, built the way services.watching builds it (through PollPolicy) from the
    typical duration; the change flag as it computes it."""

    def __init__(self, typical: float, *, webhooks: bool = False) -> None:
        self.schedule = PollPolicy().schedule(typical, None, None, webhooks=webhooks)
        self.start()

    def start(self) -> None:
        self.previous_state = ""

    def delay(self, elapsed: float, state: str) -> float:
        changed, self.previous_state = state != self.previous_state, state
        return self.schedule.next_delay(elapsed, changed)


class Sdk:
    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval

    def start(self) -> None:
        pass

    def delay(self, elapsed: float, state: str) -> float:
        return self.interval


def fake_state(elapsed: float, duration: float) -> str:
    """What the WaveSpeed stand-in reports: `created` for the first quarter, then `processing`."""
    return "queued" if elapsed < duration * QUEUE_SHARE else "processing"


def replay(rule: Rule, duration: float, *, overhead: float, first_poll_at: float) -> tuple[int, float]:
    """(polls, notice delay) for one task that ends `duration` s after submit."""
    rule.start()
    t, polls = first_poll_at, 0
    while True:
        polls += 1
        if t >= duration:
            return polls, t - duration
        t += rule.delay(t, fake_state(t, duration)) + overhead


def measured_overhead(rule: Rule, tasks: Iterable[tuple[float, list[float]]]) -> tuple[float, float]:
    """(median first-poll offset, median extra seconds per poll cycle) from real poll times.

    `tasks`: (duration, poll times relative to submit). The extra per cycle is the observed gap
    between two polls minus the delay the rule asked for: request time plus event-loop latency."""
    firsts, extras = [], []
    for duration, times in tasks:
        if not times:
            continue
        rule.start()
        firsts.append(times[0])
        for before, after in itertools.pairwise(times):
            extras.append(after - before - rule.delay(before, fake_state(before, duration)))
    return percentile(firsts, 50) or 0.0, max(percentile(extras, 50) or 0.0, 0.0)


@dataclass(frozen=True)
class Projection:
    polls_mean: float
    notice_p50: float
    notice_p99: float


def project(
    make_rule: Callable[[], Rule], durations: list[float], *, overhead: float, first_poll_at: float
) -> Projection:
    outcomes = [replay(make_rule(), d, overhead=overhead, first_poll_at=first_poll_at) for d in durations]
    delays = [delay for _, delay in outcomes]
    return Projection(
        polls_mean=sum(polls for polls, _ in outcomes) / len(outcomes),
        notice_p50=percentile(delays, 50) or 0.0,
        notice_p99=percentile(delays, 99) or 0.0,
    )


def project_level(
    tasks: list[tuple[float, list[float]]],
    twins: list[tuple[float, list[float]]],
    *,
    compression: float,
    bot_polling: str,
    webhooks: bool,
    typical: float,
) -> dict[str, Any]:
    """Replay every rule over one level's jobs, as run (model check) and ×compression (real durations).

    `tasks` / `twins`: (provider duration as run, poll times after submit) of the bot's / SDK twins'
    tasks; the overheads measured from them are added to every replayed poll cycle."""

    def bot_rule(scale: float) -> Callable[[], Rule]:
        if bot_polling == "schedule":
            # With callbacks on, polling is the safety net: its replayed notice delay is what a lost
            # callback would cost (the measured one comes from the callbacks).
            return lambda: Schedule(typical / compression * scale, webhooks=webhooks)
        return Backoff

    first, extra = measured_overhead(bot_rule(1.0)(), tasks)
    sdk_first, sdk_extra = measured_overhead(Sdk(), twins)
    durations = [duration for duration, _ in tasks]
    out: dict[str, Any] = {"bot_first_poll_s": first, "bot_cycle_extra_s": extra,
                           "sdk_first_poll_s": sdk_first, "sdk_cycle_extra_s": sdk_extra}  # fmt: skip
    for name, scale in (("compressed", 1.0), ("real", compression)):
        scaled = [d * scale for d in durations]
        schedule = lambda s=scale: Schedule(typical / compression * s)  # noqa: E731
        out[name] = {
            "bot": project(bot_rule(scale), scaled, overhead=extra, first_poll_at=first).__dict__,
            "sdk": project(Sdk, scaled, overhead=sdk_extra, first_poll_at=sdk_first).__dict__,
            "schedule": project(schedule, scaled, overhead=extra, first_poll_at=first).__dict__,
            "backoff": project(Backoff, scaled, overhead=extra, first_poll_at=first).__dict__,
        }
    return out
