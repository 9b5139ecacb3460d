"""The card listing a request's variants (services.variants): edited only when a variant reaches another
step, finished once, loaded from the store after a restart; and OnFinish firing once per job."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.progress import JobCard
from services.variants import OnFinish, SetCard, SetMember, VariantSet


def card(job_id: int, stage: str = "queued", **changes: object) -> JobCard:
    base = JobCard(job_id, "queued", "a cat", "video", "hailuo-2.3", "standard", "768P", 6, 280_000, "wavespeed", 7)
    return base.with_stage(stage, **changes)  # type: ignore[arg-type]


class Recorder:
    upload_limit: int | None = 1000

    def __init__(self) -> None:
        self.shown: list[JobCard] = []
        self.delivered: list[JobCard] = []

    async def show(self, shown: JobCard) -> None:
        self.shown.append(shown)

    async def deliver(self, shown: JobCard, clip: Path | None) -> None:
        self.delivered.append(shown)

    async def delivered_before(self, shown: JobCard) -> bool:
        return False


async def test_the_set_card_changes_only_when_a_variant_moves_to_another_step_and_finishes_once() -> None:
    sent: list[SetCard] = []
    ended: list[SetCard] = []

    async def show(summary: SetCard) -> None:
        sent.append(summary)

    async def finished(summary: SetCard) -> None:
        ended.append(summary)

    group = VariantSet(show, cards=[card(1), card(2)], on_finished=finished)
    one, two = SetMember(Recorder(), group), SetMember(Recorder(), group)
    await one.show(card(1, "generating", percent=10))
    await one.show(card(1, "generating", percent=20))  # progress inside a step: no edit
    await two.show(card(2, "failed", message="no"))
    assert [s.marks for s in sent] == [((1, "running"), (2, "waiting")), ((1, "running"), (2, "failed"))]
    assert ended == []
    await one.deliver(card(1, "done"), None)
    await two.show(card(2, "failed", message="no"))  # the final card again (a retry): nothing new
    assert sent[-1].marks == ((1, "done"), (2, "failed")) and sent[-1].final and len(sent) == 3
    assert len(ended) == 1 and ended[0].tally("done") == 1 and one.upload_limit == 1000


async def test_a_set_found_after_a_restart_is_read_from_the_store_once() -> None:
    sent: list[SetCard] = []
    loads = 0

    async def show(summary: SetCard) -> None:
        sent.append(summary)

    async def load() -> list[JobCard]:
        nonlocal loads
        loads += 1
        return [card(5, "done"), card(6, "generating")]

    group = VariantSet(show, load=load)
    await group.update(card(6, "done"))
    await group.update(card(6, "done"))
    assert loads == 1 and [s.marks for s in sent] == [((5, "done"), (6, "done"))] and sent[0].first.job_id == 5


async def test_a_broken_set_card_never_stops_a_job() -> None:
    async def show(summary: SetCard) -> None:
        raise RuntimeError("Discord is down")

    inner = Recorder()
    member = SetMember(inner, VariantSet(show, cards=[card(1), card(2)]))
    await member.show(card(1, "generating"))
    assert inner.shown == [card(1, "generating")]


async def test_on_finish_fires_once_with_the_final_card_even_if_the_card_failed() -> None:
    fired: list[JobCard] = []

    async def hook(final: JobCard) -> None:
        fired.append(final)

    class Failing(Recorder):
        async def show(self, shown: JobCard) -> None:
            raise RuntimeError("edit failed")

    reporter = OnFinish(Failing(), hook)
    with pytest.raises(RuntimeError):
        await reporter.show(card(1, "generating"))
    for _ in range(2):  # the final card, retried by the updater
        with pytest.raises(RuntimeError):
            await reporter.show(card(1, "failed", message="x"))
    await OnFinish(Recorder(), hook).deliver(card(2, "posting"), None)
    assert [(c.job_id, c.stage) for c in fired] == [(1, "failed"), (2, "done")]
