"""Contests below Discord, on real SQLite: durations and dates, entry slots and votes claimed atomically under
concurrency, phases moved once (compare-and-set), the scheduler's catch-up, the leaderboard's order, and the
contest's budget as a pool that never starts again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import UserError
from services.contests import ContestService, parse_duration, parse_moment
from services.quotas import period_end, period_key, pick_pool
from storage.admin import SqlAdminStore
from storage.connect import database_for
from storage.contests import SqlContestStore
from storage.db import SqliteDatabase
from storage.sql import ConstraintError, Database

GUILD, CHANNEL, ADMIN = 10, 20, 99
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Rig:
    service: ContestService
    store: SqlContestStore
    db: Database
    clock: Clock


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    async with database_for(db_url) as db:
        store, clock = SqlContestStore(db), Clock()
        yield Rig(ContestService(store, clock), store, db, clock)


async def make(rig: Rig, **options: object) -> int:
    defaults: dict[str, object] = {"theme": "Winter light", "deadline": "1h", "voting": "1h"}
    contest = await rig.service.create(guild_id=GUILD, channel_id=CHANNEL, creator_id=ADMIN, **{**defaults, **options})  # type: ignore[arg-type]
    return contest.id


# ----- durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("12h", 43200), ("3d", 259200), ("1d12h", 129600), ("1w 2d", 777600), ("2m", 120), ("1H30M", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "12", "h", "12x", "1d-2h", "tomorrow", "1.5h", "2026-12-24"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_a_date_is_utc_unless_it_carries_an_offset() -> None:
    assert parse_moment("2026-12-24 18:00", START, what="deadline") == datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    assert parse_moment("2026-12-24T18:00+08:00", START, what="deadline") == datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
    assert parse_moment("2026-12-24T18:00Z", START, what="deadline") == datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    assert parse_moment("1d12h", START, what="deadline") == START + timedelta(hours=36)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("59s", "at least 60 seconds"),
        ("2026-12-01T12:00:30", "at least 60 seconds"),
        ("2025-01-01", "at least 60 seconds"),
        ("91d", "at most 90 days"),
        ("soon", "must be a length like"),
    ],
)
def test_refusals_name_the_option_and_the_rule(text: str, says: str) -> None:
    with pytest.raises(UserError) as refused:
        parse_moment(text, START, what="deadline")
    assert says in refused.value.message and "`deadline`" in refused.value.message
    assert parse_moment("60s", START, what="deadline") == START + timedelta(seconds=60)


async def test_create_checks_its_options_and_one_contest_per_channel(rig: Rig) -> None:
    for options, says in (
        ({"deadline": "30s"}, "at least 60 seconds"),
        ({"voting": "10s"}, "`voting` must be at least 60 seconds"),
        ({"entries_per_member": 0}, "`entries_per_member` must be 1 to 20"),
        ({"budget": "lots"}, "`budget` must be a dollar amount"),
        ({"budget": "0"}, "must be more than $0"),
        ({"theme": "   "}, "The theme needs"),
    ):
        with pytest.raises(UserError) as refused:
            await make(rig, **options)
        assert says in refused.value.message, (options, refused.value.message)
    contest = await rig.store.contest(await make(rig, voting="2026-12-03"))
    assert contest is not None and contest.deadline == START + timedelta(hours=1)
    assert contest.voting_ends == datetime(2026, 12, 3, tzinfo=UTC) and contest.phase == "open"
    with pytest.raises(UserError, match="already has a contest running"):
        await make(rig)
    audit = await rig.db.fetchall("SELECT action, target FROM audit")
    assert [tuple(row) for row in audit] == [("contest create", f"contest #{contest.id}")]


# ----- entries ----------------------------------------------------------------------------------------------


async def test_concurrent_entries_never_exceed_the_limit(rig: Rig) -> None:
    contest_id = await make(rig, entries_per_member=3)
    results = await asyncio.gather(*(rig.service.claim(CHANNEL, 1001) for _ in range(20)), return_exceptions=True)
    claimed = [result for result in results if not isinstance(result, BaseException)]
    refused = [result for result in results if isinstance(result, UserError)]
    assert len(claimed) == 3 and len(refused) == 17
    assert "the limit is 3 entries each" in refused[0].message
    # Another member has slots of their own; a failed job frees its slot (once).
    others = await asyncio.gather(*(rig.service.claim(CHANNEL, 1002) for _ in range(5)), return_exceptions=True)
    assert sum(not isinstance(result, BaseException) for result in others) == 3
    await rig.service.link(claimed[0].id, 501)
    assert await rig.service.job_failed(501) and not await rig.service.job_failed(501)
    assert not await rig.service.job_failed(999)  # not an entry
    again = await rig.service.claim(CHANNEL, 1001)
    assert again.contest_id == contest_id
    with pytest.raises(UserError, match="already entered"):
        await rig.service.claim(CHANNEL, 1001)


async def test_entries_close_at_the_deadline_even_before_the_scheduler_runs(rig: Rig) -> None:
    await make(rig)
    rig.clock.move(hours=1)
    with pytest.raises(UserError, match="closed"):
        await rig.service.claim(CHANNEL, 1001)
    with pytest.raises(UserError, match="no contest running"):
        await rig.service.claim(CHANNEL + 1, 1001)


async def test_gallery_numbers_follow_delivery_and_are_given_once(rig: Rig) -> None:
    await make(rig, entries_per_member=2)
    first, second = await rig.service.claim(CHANNEL, 1001), await rig.service.claim(CHANNEL, 1002)
    await rig.service.link(first.id, 11)
    await rig.service.link(second.id, 12)
    numbered = await rig.service.to_gallery(12)
    assert numbered is not None and numbered[1].number == 1 and numbered[1].state == "posted"
    again = await rig.service.to_gallery(12)
    assert again is not None and again[1].number == 1
    later = await rig.service.to_gallery(11)
    assert later is not None and later[1].number == 2
    assert await rig.service.to_gallery(13) is None
    assert not await rig.service.release(second.id), "a posted entry is not released"


async def test_an_entry_finished_after_voting_closed_stays_out_of_the_gallery(rig: Rig) -> None:
    await make(rig)
    late = await rig.service.enter(CHANNEL, 1001, 21)
    rig.clock.move(hours=2)
    for _ in range(2):
        [due] = await rig.service.due()
        await (rig.service.open_voting if due.action == "open_voting" else rig.service.close_voting)(due.contest)
    assert await rig.service.to_gallery(21) is None
    entry = await rig.store.entry(late.id)
    assert entry is not None and entry.number is None and entry.state == "claimed"


# ----- votes --------------------------------------------------------------------------------------------------


async def entries_in_voting(rig: Rig, authors: list[int], **options: object) -> list[int]:
    await make(rig, **options)
    ids = []
    for job_id, author in enumerate(authors, start=100):
        entry = await rig.service.enter(CHANNEL, author, job_id)
        await rig.service.to_gallery(job_id)
        ids.append(entry.id)
    rig.clock.move(hours=1)
    [due] = await rig.service.due()
    assert due.action == "open_voting" and await rig.service.open_voting(due.contest)
    return ids


async def test_votes_toggle_refuse_self_and_cap_per_member_under_concurrency(rig: Rig) -> None:
    entries = await entries_in_voting(rig, [1001, 1002, 1003, 1004, 1005])
    voter = 1001
    assert await rig.service.vote(entries[0], voter, None) == "You cannot vote for your own entry."
    # 3 votes a member (the default): 4 entries pressed at once, each twice over, by the same member.
    answers = await asyncio.gather(*(rig.service.vote(e, voter, None) for e in entries[1:] for _ in range(2)))
    counted = sum(answer.startswith("Vote counted") for answer in answers)
    removed = sum(answer.startswith("Vote removed") for answer in answers)
    assert counted - removed == await rig.store.votes_by(1, voter) <= 3
    rows = await rig.db.fetchall("SELECT COUNT(*) FROM contest_votes WHERE voter_id = ?", (voter,))
    assert rows[0][0] <= 3
    # From a clean slate: three counted, the fourth refused, a second press takes one back.
    for entry in entries[1:]:
        if await rig.db.fetchone("SELECT 1 FROM contest_votes WHERE entry_id = ? AND voter_id = ?", (entry, voter)):
            assert (await rig.service.vote(entry, voter, None)).startswith("Vote removed")
    assert await rig.service.vote(entries[1], voter, None) == "Vote counted (you have 2 left)."
    assert await rig.service.vote(entries[2], voter, None) == "Vote counted (you have 1 left)."
    assert await rig.service.vote(entries[3], voter, None) == "Vote counted (you have 0 left)."
    assert "used your 3 votes" in await rig.service.vote(entries[4], voter, None)
    assert await rig.service.vote(entries[3], voter, None) == "Vote removed (you have 1 left)."
    assert await rig.service.vote(entries[4], voter, None) == "Vote counted (you have 0 left)."


async def test_many_voters_at_once_are_all_counted(rig: Rig) -> None:
    [entry] = await entries_in_voting(rig, [1001])
    answers = await asyncio.gather(*(rig.service.vote(entry, voter, None) for voter in range(2000, 2040)))
    assert all(answer.startswith("Vote counted") for answer in answers)
    [standing] = await rig.store.leaderboard(1)
    assert standing.votes == 40


async def test_new_members_and_votes_outside_the_window_are_refused(rig: Rig) -> None:
    await make(rig, min_member_days=7)
    entry = await rig.service.enter(CHANNEL, 1001, 100)
    await rig.service.to_gallery(100)
    old = START - timedelta(days=30)
    assert (await rig.service.vote(entry.id, 1002, old)).startswith("Voting opens <t:")
    rig.clock.move(hours=1)
    [due] = await rig.service.due()
    await rig.service.open_voting(due.contest)
    recent = rig.clock.now - timedelta(days=6, hours=23)
    assert "at least 7 days ago" in await rig.service.vote(entry.id, 1002, recent)
    assert "at least 7 days ago" in await rig.service.vote(entry.id, 1002, None)
    assert (await rig.service.vote(entry.id, 1002, old)).startswith("Vote counted")
    rig.clock.move(hours=1)  # voting_ends passed; the scheduler has not run yet
    assert await rig.service.vote(entry.id, 1003, old) == "Voting for this contest has ended."


# ----- the scheduler ------------------------------------------------------------------------------------------


async def test_phases_move_once_and_catch_up_after_downtime(rig: Rig) -> None:
    contest_id = await make(rig)
    assert await rig.service.due() == []
    assert await rig.service.next_moment() == START + timedelta(hours=1)
    rig.clock.move(hours=5)  # the bot was down through the deadline and the whole voting window
    [due] = await rig.service.due()
    assert due.action == "open_voting"
    assert await asyncio.gather(rig.service.open_voting(due.contest), rig.service.open_voting(due.contest)) in (
        [True, False],
        [False, True],
    )
    [due] = await rig.service.due()
    assert due.action == "close_voting"
    assert await rig.service.close_voting(due.contest) and not await rig.service.close_voting(due.contest)
    [due] = await rig.service.due()
    assert due.action == "post_results"
    assert await rig.service.mark_results_intent(contest_id) and not await rig.service.mark_results_intent(contest_id)
    assert await rig.service.results_posted(contest_id, 777) and not await rig.service.results_posted(contest_id, 778)
    assert await rig.service.due() == [] and await rig.service.next_moment() is None
    contest = await rig.store.contest(contest_id)
    assert contest is not None and contest.phase == "done" and contest.results_message_id == 777


async def test_end_early_closes_the_current_phase(rig: Rig) -> None:
    await make(rig, voting="2h")
    assert "voting opens now" in await rig.service.end(CHANNEL, ADMIN)
    [due] = await rig.service.due()
    assert due.action == "open_voting" and due.contest.voting_ends == START + timedelta(hours=2)
    await rig.service.open_voting(due.contest)
    assert "Voting is closed" in await rig.service.end(CHANNEL, ADMIN)
    [due] = await rig.service.due()
    assert due.action == "close_voting"
    await rig.service.close_voting(due.contest)
    with pytest.raises(UserError, match="no contest running"):
        await rig.service.end(CHANNEL, ADMIN)
    assert "results are being posted" in await rig.service.status(CHANNEL, 1001)


async def test_the_leaderboard_ranks_by_votes_then_the_earlier_entry(rig: Rig) -> None:
    entries = await entries_in_voting(rig, [1001, 1002, 1003])
    for voter in (2001, 2002):
        await rig.service.vote(entries[2], voter, None)
        await rig.service.vote(entries[1], voter, None)
    await rig.service.vote(entries[0], 2003, None)
    results = await rig.service.results(1)
    assert results is not None
    assert [(s.entry.user_id, s.votes) for s in results.standings] == [(1002, 2), (1003, 2), (1001, 1)]
    assert results.winner is not None and results.winner.entry.user_id == 1002


# ----- money: the budget pool ---------------------------------------------------------------------------------


async def test_the_budget_is_a_pool_for_the_channel_that_never_restarts_and_retires_at_the_deadline(
    rig: Rig,
) -> None:
    admin = SqlAdminStore(rig.db)
    contest_id = await make(rig, budget="5")
    [pool] = await admin.pools(GUILD)
    assert (pool.name, pool.amount_micros, pool.period, pool.channel_id, pool.on_empty) == (
        f"contest #{contest_id}",
        5_000_000,
        "contest",
        CHANNEL,
        "refuse",
    )
    assert period_key("contest", START) == period_key("contest", START + timedelta(days=400)) == "contest"
    assert period_end("contest", START) is None
    with pytest.raises(ConstraintError):  # the CHECK still guards the periods
        async with rig.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO pools (guild_id, name, amount_micros, period, on_empty, created_at)"
                " VALUES (1, 'x', 1, 'year', 'refuse', 'now')"
            )
    rig.clock.move(hours=1)
    [due] = await rig.service.due()
    await rig.service.open_voting(due.contest)
    assert await admin.pools(GUILD) == []


def test_a_contest_pool_pays_before_an_older_pool_of_the_same_channel() -> None:
    from core.admin import Pool

    older = Pool(1, GUILD, "channel", 10, "week", CHANNEL, None, "personal")
    contest = Pool(2, GUILD, "contest #1", 10, "contest", CHANNEL, None, "refuse")
    assert pick_pool([older, contest], CHANNEL, ()) == contest
    assert pick_pool([older], CHANNEL, ()) == older


async def test_migration_011_keeps_existing_pools_and_what_references_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.db

    every = storage.db._migrations()
    monkeypatch.setattr(storage.db, "_migrations", lambda: [m for m in every if m[0] < 10])
    async with SqliteDatabase(tmp_path / "old.db") as db, db.transaction() as conn:
        await conn.execute(
            "INSERT INTO pools (guild_id, name, amount_micros, period, channel_id, on_empty, created_at)"
            " VALUES (1, 'brainstorm', 20000000, 'week', 5, 'personal', '2026-11-01')"
        )
        await conn.execute("INSERT INTO pool_alerts VALUES (1, '2026-W45', 50, '2026-11-02')")
    monkeypatch.setattr(storage.db, "_migrations", lambda: every)
    async with SqliteDatabase(tmp_path / "old.db") as db:
        [pool] = await SqlAdminStore(db).pools(1)
        assert (pool.id, pool.name, pool.period, pool.amount_micros) == (1, "brainstorm", "week", 20_000_000)
        assert [tuple(row) for row in await db.fetchall("SELECT pool_id, percent FROM pool_alerts")] == [(1, 50)]
        assert await db.fetchall("PRAGMA foreign_key_check") == []
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
        with pytest.raises(ConstraintError):  # foreign keys are enforced again
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO pool_alerts VALUES (99, 'x', 50, 'now')")
