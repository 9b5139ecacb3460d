"""Contests as every layer sees them: a theme in a channel, entries until a deadline, a voting window, and
results. The store behind them does every check that guards a count (entries per member, votes per member,
the phase) inside the transaction that writes, so concurrent presses can never exceed a limit.

Phases move one way, each move a compare-and-set, so a crash or a second run never moves a contest twice:
open (entries) → voting → closed (votes counted, results not yet posted) → done (results posted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from core.admin import AuditLine

Phase = Literal["open", "voting", "closed", "done"]
EntryState = Literal["claimed", "posted", "released"]
NEXT_PHASE: dict[Phase, Phase] = {"open": "voting", "voting": "closed", "closed": "done"}


@dataclass(frozen=True)
class NewContest:
    guild_id: int
    channel_id: int
    theme: str
    creator_id: int
    created_at: datetime
    deadline: datetime
    voting_ends: datetime
    entries_per_member: int
    votes_per_member: int
    budget_micros: int | None  # a pool paying for jobs in the contest channel while the contest runs
    review: bool
    min_member_days: int
    winner_role_id: int | None


@dataclass(frozen=True)
class Contest:
    id: int
    guild_id: int
    channel_id: int
    theme: str
    creator_id: int
    created_at: datetime
    deadline: datetime
    voting_ends: datetime
    entries_per_member: int
    votes_per_member: int
    pool_id: int | None
    review: bool
    min_member_days: int
    winner_role_id: int | None
    phase: Phase
    announcement_id: int | None
    voting_message_id: int | None
    results_intent_at: datetime | None
    results_message_id: int | None


@dataclass(frozen=True)
class Entry:
    id: int
    contest_id: int
    user_id: int
    job_id: int | None
    number: int | None  # "Entry #n", given when it is posted to the gallery
    state: EntryState
    gallery_message_id: int | None
    entered_at: datetime


@dataclass(frozen=True)
class Standing:
    """One gallery entry on the leaderboard: votes first, then the earlier entry."""

    entry: Entry
    votes: int


ClaimOutcome = Literal["claimed", "closed", "full"]
VoteOutcome = Literal["added", "removed", "not_voting", "own_entry", "no_votes_left", "no_entry"]


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    entry: Entry | None = None
    used: int = 0  # the member's live entries (claimed or posted) when the claim was decided


@dataclass(frozen=True)
class VoteResult:
    outcome: VoteOutcome
    used: int = 0  # the voter's votes in this contest after the change


class ContestStore(Protocol):
    async def create_contest(self, contest: NewContest, audit: AuditLine) -> Contest:
        """Store it (and its budget pool, paying for its channel) with its audit row, in one transaction.
        Raises ValueError when the channel already has a running contest (nothing written)."""
        ...

    async def contest(self, contest_id: int) -> Contest | None: ...

    async def running_in(self, channel_id: int) -> Contest | None:
        """The contest open or voting in this channel, if any."""
        ...

    async def latest_in(self, channel_id: int) -> Contest | None:
        """The newest contest in this channel, whatever its phase."""
        ...

    async def unfinished(self) -> list[Contest]:
        """Every contest whose results are not posted yet (what the scheduler watches)."""
        ...

    async def claim_entry(self, contest_id: int, user_id: int, now: datetime) -> Claim:
        """Atomically: the contest is open and before its deadline, the member has fewer live entries than
        its limit, and a slot is written."""
        ...

    async def link_job(self, entry_id: int, job_id: int) -> None: ...

    async def release_entry(self, entry_id: int) -> bool:
        """A claimed slot whose job failed stops counting; False when it was not claimed (posted, released)."""
        ...

    async def entry_for_job(self, job_id: int) -> Entry | None: ...

    async def entry(self, entry_id: int) -> Entry | None: ...

    async def number_entry(self, entry_id: int) -> Entry:
        """Give a claimed entry the next gallery number (once: a numbered entry keeps its number)."""
        ...

    async def set_gallery_message(self, entry_id: int, message_id: int) -> None: ...

    async def toggle_vote(self, entry_id: int, voter_id: int, now: datetime) -> VoteResult:
        """Atomically: while voting, not one's own entry; a second press removes the vote; at most
        votes_per_member votes per member in the contest."""
        ...

    async def advance(
        self, contest_id: int, from_phase: Phase, to_phase: Phase, *, ended_by: int | None = None
    ) -> bool:
        """Compare-and-set the phase; False when the contest was not in `from_phase` (moved already)."""
        ...

    async def shorten(self, contest_id: int, phase: Phase, deadline: datetime, voting_ends: datetime) -> bool:
        """Move the deadlines earlier (/contest end) while still in `phase`."""
        ...

    async def set_message(
        self, contest_id: int, column: Literal["announcement", "voting"], message_id: int
    ) -> None: ...

    async def mark_results_intent(self, contest_id: int, now: datetime) -> bool:
        """Record that results are about to be posted; False when a previous run recorded it already (it may
        have posted them: look before posting again)."""
        ...

    async def record_results(self, contest_id: int, message_id: int) -> bool:
        """closed → done with the results message; False when it was done already."""
        ...

    async def entries(self, contest_id: int) -> list[Entry]: ...

    async def leaderboard(self, contest_id: int) -> list[Standing]:
        """The gallery's entries by votes, ties to the earlier entry."""
        ...

    async def votes_by(self, contest_id: int, voter_id: int) -> int: ...

    async def vote_count(self, contest_id: int) -> int: ...

    async def close_pool(self, contest: Contest, audit: AuditLine) -> bool:
        """Retire the contest's budget pool (it stops paying for the channel); False when there was none."""
        ...
