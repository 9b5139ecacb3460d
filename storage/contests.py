"""Contests: the `core.contests.ContestStore` (storage/migrations/*/011_contests.sql).

Every check that guards a count — the phase, the deadline, a member's entries, a voter's votes, the next
entry number — is read inside the same transaction as the write it guards, after that transaction has
serialized on the contest (`Connection.serialize`: SQLite's one writer, PostgreSQL's advisory lock):
concurrent entries or votes queue there and can never both see room for one more. Phase moves are
compare-and-set.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

from core.admin import AuditLine
from core.clock import iso, utcnow
from core.contests import Claim, Contest, Entry, NewContest, Phase, Standing, VoteResult
from storage.admin import _audit
from storage.sql import ConstraintError, Database, Row

_CONTEST = (
    "id, guild_id, channel_id, theme, creator_id, created_at, deadline, voting_ends, entries_per_member,"
    " votes_per_member, pool_id, review, min_member_days, winner_role_id, phase, announcement_id,"
    " voting_message_id, results_intent_at, results_message_id"
)
_ENTRY = "id, contest_id, user_id, job_id, number, state, gallery_message_id, entered_at"
_LIVE = "('claimed', 'posted')"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _contest(row: Row) -> Contest:
    return Contest(
        id=row[0],
        guild_id=row[1],
        channel_id=row[2],
        theme=row[3],
        creator_id=row[4],
        created_at=datetime.fromisoformat(row[5]),
        deadline=datetime.fromisoformat(row[6]),
        voting_ends=datetime.fromisoformat(row[7]),
        entries_per_member=row[8],
        votes_per_member=row[9],
        pool_id=row[10],
        review=bool(row[11]),
        min_member_days=row[12],
        winner_role_id=row[13],
        phase=row[14],
        announcement_id=row[15],
        voting_message_id=row[16],
        results_intent_at=_when(row[17]),
        results_message_id=row[18],
    )


def _entry(row: Row) -> Entry:
    return Entry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], datetime.fromisoformat(row[7]))


def _scope(contest_id: int) -> str:
    return f"contest:{contest_id}"


class SqlContestStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ----- contests -----------------------------------------------------------------------------------------

    async def create_contest(self, contest: NewContest, audit: AuditLine) -> Contest:
        stamp = iso(contest.created_at)
        try:
            async with self.db.transaction() as conn:
                contest_id = await conn.insert_returning_id(
                    """INSERT INTO contests (guild_id, channel_id, theme, creator_id, created_at, deadline, voting_ends,
                       entries_per_member, votes_per_member, review, min_member_days, winner_role_id)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        contest.guild_id,
                        contest.channel_id,
                        contest.theme,
                        contest.creator_id,
                        stamp,
                        iso(contest.deadline),
                        iso(contest.voting_ends),
                        contest.entries_per_member,
                        contest.votes_per_member,
                        int(contest.review),
                        contest.min_member_days,
                        contest.winner_role_id,
                    ),
                )
                if contest.budget_micros:
                    pool_id = await conn.insert_returning_id(
                        """INSERT INTO pools (guild_id, name, amount_micros, period, channel_id, role_id, on_empty,
                           created_at) VALUES (?, ?, ?, 'contest', ?, NULL, 'refuse', ?)""",
                        (contest.guild_id, f"contest #{contest_id}", contest.budget_micros, contest.channel_id, stamp),
                    )
                    await conn.execute("UPDATE contests SET pool_id = ? WHERE id = ?", (pool_id, contest_id))
                await _audit(conn, replace(audit, target=f"contest #{contest_id}"), stamp)
                row = await conn.fetchone(f"SELECT {_CONTEST} FROM contests WHERE id = ?", (contest_id,))
        except ConstraintError as exc:
            if "contests.channel_id" in str(exc) or "contests_live_channel" in str(exc):
                raise ValueError("this channel has a running contest") from None
            raise
        assert row is not None
        return _contest(row)

    async def contest(self, contest_id: int) -> Contest | None:
        row = await self.db.fetchone(f"SELECT {_CONTEST} FROM contests WHERE id = ?", (contest_id,))
        return _contest(row) if row else None

    async def running_in(self, channel_id: int) -> Contest | None:
        row = await self.db.fetchone(
            f"SELECT {_CONTEST} FROM contests WHERE channel_id = ? AND phase IN ('open', 'voting')", (channel_id,)
        )
        return _contest(row) if row else None

    async def latest_in(self, channel_id: int) -> Contest | None:
        row = await self.db.fetchone(
            f"SELECT {_CONTEST} FROM contests WHERE channel_id = ? ORDER BY id DESC LIMIT 1", (channel_id,)
        )
        return _contest(row) if row else None

    async def unfinished(self) -> list[Contest]:
        rows = await self.db.fetchall(f"SELECT {_CONTEST} FROM contests WHERE phase != 'done' ORDER BY id")
        return [_contest(row) for row in rows]

    async def advance(
        self, contest_id: int, from_phase: Phase, to_phase: Phase, *, ended_by: int | None = None
    ) -> bool:
        async with self.db.transaction() as conn:
            moved = await conn.execute(
                "UPDATE contests SET phase = ?, ended_early_by = COALESCE(?, ended_early_by)"
                " WHERE id = ? AND phase = ?",
                (to_phase, ended_by, contest_id, from_phase),
            )
        return bool(moved)

    async def shorten(self, contest_id: int, phase: Phase, deadline: datetime, voting_ends: datetime) -> bool:
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                "UPDATE contests SET deadline = ?, voting_ends = ? WHERE id = ? AND phase = ?",
                (iso(deadline), iso(voting_ends), contest_id, phase),
            )
        return bool(changed)

    async def set_message(self, contest_id: int, column: Literal["announcement", "voting"], message_id: int) -> None:
        name = {"announcement": "announcement_id", "voting": "voting_message_id"}[column]
        async with self.db.transaction() as conn:
            await conn.execute(f"UPDATE contests SET {name} = ? WHERE id = ?", (message_id, contest_id))

    async def mark_results_intent(self, contest_id: int, now: datetime) -> bool:
        async with self.db.transaction() as conn:
            marked = await conn.execute(
                "UPDATE contests SET results_intent_at = ? WHERE id = ? AND phase = 'closed'"
                " AND results_intent_at IS NULL",
                (iso(now), contest_id),
            )
        return bool(marked)

    async def record_results(self, contest_id: int, message_id: int) -> bool:
        async with self.db.transaction() as conn:
            recorded = await conn.execute(
                "UPDATE contests SET phase = 'done', results_message_id = ? WHERE id = ? AND phase = 'closed'",
                (message_id, contest_id),
            )
        return bool(recorded)

    async def close_pool(self, contest: Contest, audit: AuditLine) -> bool:
        if contest.pool_id is None:
            return False
        stamp = iso(utcnow())
        async with self.db.transaction() as conn:
            closed = await conn.execute(
                "UPDATE pools SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (stamp, contest.pool_id)
            )
            if closed:
                await _audit(conn, audit, stamp)
        return bool(closed)

    # ----- entries ------------------------------------------------------------------------------------------

    async def claim_entry(self, contest_id: int, user_id: int, now: datetime) -> Claim:
        async with self.db.transaction() as conn:
            await conn.serialize(_scope(contest_id))
            row = await conn.fetchone(
                "SELECT phase, deadline, entries_per_member FROM contests WHERE id = ?", (contest_id,)
            )
            if row is None or row[0] != "open" or now >= datetime.fromisoformat(row[1]):
                return Claim("closed")
            counted = await conn.fetchone(
                f"SELECT COUNT(*) FROM contest_entries WHERE contest_id = ? AND user_id = ? AND state IN {_LIVE}",
                (contest_id, user_id),
            )
            used = int(counted[0]) if counted else 0
            if used >= row[2]:
                return Claim("full", used=used)
            entry_id = await conn.insert_returning_id(
                "INSERT INTO contest_entries (contest_id, user_id, entered_at) VALUES (?, ?, ?)",
                (contest_id, user_id, iso(now)),
            )
            entry = await conn.fetchone(f"SELECT {_ENTRY} FROM contest_entries WHERE id = ?", (entry_id,))
        assert entry is not None
        return Claim("claimed", _entry(entry), used + 1)

    async def link_job(self, entry_id: int, job_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE contest_entries SET job_id = ? WHERE id = ?", (job_id, entry_id))

    async def release_entry(self, entry_id: int) -> bool:
        async with self.db.transaction() as conn:
            released = await conn.execute(
                "UPDATE contest_entries SET state = 'released' WHERE id = ? AND state = 'claimed'", (entry_id,)
            )
        return bool(released)

    async def entry_for_job(self, job_id: int) -> Entry | None:
        row = await self.db.fetchone(f"SELECT {_ENTRY} FROM contest_entries WHERE job_id = ?", (job_id,))
        return _entry(row) if row else None

    async def entry(self, entry_id: int) -> Entry | None:
        row = await self.db.fetchone(f"SELECT {_ENTRY} FROM contest_entries WHERE id = ?", (entry_id,))
        return _entry(row) if row else None

    async def number_entry(self, entry_id: int) -> Entry:
        async with self.db.transaction() as conn:
            owner = await conn.fetchone("SELECT contest_id FROM contest_entries WHERE id = ?", (entry_id,))
            if owner is not None:  # numbers are handed out one at a time per contest
                await conn.serialize(_scope(owner[0]))
            await conn.execute(
                """UPDATE contest_entries SET state = 'posted', number = (
                       SELECT COALESCE(MAX(number), 0) + 1 FROM contest_entries AS other
                       WHERE other.contest_id = contest_entries.contest_id)
                   WHERE id = ? AND number IS NULL AND state = 'claimed'""",
                (entry_id,),
            )
            row = await conn.fetchone(f"SELECT {_ENTRY} FROM contest_entries WHERE id = ?", (entry_id,))
        if row is None:
            raise LookupError(f"no contest entry {entry_id}")
        return _entry(row)

    async def set_gallery_message(self, entry_id: int, message_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE contest_entries SET gallery_message_id = ? WHERE id = ?", (message_id, entry_id))

    async def entries(self, contest_id: int) -> list[Entry]:
        rows = await self.db.fetchall(
            f"SELECT {_ENTRY} FROM contest_entries WHERE contest_id = ? ORDER BY id", (contest_id,)
        )
        return [_entry(row) for row in rows]

    # ----- votes --------------------------------------------------------------------------------------------

    async def toggle_vote(self, entry_id: int, voter_id: int, now: datetime) -> VoteResult:
        async with self.db.transaction() as conn:
            owner = await conn.fetchone("SELECT contest_id FROM contest_entries WHERE id = ?", (entry_id,))
            if owner is None:
                return VoteResult("no_entry")
            await conn.serialize(_scope(owner[0]))  # then read what the vote depends on
            row = await conn.fetchone(
                """SELECT e.contest_id, e.user_id, e.state, c.phase, c.votes_per_member, c.voting_ends
                   FROM contest_entries AS e JOIN contests AS c ON c.id = e.contest_id WHERE e.id = ?""",
                (entry_id,),
            )
            if row is None or row[2] != "posted":
                return VoteResult("no_entry")
            contest_id, author, _, phase, allowed, ends = row
            if phase != "voting" or now >= datetime.fromisoformat(ends):
                return VoteResult("not_voting")
            if author == voter_id:
                return VoteResult("own_entry")
            removed = await conn.execute(
                "DELETE FROM contest_votes WHERE entry_id = ? AND voter_id = ?", (entry_id, voter_id)
            )
            counted = await conn.fetchone(
                "SELECT COUNT(*) FROM contest_votes WHERE contest_id = ? AND voter_id = ?", (contest_id, voter_id)
            )
            used = int(counted[0]) if counted else 0
            if removed:
                return VoteResult("removed", used)
            if used >= allowed:
                return VoteResult("no_votes_left", used)
            await conn.execute(
                "INSERT INTO contest_votes (entry_id, voter_id, contest_id, at) VALUES (?, ?, ?, ?)",
                (entry_id, voter_id, contest_id, iso(now)),
            )
        return VoteResult("added", used + 1)

    async def votes_by(self, contest_id: int, voter_id: int) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM contest_votes WHERE contest_id = ? AND voter_id = ?", (contest_id, voter_id)
        )
        return int(row[0]) if row else 0

    async def vote_count(self, contest_id: int) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM contest_votes WHERE contest_id = ?", (contest_id,))
        return int(row[0]) if row else 0

    async def leaderboard(self, contest_id: int) -> list[Standing]:
        rows = await self.db.fetchall(
            f"""SELECT {", ".join("e." + column for column in _ENTRY.split(", "))}, COUNT(v.voter_id) AS votes
                FROM contest_entries AS e LEFT JOIN contest_votes AS v ON v.entry_id = e.id
                WHERE e.contest_id = ? AND e.state = 'posted'
                GROUP BY e.id ORDER BY votes DESC, e.entered_at, e.id""",
            (contest_id,),
        )
        return [Standing(_entry(row), int(row[8])) for row in rows]
