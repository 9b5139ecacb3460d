"""Quota refusals, the quota summary's labels, admin refusals (a freeze, a pause) and the spend table are
catalogue messages: English as before, and Simplified Chinese for a zh-CN member."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest

from core.admin import AuditLine, Pool, ServerControls, ServerState
from core.errors import QuotaExceeded, UserError
from core.jobs import Usage
from core.reports import SpendItem
from core.text import Text
from services.admin import audit_text
from services.i18n import localise
from services.intake import FROZEN, JobIntake, Requester
from services.quotas import Funding, Limits, QuotaPolicy, check_fits, find_refusal, summarise
from services.spend import build_report, cells

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
zh = partial(localise, locale="zh-CN")


def usage(**values: int) -> Usage:
    fields = dict.fromkeys(
        ("user_in_flight", "user_day_videos", "user_day_micros", "user_month_micros", "guild_month_micros",
         "global_month_micros", "user_month_grants", "pool_micros"), 0)  # fmt: skip
    return Usage(**{**fields, **values})


@pytest.mark.parametrize(
    ("limits", "used", "english", "chinese"),
    [
        (
            Limits(user_max_in_flight=2),
            usage(user_in_flight=2),
            "You already have 2 video(s) generating (the limit is 2 at a time). Wait for one to finish.",
            "你已有 2 个视频正在生成（同时最多 2 个）。请等待其中一个完成。",
        ),
        (
            Limits(user_daily_videos=3),
            usage(user_day_videos=3),
            "You have used your 3 videos for today.",
            "你今天的 3 个视频已用完。",
        ),
        (
            Limits(user_daily_usd=500_000),
            usage(user_day_micros=300_000),
            "This video costs $0.28 but your daily budget has $0.20 left (of $0.50).",
            "此视频需要 $0.28，但你的每日预算只剩 $0.20（共 $0.50）。",
        ),
        (
            Limits(guild_monthly_usd=100_000),
            usage(),
            "This video costs $0.28 but this server's monthly budget has $0.10 left (of $0.10).",
            "此视频需要 $0.28，但本服务器的月度预算只剩 $0.10（共 $0.10）。",
        ),
    ],
)
def test_a_quota_refusal_is_english_and_chinese(limits: Limits, used: Usage, english: str, chinese: str) -> None:
    refusal = find_refusal(limits, used, 280_000, NOW)
    assert refusal is not None and isinstance(refusal.message, Text)
    assert refusal.message == english and zh(refusal.message) == chinese
    # The reservation check raises it with the Text kept, for the Discord layer to render.
    with pytest.raises(QuotaExceeded) as raised:
        check_fits(limits, 280_000, NOW)(used)
    assert zh(raised.value.message) == chinese


def test_an_empty_pool_is_explained_in_chinese() -> None:
    pool = Pool(1, 10, "brainstorm", 280_000, "week", 20, None, "refuse")
    with pytest.raises(QuotaExceeded) as raised:
        check_fits(Limits(), 280_000, NOW, pool)(usage(pool_micros=280_000))
    assert raised.value.message == "The brainstorm budget has $0.00 left this week and this video costs $0.28."
    assert zh(raised.value.message) == "预算 brainstorm 本周只剩 $0.00，而此视频需要 $0.28。"
    funding = Funding()
    personal = Pool(1, 10, "small", 280_000, "day", 20, None, "personal")
    assert check_fits(Limits(), 280_000, NOW, personal, funding)(usage(pool_micros=280_000)) is None
    assert zh(funding.note) == "预算 small 今天只剩 $0.00，而此视频需要 $0.28。本次费用由你自己的额度支付。"


def test_the_quota_summary_labels_are_chinese() -> None:
    lines = summarise(Limits(user_daily_usd=2_000_000), usage(), NOW, guild=True)
    assert [line.label for line in lines] == [
        "Videos today",
        "Your spend today",
        "Your spend this month",
        "Server budget this month",
    ]
    assert [zh(line.label) for line in lines] == ["今日视频", "你今天的花费", "你本月的花费", "本月服务器预算"]


class Admins:
    """An AdminStore with one state for every member."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def server_state(self, guild_id: int, user_id: int) -> ServerState:
        return self.state


@pytest.mark.parametrize(
    ("state", "chinese"),
    [
        (ServerState(ServerControls(), (), "spamming", ()), "管理员已暂停你的使用权限：spamming"),
        (ServerState(ServerControls(), (), "", ()), "管理员已暂停你的使用权限：未说明原因"),
        (ServerState(ServerControls(paused=True), (), None, ()), "管理员已暂停本服务器的新视频：未说明原因"),
    ],
)
async def test_a_freeze_or_a_pause_is_refused_in_chinese(state: ServerState, chinese: str) -> None:
    fake: Any = SimpleNamespace()
    intake = JobIntake(fake, fake, fake, QuotaPolicy(), fake, admin=Admins(state))  # type: ignore[arg-type]
    with pytest.raises(UserError) as raised:
        await intake.limits_for(Requester(user_id=1, guild_id=10, channel_id=20))
    assert zh(raised.value.message) == chinese
    if state.frozen_reason == "spamming":
        assert raised.value.message == FROZEN.format(reason="spamming")


def test_an_admin_notice_says_its_known_words_in_chinese() -> None:
    line = AuditLine(10, 2001, "set-limit", "role <@&9>: user_daily_usd", "inherited", "no limit", "contest")
    assert audit_text(line) == "<@2001> **set-limit** role <@&9>: user_daily_usd: inherited → no limit (contest)"
    assert zh(audit_text(line)) == "<@2001> **set-limit** 身份组 <@&9>：user_daily_usd：继承 → 无限制（contest）"
    freeze = AuditLine(10, 2001, "freeze", "user 1001", "", "frozen")
    assert zh(audit_text(freeze)) == "<@2001> **freeze** 用户 1001：— → 已冻结"


def test_the_spend_table_in_chinese_keeps_its_grid() -> None:
    items = [
        SpendItem(n, 1, 5 if n % 2 else None, "hailuo-2.3", "wavespeed", NOW - timedelta(minutes=n + 1), 280_000)
        for n in range(5)
    ]
    report = build_report(items, "today", "channel", NOW, names={5: "#general"}, say=zh)
    assert zh(report.title) == "按频道统计的花费，今天（2026-12-07 00:00 至 2026-12-07 12:00 UTC）：$1.40"
    lines = report.table.splitlines()[1:-1]
    assert lines[0].split() == ["频道", "任务数", "花费", "占比"]
    assert [line.split()[0] for line in lines[2:]] == ["（无频道）", "#general", "合计"]
    assert len({cells(line) for line in lines}) == 1  # a monospace grid, wide characters counted twice
    # The title drawn on the chart and the CSV stay English.
    assert report.title == "Spend by channel, today (2026-12-07 00:00 to 2026-12-07 12:00 UTC): $1.40"
    assert report.csv.decode().splitlines()[0] == "channel_id,label,jobs,spend_micros,spend_usd"
