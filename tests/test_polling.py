"""PollSchedule: pure arithmetic on a virtual clock (nothing sleeps here)."""

from __future__ import annotations

import itertools
import statistics

import pytest

from services.polling import PollPacer, PollSchedule, SdkLoop, simulate, webhook_schedule

# Durations uniform in 30–90 s (the range), on an even grid so the figures are exact.
DURATIONS = [30 + 60 * (i + 0.5) / 1000 for i in range(1000)]
ROUND_TRIP = 0.02  # a loopback poll; real ones are slower, which only lowers the poll count


def figures(rule: PollSchedule | SdkLoop, durations: list[float] = DURATIONS) -> tuple[float, float, float]:
    """(mean polls per job, notice delay p50, notice delay p99)."""
    outcomes = [simulate(rule, d, round_trip=ROUND_TRIP) for d in durations]
    delays = sorted(o.notice_delay for o in outcomes)
    p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99) - 1]
    return statistics.fmean(o.polls for o in outcomes), p50, p99


def test_meets_the_targets_for_durations_30_to_90_with_a_typical_of_60() -> None:
    sdk_polls, sdk_p50, sdk_p99 = figures(SdkLoop())
    polls, p50, p99 = figures(PollSchedule.for_history(60))
    assert 59 < sdk_polls < 62 and sdk_p50 == pytest.approx(0.5, abs=0.05) and sdk_p99 <= 1.05
    assert polls <= 0.5 * sdk_polls  # at most half the SDK loop's requests ...
    assert p50 <= 1.5 and p99 <= 5  # ... within the notice-delay targets
    assert 26 <= polls <= 29 and p50 < 0.8 and p99 < 1.6  # the figures the module docstring quotes


def test_a_known_spread_narrows_the_window_and_saves_polls() -> None:
    guessed, _, _ = figures(PollSchedule.for_history(60))
    polls, p50, p99 = figures(PollSchedule.for_history(60, low=33, high=87))  # p05 / p95 of U(30, 90)
    assert polls < guessed and p50 <= 1.5 and p99 <= 5


@pytest.mark.parametrize("typical", [45, 75, 90])
def test_a_stale_median_degrades_gently(typical: float) -> None:
    """The median may lag behind the provider's real speed (or be the config default at first)."""
    polls, p50, p99 = figures(PollSchedule.for_history(typical))
    assert p50 <= 1.5 and p99 <= 5
    assert polls <= 0.55 * figures(SdkLoop())[0]


def test_sparse_before_the_window_dense_inside_stretching_after() -> None:
    s = PollSchedule(low=30, high=90)
    assert s.next_delay(0) == 12  # 0.4 of the 30 s left until the window
    assert s.next_delay(20) == 4
    assert s.next_delay(29.5) == 1.5  # never finer than `dense`, even right before the window
    assert s.next_delay(30) == s.next_delay(60) == s.next_delay(90) == 1.5
    assert s.next_delay(100) == pytest.approx(2.5)  # 0.1 s more per second past the window
    assert s.next_delay(1000) == 5  # capped: a straggler is still seen within 5 s


def test_the_approach_is_capped_for_long_typicals() -> None:
    assert PollSchedule.for_history(600).next_delay(0) == 15


def test_a_change_past_the_window_snaps_back_to_dense() -> None:
    s = PollSchedule(low=30, high=90)
    assert s.next_delay(200, changed=True) == 1.5
    assert s.next_delay(5, changed=True) == s.next_delay(5)  # early changes say nothing about the end


def test_retry_after_is_a_minimum() -> None:
    s = PollSchedule(low=30, high=90)
    assert s.next_delay(60, retry_after=7) == 7
    assert s.next_delay(0, retry_after=1) == 12


def test_a_straggler_is_noticed_within_the_tail_cap() -> None:
    outcome = simulate(PollSchedule.for_history(60), 400.0)
    assert outcome.notice_delay <= 5
    assert outcome.polls < 400 / 3  # the SDK loop would spend 400


def test_history_outside_the_median_is_ignored() -> None:
    s = PollSchedule.for_history(60, low=80, high=20)  # nonsense quantiles: fall back to ±50 %
    assert (s.low, s.high) == (30, 90)


def test_webhooks_make_polling_a_slow_safety_net() -> None:
    s = PollSchedule.for_history(60, webhooks=True)
    assert s == webhook_schedule(60)
    polls, _, p99 = figures(s)
    assert polls < 10 and p99 <= 15


def test_rejects_inconsistent_tuning() -> None:
    with pytest.raises(ValueError):
        PollSchedule(low=50, high=40)
    with pytest.raises(ValueError):
        PollSchedule(low=10, high=20, dense=6)  # dense above the tail cap
    with pytest.raises(ValueError):
        PollSchedule(low=10, high=20, approach=1.0)


def test_pacer_lets_polls_through_while_under_budget() -> None:
    pacer = PollPacer(per_second=10)
    assert [pacer.reserve(t) for t in (0.0, 0.5, 1.0, 7.3)] == [0.0, 0.0, 0.0, 0.0]


def test_pacer_spaces_a_burst_evenly_in_arrival_order() -> None:
    pacer = PollPacer(per_second=4)
    assert [pacer.reserve(10.0) for _ in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert pacer.reserve(10.5) == pytest.approx(0.75)  # a late comer queues behind the burst


def test_pacer_saves_no_credit_while_idle() -> None:
    pacer = PollPacer(per_second=2)
    pacer.reserve(0.0)
    assert pacer.reserve(100.0) == 0.0 and pacer.reserve(100.0) == 0.5  # no burst bought by idling


def test_over_budget_each_job_is_polled_every_jobs_over_rate_seconds() -> None:
    """1,000 jobs that each want a poll every 1.5 s, against a budget of 250/s: steady state."""
    pacer, jobs, dense = PollPacer(per_second=250), 1000, 1.5
    due = [i * dense / jobs for i in range(jobs)]  # when each job next wants to poll
    polled_at: list[list[float]] = [[] for _ in range(jobs)]
    for _ in range(10):
        order = sorted(range(jobs), key=lambda j: due[j])
        for j in order:
            at = due[j] + pacer.reserve(due[j])
            polled_at[j].append(at)
            due[j] = at + dense
    gaps = [b - a for times in polled_at for a, b in itertools.pairwise(times[5:])]
    assert statistics.fmean(gaps) == pytest.approx(jobs / 250, rel=0.01)


def test_pacer_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        PollPacer(per_second=0)


def test_pacer_says_how_far_ahead_it_is_booked() -> None:
    pacer = PollPacer(per_second=4)
    assert pacer.backlog(10.0) == 0.0
    for _ in range(5):
        pacer.reserve(10.0)
    assert pacer.backlog(10.0) == pytest.approx(1.25) and pacer.backlog(11.0) == pytest.approx(0.25)
    assert pacer.backlog(20.0) == 0.0
