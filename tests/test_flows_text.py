"""What a job's life puts on its public card and in replies is translatable: the card's `message` and
`notice` are Texts that render in the server's language, the card buttons are labelled in the language
they are built for, and the defaults line and fallback notes follow the member's or server's language."""

from __future__ import annotations

import pickle

import discord
import pytest

from cogs.buttons import ended_view, job_view, progress_view, result_view
from core.defaults import Chosen, MemberDefaults, merge
from core.jobs import JobStatus
from core.tasks import FailureKind
from core.text import Text, tr
from services.cancelling import CANCEL_FAILED_NOTICE, CancelOutcome
from services.delivery import link_note
from services.endings import ending_message
from services.i18n import localise

ZH = "zh-CN"


def test_a_failure_reason_on_the_card_renders_in_the_servers_language() -> None:
    message = ending_message(JobStatus.FAILED, FailureKind.MODERATION.value)
    assert isinstance(message, Text)
    assert message == (
        "The video service's content filter blocked this request. Try a different prompt or image. "
        "You were not charged."
    )
    assert localise(message, ZH) == "视频服务的内容过滤拦截了此请求，请换一个提示词或图片。未扣费。"
    assert localise(ending_message(JobStatus.CANCELLED, None), ZH) == "已取消，未扣费。"
    # Read back from the database after a restart: only the kind is stored, so the Text is made again.
    assert isinstance(ending_message("failed", "no-such-kind"), Text)
    assert localise(pickle.loads(pickle.dumps(message)), ZH) == localise(message, ZH)


@pytest.mark.parametrize("kind", list(FailureKind))
def test_every_failure_kind_has_a_chinese_reason(kind: FailureKind) -> None:
    message = ending_message(JobStatus.FAILED, kind.value)
    assert localise(message, ZH) != str(message) and localise(message, ZH).endswith("未扣费。")


def test_link_note_and_cancel_notices_are_texts() -> None:
    note = link_note("minimax")
    assert "about 1 hour" in note and "约 1 小时后失效" in localise(note, ZH)
    assert "服务商只保留一段时间" in localise(link_note("wavespeed"), ZH)  # a provider with no documented lifetime
    assert localise(tr(CANCEL_FAILED_NOTICE), ZH).startswith("无法取消")
    for outcome in CancelOutcome:
        assert isinstance(outcome.message, Text) and localise(outcome.message, ZH) != outcome.message


def test_card_buttons_are_labelled_in_the_language_they_are_built_for() -> None:
    def labels(view: discord.ui.View) -> list[str]:
        return [button["label"] for row in view.to_components() for button in row["components"]]

    assert labels(result_view(1)) == ["Re-roll", "Remix", "Continue", "Delete"]
    assert labels(result_view(1, ZH)) == ["重新生成", "改写", "延续", "删除"]
    assert labels(progress_view(1, ZH)) == ["取消"] and labels(ended_view(1, ZH)) == ["重试", "改写", "删除"]
    assert labels(job_view(1, "reroll", locale="fr")) == ["Re-roll"]  # no catalogue: English
    ids = [button["custom_id"] for row in result_view(1, ZH).to_components() for button in row["components"]]
    assert ids == ["hailuo:reroll:1", "hailuo:remix:1", "hailuo:continue:1", "hailuo:delete:1"]


def test_the_defaults_line_and_fallback_notes_translate() -> None:
    defaults = MemberDefaults(quality="standard", duration=10, model="hailuo-02", optimize_prompt=False)
    merged = merge("t2v", Chosen(), defaults, {"hailuo-2.3", "hailuo-02"})
    assert merged.card_line == "model Hailuo 02, quality standard, duration 10 s, optimize_prompt off"
    assert localise(merged.card_line, ZH) == "模型 Hailuo 02，画质 standard，时长 10 秒，优化提示词 关"
    fallback = merge("t2v", Chosen(), MemberDefaults(quality="fast"), {"hailuo-2.3"})
    [note] = fallback.notes
    assert localise(note, ZH) == "你的默认画质 `fast` 仅适用于 /图生视频；已改用 `standard`。"
    assert merge("t2v", Chosen(), MemberDefaults(), {"hailuo-2.3"}).card_line == ""
