"""The job card throttle: edits only on visible change, coalesced to one per interval."""

from __future__ import annotations

import asyncio

import pytest

from services.progress import CardUpdater, JobCard, edit_interval, estimate

CARD = JobCard(
    job_id=1,
    stage="queued",
    prompt="a cat",
    command="video",
    model="hailuo-2.3",
    quality="standard",
    resolution="768P",
    duration=6,
    cost_micros=280_000,
    provider="wavespeed",
    requester_id=5,
)


async def test_unchanged_card_is_not_sent_again() -> None:
    sent: list[JobCard] = []

    async def send(card: JobCard) -> None:
        sent.append(card)

    updater = CardUpdater(send, interval=0)
    for _ in range(5):
        await updater.update(CARD)
    assert sent == [CARD]


async def test_bursts_are_coalesced_to_the_latest_card() -> None:
    sent: list[JobCard] = []

    async def send(card: JobCard) -> None:
        sent.append(card)

    updater = CardUpdater(send, interval=0.3)
    for percent in range(0, 100, 10):
        await updater.update(CARD.with_stage("generating", percent=percent))
    async with asyncio.timeout(10):
        while len(sent) < 2:  # noqa: ASYNC110 - waiting for the coalesced send, not for a time
            await asyncio.sleep(0.01)
    assert [card.percent for card in sent] == [0, 90]  # the first at once, then only the latest
    await updater.close()


async def test_the_interval_is_asked_again_at_every_change() -> None:
    sent: list[JobCard] = []

    async def send(card: JobCard) -> None:
        sent.append(card)

    pace = [0.0]
    updater = CardUpdater(send, interval=lambda: pace[0])
    await updater.update(CARD.with_stage("generating", percent=0))
    await updater.update(CARD.with_stage("generating", percent=10))  # no interval yet: sent at once
    pace[0] = 60.0  # the bot got busy
    await updater.update(CARD.with_stage("generating", percent=20))
    assert [card.percent for card in sent] == [0, 10]
    await updater.close()


@pytest.mark.parametrize(
    ("base", "cards", "per_second", "expected"),
    [(2.0, 1, 50, 2.0), (2.0, 100, 50, 2.0), (2.0, 1000, 50, 20.0), (0.0, 10, 5, 2.0)],
)
def test_edit_interval_stretches_with_the_cards_in_flight(
    base: float, cards: int, per_second: float, expected: float
) -> None:
    assert edit_interval(base, cards, per_second) == expected


async def test_final_card_goes_out_at_once_and_replaces_pending() -> None:
    sent: list[JobCard] = []

    async def send(card: JobCard) -> None:
        sent.append(card)

    updater = CardUpdater(send, interval=60)
    await updater.update(CARD)
    await updater.update(CARD.with_stage("generating", percent=10))  # pending behind the 60 s interval
    await updater.update(CARD.with_stage("failed", message="nope"))
    assert [card.stage for card in sent] == ["queued", "failed"]
    await updater.close()


async def test_a_failing_edit_does_not_raise_and_is_retried_on_next_change() -> None:
    calls: list[JobCard] = []

    async def send(card: JobCard) -> None:
        calls.append(card)
        if len(calls) == 1:
            raise RuntimeError("discord hiccup")

    updater = CardUpdater(send, interval=0)
    await updater.update(CARD)
    assert updater.last_sent is None
    await updater.update(CARD)  # same card again: it was never shown, so it is sent
    assert updater.last_sent == CARD


def test_estimate_moves_in_steps_and_never_claims_done() -> None:
    assert estimate(0, 60) == (0, 60)
    assert estimate(31, 60) == (50, 30)
    assert estimate(500, 60) == (90, 0)
    assert estimate(10, 300)[1] % 30 == 0


async def test_a_final_card_that_fails_to_show_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.progress.FINAL_RETRY_DELAYS", (0.01, 0.01))
    calls: list[JobCard] = []

    async def send(card: JobCard) -> None:
        calls.append(card)
        if len(calls) < 3:
            raise RuntimeError("503 from the chat platform")

    updater = CardUpdater(send, interval=0)
    final = CARD.with_stage("failed", message="not charged")
    await updater.update(final)
    assert len(calls) == 3 and updater.last_sent == final
