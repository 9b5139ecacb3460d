"""A whole contest end to end: the real bot over the local Discord and WaveSpeedAI stand-ins, several members,
and a clock the test moves (time is never waited for, states are): create, three entries (one over the limit
refused), the deadline passes, votes (self-votes and too-new members refused, a double press toggles), a
restart during voting, the voting window ends while the bot is down and is caught up at start, results with
the right winner posted exactly once (also after a crash between posting and recording), the winner role given.

The public messages the contest produced are written to `transcript.txt` under the test's tmp_path (and
printed), and shown in any failure message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import services.contests
from cogs.contests import REFUSED, ContestCog
from core.errors import UserError
from tests.e2e.harness import BotUnderTest, running_bot
from tests.e2e.test_admin import reply
from tests.fakes.discord_server import DEFAULT_PERMISSIONS, MANAGE_ROLES, FakeDiscord, FakeMessage
from tests.fakes.wavespeed_server import FakeWaveSpeed

MANAGE_SERVER = 1 << 5
ADMIN, ALICE, BOB, CAROL, DAVE, EVE = 2001, 1001, 1002, 1003, 1004, 1005
NAMES = {ADMIN: "ada", ALICE: "alice", BOB: "bob", CAROL: "carol", DAVE: "dave", EVE: "eve"}
WINNER_ROLE = 5005


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Every ContestService (in each bot the test starts) reads this clock."""
    moved = Clock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(services.contests, "utcnow", moved)
    return moved


@pytest.fixture
async def wavespeed() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed("ws-test-key", duration_s=0.2) as fake:
        yield fake


def public(fake: FakeDiscord) -> list[FakeMessage]:
    return sorted(
        (m for m in fake.messages.values() if m.channel_id == fake.channel_id and not m.ephemeral and not m.deleted),
        key=lambda m: m.id,
    )


def contest_posts(fake: FakeDiscord) -> list[FakeMessage]:
    """The contest's own public posts (not the job cards)."""
    return [m for m in public(fake) if "Contest" in m.content or "Entry #" in m.content or "Voting" in m.content
            or any("contest-results" in (e.get("footer") or {}).get("text", "") for e in m.embeds)]  # fmt: skip


def transcript(fake: FakeDiscord) -> str:
    lines = []
    for message in contest_posts(fake):
        lines.append(f"--- message {message.id}")
        if message.content:
            lines.append(message.content)
        for embed in message.embeds:
            lines.append(f"[embed] {embed.get('title', '')}")
            lines.extend(embed.get("description", "").splitlines())
            lines.append(f"[footer] {(embed.get('footer') or {}).get('text', '')}")
        lines.extend(f"[attachment] {a['filename']}" for a in message.attachments)
        lines.extend(f"[button] {c.get('emoji', {}).get('name', '')} {c.get('label', '')} ({c['custom_id']})"
                     for c in _buttons(message))  # fmt: skip
    return "\n".join(lines)


def _buttons(message: FakeMessage) -> list[dict[str, Any]]:
    return [c for row in message.components for c in row.get("components", []) if "custom_id" in c]


def results_posts(fake: FakeDiscord) -> list[FakeMessage]:
    return [
        m for m in public(fake) if any("contest-results:" in (e.get("footer") or {}).get("text", "") for e in m.embeds)
    ]


async def command(
    fake: FakeDiscord, name: str, options: dict[str, object] | None = None, *, user: int, **invoke: Any
) -> str:
    permissions = DEFAULT_PERMISSIONS | (MANAGE_SERVER if user == ADMIN else 0)
    interaction = await fake.invoke(
        name, options or {}, user_id=user, user_name=NAMES[user], permissions=permissions, **invoke
    )
    return (await reply(fake, interaction)).content


async def press(fake: FakeDiscord, message_id: int, custom_id: str, user: int, **invoke: Any) -> str:
    interaction = await fake.click(message_id, custom_id, user_id=user, user_name=NAMES[user], **invoke)
    return (await reply(fake, interaction)).content


def cog(running: BotUnderTest) -> ContestCog:
    found = running.bot.get_cog("ContestCog")
    assert isinstance(found, ContestCog)
    return found


async def enter(running: BotUnderTest, user: int, prompt: str) -> int:
    """`/video contest: true`: a slot, the clip made, and posted to the gallery; its card private."""
    fake = running.discord
    options = {"prompt": prompt, "contest": True}
    receipt = await reply(fake, await fake.invoke("video", options, user_id=user, user_name=NAMES[user]))
    assert "accepted" in receipt.content, receipt.content
    await running.wait_jobs_done()
    row = await running.app.db.fetchone("SELECT MAX(id) FROM jobs WHERE user_id = ?", (user,))
    job_id = int(row[0])
    posted = await running.app.db.fetchone("SELECT gallery_message_id FROM contest_entries WHERE job_id = ?", (job_id,))
    assert posted is not None and posted[0] is not None, f"job {job_id} is not in the gallery"
    return job_id


async def gallery(running: BotUnderTest) -> dict[int, tuple[int, str]]:
    """Author -> (gallery message, its ⭐ custom_id)."""
    rows = await running.app.db.fetchall(
        "SELECT id, user_id, gallery_message_id FROM contest_entries WHERE state = 'posted'"
    )
    return {row["user_id"]: (row["gallery_message_id"], f"contest:vote:{row['id']}") for row in rows}


async def wait_phase(running: BotUnderTest, phase: str) -> None:
    async def reached() -> bool:
        row = await running.app.db.fetchone("SELECT phase FROM contests WHERE id = 1")
        return row is not None and row[0] == phase

    async with asyncio.timeout(20):
        while not await reached():  # noqa: ASYNC110 - waiting for a stored state, polled
            await asyncio.sleep(0.02)


async def test_a_whole_contest_through_discord(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, clock: Clock
) -> None:
    fake = discord_fake
    fake.app_permissions |= MANAGE_ROLES  # the bot may give roles
    try:
        await _run_contest(tmp_path, fake, wavespeed, clock)
    finally:
        text = transcript(fake)
        (tmp_path / "transcript.txt").write_text(text, encoding="utf-8")
        print(text)


async def _run_contest(tmp_path: Path, fake: FakeDiscord, wavespeed: FakeWaveSpeed, clock: Clock) -> None:
    url = wavespeed.base_url
    async with running_bot(tmp_path, fake, wavespeed_url=url) as running:
        # Only Manage Server starts or ends a contest.
        assert await command(fake, "contest create", {"theme": "x", "deadline": "60s"}, user=ALICE) == REFUSED
        assert await command(fake, "contest end", user=ALICE) == REFUSED
        options = {
            "theme": "Winter light",
            "deadline": "60s",
            "voting": "2m",
            "budget": "5",
            "min_member_days": 7,
            "winner_role": WINNER_ROLE,
        }
        created = await command(fake, "contest create", options, user=ADMIN)
        assert created.startswith("Contest #1 is running"), created
        [announced] = contest_posts(fake)
        assert "🏆 **Contest: Winter light**" in announced.content and announced.allowed_mentions == {"parse": []}

        # Three members enter; Alice's second entry is over the limit of one.
        jobs = {user: await enter(running, user, prompt) for user, prompt in (
            (ALICE, "snow on a lantern at dusk"), (BOB, "frost ferns on a window at sunrise"),
            (CAROL, "a candle in a cabin window"))}  # fmt: skip
        refused = await command(fake, "video", {"prompt": "one more", "contest": True}, user=ALICE)
        assert refused == "You have already entered this contest (the limit is 1 entry each).", refused
        assert len(await running.app.db.fetchall("SELECT id FROM jobs")) == 3  # nothing reserved for it
        # No public message names an entry's author: entries' job cards are private to their makers.
        assert not any(m.embeds and "job #" in m.embeds[0].get("title", "") for m in public(fake))
        entries = [m for m in contest_posts(fake) if m.content.startswith("**Entry #")]
        assert [m.content.splitlines()[0] for m in entries] == [f"**Entry #{n}** · Winter light" for n in (1, 2, 3)]
        for message in entries:  # the clip and the prompt, never the author
            assert message.attachments and not any(f"<@{user}>" in message.content for user in NAMES)
            assert message.attachments[0]["filename"] == f"entry-{entries.index(message) + 1}.mp4"
            assert all(name not in message.content for name in NAMES.values())
        # The entries were paid from the contest's pool (not the members' own allowances).
        pooled = await running.app.db.fetchall(
            "SELECT DISTINCT pool_id, pool_period FROM ledger WHERE kind = 'reserve'"
        )
        assert [tuple(row) for row in pooled] == [(1, "contest")]
        votes = await gallery(running)
        assert (await press(fake, *votes[BOB], user=EVE)).startswith("Voting opens <t:")

        # The deadline passes: entries close, voting opens.
        clock.move(seconds=61)
        running.app.contests.on_change()
        await wait_phase(running, "voting")
        await fake.wait_until(lambda: any("**Voting is open**" in m.content for m in public(fake)))
        with pytest.raises(UserError, match="closed"):
            await running.app.contests.claim(fake.channel_id, DAVE)

        assert await press(fake, *votes[ALICE], user=ALICE) == "You cannot vote for your own entry."
        recently = (clock.now - timedelta(days=2)).isoformat()
        assert "joined this server at least 7 days ago" in await press(fake, *votes[BOB], user=DAVE, joined_at=recently)
        assert await press(fake, *votes[BOB], user=EVE) == "Vote counted (you have 2 left)."
        assert await press(fake, *votes[BOB], user=EVE) == "Vote removed (you have 3 left)."
        assert await press(fake, *votes[BOB], user=EVE) == "Vote counted (you have 2 left)."
        assert await press(fake, *votes[BOB], user=ALICE) == "Vote counted (you have 2 left)."
        assert await press(fake, *votes[CAROL], user=BOB) == "Vote counted (you have 2 left)."
        assert "1 vote cast" not in await command(fake, "contest status", user=CAROL)
        await running.assert_ledger_balanced()

    # A restart during voting: the ⭐ buttons of the old gallery posts still count.
    async with running_bot(tmp_path, fake, wavespeed_url=url) as running:
        assert await press(fake, *votes[BOB], user=CAROL) == "Vote counted (you have 2 left)."
        assert await press(fake, *votes[CAROL], user=EVE) == "Vote counted (you have 1 left)."
        status = await command(fake, "contest status", user=EVE)
        assert "5 votes cast" in status and "You have 1 of 3 votes left" in status, status

    # The voting window ends while the bot is down: the next start catches up and posts the results.
    clock.move(minutes=3)
    async with running_bot(tmp_path, fake, wavespeed_url=url) as running:
        await wait_phase(running, "done")
        [results] = results_posts(fake)
        description = results.embeds[0]["description"]
        assert description.splitlines()[:3] == [
            f"🥇 **Entry #2** by <@{BOB}>: 3 votes",
            f"🥈 **Entry #3** by <@{CAROL}>: 2 votes",
            f"3. **Entry #1** by <@{ALICE}>: 0 votes",
        ], description
        assert f"The winner is <@{BOB}> with Entry #2!" in description
        assert f"<@{BOB}> now has <@&{WINNER_ROLE}>." in description
        assert fake.role_grants == [(fake.guild_id, BOB, WINNER_ROLE)]
        assert results.allowed_mentions == {"parse": []}

        # A crash after posting, before recording: the next pass finds its own post and never posts again.
        async with running.app.db.transaction() as conn:
            await conn.execute("UPDATE contests SET phase = 'closed', results_message_id = NULL WHERE id = 1")
        running.app.contests.on_change()
        await wait_phase(running, "done")
        assert results_posts(fake) == [results]
        row = await running.app.db.fetchone("SELECT results_message_id FROM contests WHERE id = 1")
        assert row[0] == results.id
        assert "has ended" in await command(fake, "contest status", user=ALICE)
        await running.assert_ledger_balanced()
    assert len(jobs) == 3


async def test_end_early_a_role_the_bot_may_not_give_and_chinese(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, clock: Clock
) -> None:
    fake = discord_fake  # the bot has no Manage Roles here
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as running:
        options = {"theme": "Paper boats", "deadline": "1d", "winner_role": WINNER_ROLE}
        assert (await command(fake, "contest create", options, user=ADMIN)).startswith("Contest #1 is running")
        assert "already has a contest running" in await command(fake, "contest create", options, user=ADMIN)
        await enter(running, ALICE, "a paper boat on a puddle")
        # Bob's entry fails at the provider: refunded as any job, and his slot is free again.
        wavespeed.next_scenario(outcome="failed")
        options = {"prompt": "a paper crane", "contest": True}
        await reply(fake, await fake.invoke("video", options, user_id=BOB, user_name="bob"))
        await running.wait_jobs_done()
        row = await running.app.db.fetchone("SELECT id, status FROM jobs WHERE user_id = ?", (BOB,))
        assert row is not None and row["status"] == "failed"
        released = await running.app.db.fetchone("SELECT state FROM contest_entries WHERE job_id = ?", (row["id"],))
        assert released is not None and released[0] == "released"
        refunds = await running.app.db.fetchall("SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (row["id"],))
        assert [r[0] for r in refunds] == ["reserve", "refund"]
        entry = await running.app.contests.claim(fake.channel_id, BOB)  # the slot is free again
        await running.app.contests.release(entry.id)
        chinese = await command(fake, "contest status", user=BOB, locale="zh-CN")
        assert "Paper boats" in chinese and "Entries are open" not in chinese, chinese
        assert "voting opens now" in await command(fake, "contest end", user=ADMIN)
        await wait_phase(running, "voting")
        votes = await gallery(running)
        assert (await press(fake, *votes[ALICE], user=BOB)).startswith("Vote counted")
        assert "results are being posted" in await command(fake, "contest end", user=ADMIN)
        await wait_phase(running, "done")
        [results] = results_posts(fake)
        description = results.embeds[0]["description"]
        assert f"The winner is <@{ALICE}> with Entry #1!" in description
        assert "could not give" in description and "Manage Roles" in description
        assert fake.role_grants == []
        assert "no contest running" in await command(fake, "contest end", user=ADMIN)
        await running.assert_ledger_balanced()


async def test_a_chinese_server_gets_its_contest_posts_in_chinese(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, clock: Clock
) -> None:
    fake = discord_fake
    fake.guild_locales[fake.guild_id] = "zh-CN"  # sent in GUILD_CREATE: set before the bot connects
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as running:
        answer = await command(fake, "contest create", {"theme": "纸船", "deadline": "2m"}, user=ADMIN)
        assert answer.startswith("Contest #1 is running"), answer  # the admin's own language: en-US
        await command(fake, "contest end", user=ADMIN)
        await wait_phase(running, "voting")
        await command(fake, "contest end", user=ADMIN)
        await wait_phase(running, "done")
        posts = [m for m in public(fake) if m.author_id == fake.bot_user_id]
        assert posts[0].content.startswith("🏆 **比赛：纸船**"), posts[0].content
        assert posts[1].content.startswith("⭐ **纸船** 的**投票已开始**"), posts[1].content
        [results] = results_posts(fake)
        embed = results.embeds[0]
        assert embed["title"] == "🏆 结果：纸船" and embed["description"].strip() == "没有人参加本次比赛。"
        assert embed["footer"]["text"] == "比赛 #1 · contest-results:1"


async def test_entries_pass_review_first_and_a_finished_clip_can_be_entered_with_its_button(
    tmp_path: Path, discord_fake: FakeDiscord, wavespeed: FakeWaveSpeed, clock: Clock
) -> None:
    fake = discord_fake
    moderator = {"user_id": ADMIN, "permissions": DEFAULT_PERMISSIONS | MANAGE_SERVER}
    async with running_bot(tmp_path, fake, wavespeed_url=wavespeed.base_url) as running:
        await reply(fake, await fake.invoke("mod review queue", {"channel": fake.channel_id}, **moderator))
        options = {"theme": "Night trains", "deadline": "1d", "review": True, "entries_per_member": 2}
        assert (await command(fake, "contest create", options, user=ADMIN)).startswith("Contest #1 is running")

        # An entry through the command waits for review; approved, it goes to the gallery (not to a card).
        receipt = await command(fake, "video", {"prompt": "a night train in the rain", "contest": True}, user=ALICE)
        assert "accepted" in receipt
        await running.wait_jobs_done()
        held = next(m for m in public(fake) if m.embeds and m.embeds[0].get("title") == "Review · job #1")
        assert not [m for m in contest_posts(fake) if m.content.startswith("**Entry #")], "not before approval"
        approved = await fake.click(held.id, "hailuo:approve:1", **moderator)
        assert "Approved" in (await reply(fake, approved)).content
        [first] = [m for m in contest_posts(fake) if m.content.startswith("**Entry #")]
        assert first.content.startswith("**Entry #1** · Night trains") and first.attachments

        # Bob's ordinary clip, made in the channel after the contest began, offers 🏆 Enter in contest.
        assert "accepted" in await command(fake, "video", {"prompt": "a sleeper car at dawn"}, user=BOB)
        await running.wait_jobs_done()
        card = next(m for m in public(fake) if m.embeds and "job #2" in m.embeds[0].get("title", ""))
        assert "hailuo:enter:2" in card.custom_ids()
        assert "Only the person who made this clip" in await press(fake, card.id, "hailuo:enter:2", user=CAROL)
        assert "waits for a moderator's review" in await press(fake, card.id, "hailuo:enter:2", user=BOB)
        second = next(m for m in public(fake) if m.embeds and m.embeds[0].get("title") == "Review · job #2")
        await reply(fake, await fake.click(second.id, "hailuo:approve:2", **moderator))
        entries = [m for m in contest_posts(fake) if m.content.startswith("**Entry #")]
        assert [m.content.splitlines()[0] for m in entries] == [
            "**Entry #1** · Night trains",
            "**Entry #2** · Night trains",
        ]
        assert all("<@" not in m.content for m in entries)
        await running.assert_ledger_balanced()
