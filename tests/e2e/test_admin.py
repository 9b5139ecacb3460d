"""/admin end to end: the real bot, real discord.py and SQLite, the local Discord and WaveSpeedAI stand-ins.
An admin's change applies to the member's next command with no restart; only Manage Server (or an admin
role) may change anything, whatever payload reaches the bot; every answer is private and pings no one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cogs.admin import REFUSED
from cogs.funnel import BAD_CHOICE
from core.jobs import LedgerTotals
from services.intake import FROZEN, PAUSED
from tests.e2e.harness import BotUnderTest, running_bot
from tests.fakes.discord_server import DEFAULT_PERMISSIONS, LOADING, FakeDiscord, FakeInteraction, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed

MANAGE_SERVER = 1 << 5
ADMIN = 2001  # has Manage Server
MEMBER = 1001  # the fake's default invoker: no Manage Server
OTHER = 1002
ADMIN_ROLE = 7007  # in the bot's admin roles, without Manage Server
CONFIG_ROLE = 8008  # has a [quotas.roles] table in config.toml
STORED_ROLE = 9009  # gets an override with /admin set-limit scope:role
ADMIN_TABLES = ("limit_overrides", "frozen_members", "server_controls", "pools", "pool_alerts", "grants", "audit")
PROMPT = {"prompt": "a lighthouse in a storm"}


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as fake:
        yield fake


@pytest.fixture
async def bot(tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    extra = f'[quotas.roles."{CONFIG_ROLE}"]\nuser_daily_videos = 20\n'
    async with running_bot(
        tmp_path, discord_fake, wavespeed_url=wavespeed.base_url, admin_role_ids=frozenset({ADMIN_ROLE}), extra=extra
    ) as running:
        yield running
        await running.assert_ledger_balanced()


async def reply(fake: FakeDiscord, interaction: FakeInteraction, timeout: float = 20) -> FakeMessage:
    """The private answer, once it has its text (a deferred "thinking" message is edited into it)."""

    def answered() -> bool:
        message = interaction.original()
        return message is not None and bool(message.content or message.embeds) and not message.flags & LOADING

    await fake.wait_until(answered, timeout)
    message = interaction.original()
    assert message is not None and message.ephemeral, message
    return message


async def admin(fake: FakeDiscord, command: str, options: dict[str, object] | None = None, **invoke: Any) -> str:
    """Run `/admin <command>` as an admin with Manage Server; returns the private answer's text."""
    invoke = {"user_id": ADMIN, "user_name": "ada", "permissions": DEFAULT_PERMISSIONS | MANAGE_SERVER, **invoke}
    message = await reply(fake, await fake.invoke(f"admin {command}", options or {}, **invoke))
    assert message.allowed_mentions == {"parse": []}, "admin answers never ping"
    return message.content


async def video(running: BotUnderTest, user_id: int = MEMBER, **invoke: Any) -> str:
    """A member's /video; returns the private receipt or refusal, once every job started has ended."""
    message = await reply(running.discord, await running.discord.invoke("video", PROMPT, user_id=user_id, **invoke))
    await running.wait_jobs_done()
    return message.content


async def admin_rows(running: BotUnderTest) -> dict[str, int]:
    counts = {}
    for table in (*ADMIN_TABLES, "ledger", "jobs"):
        row = await running.app.db.fetchone(f"SELECT COUNT(*) FROM {table}")
        counts[table] = row[0]
    return counts


def leaf_commands(fake: FakeDiscord) -> dict[str, list[dict[str, Any]]]:
    """Every runnable /admin command as synced ("admin pool create") with its options."""
    [root] = [command for command in fake.commands if command["name"] == "admin"]
    found: dict[str, list[dict[str, Any]]] = {}

    def walk(prefix: str, options: list[dict[str, Any]]) -> None:
        for option in options:
            if option["type"] == 1:
                found[f"{prefix} {option['name']}"] = option.get("options", [])
            elif option["type"] == 2:
                walk(f"{prefix} {option['name']}", option.get("options", []))

    walk("admin", root.get("options", []))
    return found


def valid_options(fake: FakeDiscord, command: str, options: list[dict[str, Any]]) -> dict[str, object]:
    """Values an admin could send: every required option, and the optional ones a command needs."""
    by_name: dict[str, object] = {"name": "brainstorm", "amount": "2.00", "value": "5", "reason": "testing"}
    by_type: dict[int, object] = {4: 5, 6: OTHER, 7: fake.channel_id, 8: STORED_ROLE}
    needed = {"admin set-limit": {"scope": "user", "user": OTHER}, "admin pool create": {"channel": fake.channel_id}}
    values: dict[str, object] = {}
    for option in options:
        if not option.get("required"):
            continue
        name = option["name"]
        if option.get("choices"):
            values[name] = option["choices"][0]["value"]
        elif name in by_name:
            values[name] = by_name[name]
        else:
            values[name] = by_type[option["type"]]
    return values | needed.get(command, {})


async def test_admin_is_registered_for_manage_server_in_servers_only(bot: BotUnderTest) -> None:
    [root] = [command for command in bot.discord.commands if command["name"] == "admin"]
    assert int(root["default_member_permissions"]) == MANAGE_SERVER
    assert root["contexts"] == [0]
    assert sorted(leaf_commands(bot.discord)) == sorted(
        f"admin {name}"
        for name in (
            "limits",
            "set-limit",
            "grant",
            "freeze",
            "unfreeze",
            "pause",
            "resume",
            "quote-threshold",
            "log-channel",
            "audit",
            "spend",
            "pool create",
            "pool list",
            "pool delete",
        )
    )


@pytest.mark.parametrize(
    "who",
    [
        {"permissions": DEFAULT_PERMISSIONS},
        {"permissions": 0},
        {"permissions": DEFAULT_PERMISSIONS, "roles": [STORED_ROLE]},  # a role, but not an admin role
    ],
    ids=["member", "no-permissions", "other-role"],
)
async def test_a_member_without_manage_server_is_refused_every_admin_command(
    bot: BotUnderTest, who: dict[str, Any]
) -> None:
    # Discord's client hides /admin from them (default permission), but anyone can replay a payload.
    fake = bot.discord
    commands = leaf_commands(fake)
    for command, options in commands.items():
        interaction = await fake.invoke(command, valid_options(fake, command, options), user_id=MEMBER, **who)
        message = await reply(fake, interaction)
        assert message.content == REFUSED, (command, message.content)
        assert interaction.response_type == 4, command  # answered at once: nothing ran, no "thinking"
    assert await admin_rows(bot) == {table: 0 for table in (*ADMIN_TABLES, "ledger", "jobs")}
    # The same payloads from an admin are valid (so the refusal was about permission, not the values).
    for command, options in commands.items():
        text = await admin(fake, command.removeprefix("admin "), valid_options(fake, command, options))
        assert text not in (REFUSED, BAD_CHOICE) and "went wrong" not in text, (command, text)
    assert (await admin_rows(bot))["audit"] > 0


async def test_a_member_with_an_admin_role_may_use_admin_without_manage_server(bot: BotUnderTest) -> None:
    fake = bot.discord
    as_role = {"user_id": OTHER, "permissions": DEFAULT_PERMISSIONS, "roles": [ADMIN_ROLE]}
    text = await admin(fake, "pool create", {"name": "art", "amount": "5", "period": "day", "role": 4242}, **as_role)
    assert text.startswith("Pool `art` created: $5.00 a day for <@&4242>")
    assert "art" in await admin(fake, "pool list", **as_role)
    [entry] = await bot.app.admin.audit(fake.guild_id, 10)
    assert (entry.line.actor_id, entry.line.action) == (OTHER, "pool create")


async def test_a_lowered_limit_applies_to_the_members_next_command_without_a_restart(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    said = await admin(fake, "set-limit", {"scope": "user", "user": MEMBER, "limit": "user_daily_usd", "value": "0.20"})
    assert said == f"<@{MEMBER}>: `user_daily_usd` is now $0.20 (was inherited)."

    refused = await video(bot)
    assert refused.startswith("This video costs $0.28 but your daily budget has $0.20 left (of $0.20).")
    assert "resets <t:" in refused
    assert await bot.app.db.fetchall("SELECT id FROM jobs") == [] and wavespeed.submits == []
    assert await bot.app.store.ledger_totals() == LedgerTotals(0, 0, 0, 0)
    assert (await video(bot, user_id=OTHER)).startswith("Job #1 accepted ($0.28)")  # only that member

    said = await admin(
        fake, "set-limit", {"scope": "user", "user": MEMBER, "limit": "user_daily_usd", "value": "default"}
    )
    assert said == f"<@{MEMBER}>: `user_daily_usd` is back to the inherited value."
    assert (await video(bot)).startswith("Job #2 accepted ($0.28)")

    await admin(fake, "set-limit", {"scope": "server", "limit": "user_daily_videos", "value": "1"})
    assert (await video(bot)).startswith("You have used your 1 videos for today.")
    assert len(wavespeed.submits) == 2


async def test_bad_limit_values_get_a_clear_private_error_and_change_nothing(bot: BotUnderTest) -> None:
    fake = bot.discord
    cases = [
        ({"scope": "user", "user": MEMBER, "limit": "user_daily_videos", "value": "ten"}, "needs a whole number"),
        ({"scope": "user", "user": MEMBER, "limit": "user_daily_usd", "value": "-1"}, "positive dollar amount"),
        ({"scope": "user", "user": MEMBER, "limit": "user_daily_usd", "value": "0.0000001"}, "6 decimal places"),
        ({"scope": "user", "user": MEMBER, "limit": "user_max_in_flight", "value": "0"}, "at least 1"),
        ({"scope": "user", "user": MEMBER, "limit": "user_daily_videos", "value": "none"}, "only dollar limits"),
        ({"scope": "user", "user": MEMBER, "limit": "guild_monthly_usd", "value": "5"}, "with scope `server`"),
        ({"scope": "role", "limit": "user_daily_videos", "value": "5"}, "needs the `role` option"),
        ({"scope": "user", "limit": "user_daily_videos", "value": "5"}, "needs the `user` option"),
        ({"scope": "server", "user": MEMBER, "limit": "user_daily_videos", "value": "5"}, "takes no `role` or `user`"),
    ]
    for options, problem in cases:
        assert problem in await admin(fake, "set-limit", options), options
    assert "`amount`" in await admin(fake, "grant", {"user": MEMBER, "amount": "lots"})
    assert "channel`, `role`" in await admin(fake, "pool create", {"name": "p", "amount": "1", "period": "day"})
    assert "no pool named `nope`" in await admin(fake, "pool delete", {"name": "nope"})
    rows = await admin_rows(bot)
    assert rows == {table: 0 for table in rows}
    # `none` lifts a dollar limit.
    said = await admin(fake, "set-limit", {"scope": "server", "limit": "user_daily_usd", "value": "none"})
    assert said == "the server: `user_daily_usd` is now no limit (was inherited)."


async def test_a_frozen_member_and_a_paused_server_are_refused_without_a_charge(
    bot: BotUnderTest, wavespeed: FakeWaveSpeed
) -> None:
    fake = bot.discord
    assert "is frozen" in await admin(fake, "freeze", {"user": MEMBER, "reason": "spamming the channel"})
    assert await video(bot) == FROZEN.format(reason="spamming the channel")
    assert (await video(bot, user_id=OTHER)).startswith("Job #1 accepted")
    assert "can make videos again" in await admin(fake, "unfreeze", {"user": MEMBER})
    assert (await video(bot)).startswith("Job #2 accepted")

    assert "paused" in await admin(fake, "pause", {"reason": "budget review"})
    for user_id in (MEMBER, OTHER):
        assert await video(bot, user_id=user_id) == PAUSED.format(reason="budget review")
    assert len(wavespeed.submits) == 2
    assert (await bot.app.store.ledger_totals()).reserved == 2 * 280_000
    assert "allowed again" in await admin(fake, "resume")
    assert (await video(bot)).startswith("Job #3 accepted")


def alerts(fake: FakeDiscord) -> list[str]:
    return [m.content for m in fake.messages.values() if m.content.startswith("Budget pool **")]


async def test_a_pool_pays_for_a_channels_jobs_and_alerts_once_at_each_threshold(bot: BotUnderTest) -> None:
    fake = bot.discord
    # The fake has one channel: it is both where jobs run and the log channel.
    assert f"<#{fake.channel_id}>" in await admin(fake, "log-channel", {"channel": fake.channel_id})
    created = await admin(
        fake,
        "pool create",
        {"name": "brainstorm", "amount": "1.40", "period": "week", "channel": fake.channel_id, "on_empty": "refuse"},
    )
    assert created.endswith("When it is empty, jobs are refused.")
    # $1.40 is five jobs at $0.28: 50 % is passed by the 3rd ($0.84), 80 % by the 4th, 100 % by the 5th.
    expected = {1: [], 2: [], 3: [50], 4: [50, 80], 5: [50, 80, 100]}
    for job in range(1, 6):
        assert (await video(bot)).startswith(f"Job #{job} accepted ($0.28)")
        assert [int(text.split("used ")[1].split(" %")[0]) for text in alerts(fake)] == expected[job], job
    assert alerts(fake)[-1] == "Budget pool **brainstorm** has used 100 % of its $1.40 this week ($1.40 spent)."
    refused = await video(bot)
    assert refused.startswith("The brainstorm budget has $0.00 left this week and this video costs $0.28.")
    assert len(alerts(fake)) == 3  # once per threshold, not once per job
    usage = await bot.app.store.usage(MEMBER, fake.guild_id, datetime.now(UTC))
    assert (usage.user_day_micros, usage.user_month_micros, usage.user_day_videos) == (0, 0, 5)
    listed = await admin(fake, "pool list")
    assert "**brainstorm**: $1.40 a week for" in listed and "spent $1.40 this week ($0.00 left)" in listed
    quota = await reply(fake, await fake.invoke("quota"))
    fields = {field["name"]: field["value"] for field in quota.embeds[0]["fields"]}
    assert fields["Your spend today"].startswith("**$2.00 left** of $2.00 (used $0.00)")
    pool_line = "Budget pool brainstorm (pays for jobs here)"
    assert fields[pool_line].startswith("**$0.00 left** of $1.40 (used $1.40)")  # /quota shows the pool

    # With on_empty personal, an empty pool's jobs come from the member's own allowance.
    assert "deleted" in await admin(fake, "pool delete", {"name": "brainstorm"})
    await admin(fake, "pool create", {"name": "small", "amount": "0.28", "period": "day", "channel": fake.channel_id})
    assert (await video(bot)).startswith("Job #6 accepted")  # from the pool
    own = await video(bot)  # from the member's allowance, and the receipt says why
    assert own.startswith("Job #7 accepted") and "This one comes from your own allowance." in own
    usage = await bot.app.store.usage(MEMBER, fake.guild_id, datetime.now(UTC))
    assert usage.user_day_micros == 280_000


async def test_a_grant_lets_a_member_at_their_monthly_limit_make_one_more(bot: BotUnderTest) -> None:
    fake = bot.discord
    await admin(fake, "set-limit", {"scope": "user", "user": MEMBER, "limit": "user_monthly_usd", "value": "0.28"})
    assert (await video(bot)).startswith("Job #1 accepted")
    assert "your monthly budget has $0.00 left (of $0.28)" in await video(bot)
    said = await admin(fake, "grant", {"user": MEMBER, "amount": "0.28", "reason": "contest winner"})
    assert said == f"Granted $0.28 on <@{MEMBER}>'s allowance for this month."
    assert (await video(bot)).startswith("Job #2 accepted")
    assert "your monthly budget has $0.00 left (of $0.56)" in await video(bot)


async def test_each_change_is_in_the_audit_with_before_and_after(bot: BotUnderTest) -> None:
    fake = bot.discord
    await admin(fake, "set-limit", {"scope": "server", "limit": "user_daily_videos", "value": "5"})
    await admin(fake, "set-limit", {"scope": "server", "limit": "user_daily_videos", "value": "3"})
    await admin(fake, "freeze", {"user": MEMBER, "reason": "too many clips"})
    await admin(fake, "quote-threshold", {"amount": "1.00"})
    await admin(fake, "quote-threshold", {"amount": "off"})
    await admin(fake, "pause")
    text = await admin(fake, "audit", {"count": 5})
    lines = text.splitlines()
    assert lines[0] == "**Latest admin changes** (newest first, 5)"
    assert all(line.startswith("<t:") and f":R> <@{ADMIN}> **" in line for line in lines[1:])
    assert [line.split(":R> ", 1)[1] for line in lines[1:]] == [
        f"<@{ADMIN}> **pause** server: not paused → paused",
        f"<@{ADMIN}> **quote-threshold** server: $1.00 → off",
        f"<@{ADMIN}> **quote-threshold** server: off → $1.00",
        f"<@{ADMIN}> **freeze** user {MEMBER}: — → frozen (reason: too many clips)",
        f"<@{ADMIN}> **set-limit** the server: user_daily_videos: 5 → 3",
    ]
    assert "inherited → 5" in await admin(fake, "audit")


async def test_limits_show_each_value_and_where_it_comes_from(bot: BotUnderTest) -> None:
    fake = bot.discord
    await admin(fake, "set-limit", {"scope": "server", "limit": "user_daily_usd", "value": "3"})
    await admin(fake, "set-limit", {"scope": "role", "role": STORED_ROLE, "limit": "user_monthly_usd", "value": "none"})
    await admin(fake, "set-limit", {"scope": "user", "user": MEMBER, "limit": "user_max_in_flight", "value": "1"})
    fake.member_roles[MEMBER] = [CONFIG_ROLE, STORED_ROLE]

    def parsed(text: str) -> dict[str, str]:
        return {line.split("`")[1]: line.split("`: ")[1] for line in text.splitlines()[1:]}

    member = await admin(fake, "limits", {"user": MEMBER})
    assert member.splitlines()[0] == f"**Limits for <@{MEMBER}>** (value · set by)"
    assert parsed(member) == {
        "user_daily_videos": "20 · config.toml (role)",
        "user_daily_usd": "$3.00 · server",
        "user_monthly_usd": "no limit · role",
        "guild_monthly_usd": "$100.00 · config.toml",
        "global_monthly_usd": "$300.00 · config.toml",
        "user_max_in_flight": "1 · member",
    }
    role = parsed(await admin(fake, "limits", {"role": STORED_ROLE}))
    assert (role["user_monthly_usd"], role["user_max_in_flight"]) == ("no limit · role", "2 · config.toml")
    server = parsed(await admin(fake, "limits"))
    assert (server["user_daily_usd"], server["user_monthly_usd"]) == ("$3.00 · server", "$20.00 · config.toml")
    # What /admin limits says is what the member's next command is checked against.
    assert (await video(bot)).startswith("Job #1 accepted")


async def test_spend_answers_with_a_table_a_png_and_a_csv_that_match_the_ledger(bot: BotUnderTest) -> None:
    import csv
    import io

    from PIL import Image

    for _ in range(2):
        assert "accepted" in await video(bot)
    fake = bot.discord
    interaction = await fake.invoke(
        "admin spend", {"period": "today", "by": "user"}, user_id=ADMIN, permissions=DEFAULT_PERMISSIONS | MANAGE_SERVER
    )
    message = await reply(fake, interaction)
    assert "$0.56" in message.content  # two $0.28 clips
    files = {a["filename"].rsplit(".", 1)[1]: a["data"] for a in message.attachments}
    with Image.open(io.BytesIO(files["png"])) as chart:
        chart.verify()
        assert chart.format == "PNG"
    rows = list(csv.DictReader(io.StringIO(files["csv"].decode("utf-8"))))
    settled = await bot.app.db.fetchone("SELECT SUM(amount_micros) FROM ledger WHERE kind = 'settle'")
    assert sum(int(row["spend_micros"]) for row in rows) == settled[0] == 560_000


# ----- in Simplified Chinese ---------------------------------------------------------------------------------
# Private answers follow the member's Discord language; notices in the log channel, which everyone there
# reads, follow the server's.


async def test_a_zh_cn_admin_gets_admin_answers_and_refusals_in_chinese(bot: BotUnderTest) -> None:
    fake = bot.discord
    options = {"scope": "user", "user": MEMBER, "limit": "user_daily_usd", "value": "0.20"}
    said = await admin(fake, "set-limit", options, locale="zh-CN")
    assert said == f"<@{MEMBER}>：`user_daily_usd` 现为 $0.20（原为 继承）。"
    wrong = {**options, "limit": "user_daily_videos", "value": "none"}
    assert await admin(fake, "set-limit", wrong, locale="zh-CN") == (
        "`user_daily_videos` 需要一个数字；只有美元限额可以用 `none` 取消。"
    )
    limits = await admin(fake, "limits", {"user": MEMBER}, locale="zh-CN")
    assert limits.splitlines()[0] == f"**<@{MEMBER}> 的限额**（值 · 设置来源）"
    assert "`user_daily_usd`：$0.20 · 成员" in limits and "`user_monthly_usd`：$20.00 · config.toml" in limits
    assert "已暂停生成新视频" in await admin(fake, "pause", {"reason": "预算审查"}, locale="zh-CN")
    audit = await admin(fake, "audit", locale="zh-CN")
    assert audit.splitlines()[0] == "**最近的管理变更**（最新在前，共 2 条）"
    assert f"<@{ADMIN}> **pause** 服务器：运行中 → 已暂停（原因：预算审查）" in audit
    # The same admin in English still reads English: the language is the member's, not the server's.
    assert (await admin(fake, "resume")).startswith("New videos are allowed again")
    refused = await reply(fake, await fake.invoke("admin pause", {}, user_id=MEMBER, locale="zh-CN"))
    assert refused.content == "你需要“管理服务器”权限才能使用 /管理。"


async def test_a_zh_cn_member_sees_quota_in_chinese(bot: BotUnderTest) -> None:
    fake = bot.discord
    assert (await video(bot)).startswith("Job #1 accepted")
    quota = await reply(fake, await fake.invoke("quota", locale="zh-CN"))
    [embed] = quota.embeds
    assert embed["title"] == "你的视频额度"
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert list(fields) == ["今日视频", "你今天的花费", "你本月的花费", "本月服务器预算"]
    assert fields["你今天的花费"].startswith("**剩余 $1.72**，共 $2.00（已用 $0.28）\n<t:")
    assert fields["你今天的花费"].endswith(":R>重置")
    assert embed["footer"]["text"] == "当前运行中的任务：0 / 2"
    # and in English for a member whose Discord is in English
    english = await reply(fake, await fake.invoke("quota"))
    assert english.embeds[0]["title"] == "Your video quota"


@pytest.fixture
async def zh_server(tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed) -> AsyncIterator[BotUnderTest]:
    """The bot in a server whose community language is Simplified Chinese (sent in GUILD_CREATE)."""
    discord_fake.guild_locales[discord_fake.guild_id] = "zh-CN"
    async with running_bot(tmp_path, discord_fake, wavespeed_url=wavespeed.base_url) as running:
        yield running
        await running.assert_ledger_balanced()


async def test_log_channel_notices_are_in_the_servers_language(zh_server: BotUnderTest) -> None:
    fake = zh_server.discord
    # An admin whose own Discord is in English: their answers are English, the public notices Chinese.
    assert f"<#{fake.channel_id}>" in await admin(fake, "log-channel", {"channel": fake.channel_id})
    await admin(fake, "set-limit", {"scope": "server", "limit": "user_daily_videos", "value": "5"})
    created = await admin(
        fake, "pool create", {"name": "p", "amount": "0.28", "period": "day", "channel": fake.channel_id}
    )
    assert created.startswith("Pool `p` created: $0.28 a day for")

    def notices() -> list[str]:
        return [m.content for m in fake.messages.values() if not m.ephemeral and m.content.startswith(("<@", "预算"))]

    await fake.wait_until(lambda: len(notices()) == 3)
    assert notices()[:2] == [
        f"<@{ADMIN}> **log-channel** 服务器：— → <#{fake.channel_id}>",
        f"<@{ADMIN}> **set-limit** 本服务器：user_daily_videos：继承 → 5",
    ]
    assert notices()[2].startswith(f"<@{ADMIN}> **pool create** 资金池 p：— → ")
    assert (await video(zh_server)).startswith("Job #1 accepted")  # the member's reply: their language (English)
    await fake.wait_until(lambda: len(notices()) == 6)  # one job spends it all: 50, 80 and 100 % at once
    assert notices()[3:] == [
        f"预算资金池 **p** 今天已用掉 $0.28 的 {percent}%（已花费 $0.28）。" for percent in (50, 80, 100)
    ]
