"""Contests, Discord-free: create one, enter it, vote, end it early, and the scheduler's view of what is due.

Time comes from `clock` (injected: tests move it without sleeping). Deadlines are stored, so a restart
loses nothing: `due(now)` lists every move whose moment has passed, including those missed while the bot
was down, and each move is a compare-and-set in the store, so running it twice changes nothing.

Money: a contest's budget is a budget pool (core.admin.Pool, period "contest": it never starts again) that
pays for jobs asked for in the contest's channel while entries are open; it is retired when they close.
Entries are ordinary jobs, reserved, settled and refunded by the job pipeline; a failed entry is refunded
there and its slot here is released.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from core.admin import AuditLine
from core.clock import utcnow
from core.contests import Contest, ContestStore, Entry, NewContest, Standing
from core.errors import UserError
from core.text import N_, Text, tr, tr_n
from services.pricing import format_usd, parse_usd

log = logging.getLogger(__name__)

MIN_WINDOW = timedelta(seconds=60)
MAX_WINDOW = timedelta(days=90)
DEFAULT_VOTING = "24h"
DEFAULT_VOTES_PER_MEMBER = 3
MAX_THEME = 200
MAX_ENTRIES_PER_MEMBER = 20
MAX_MEMBER_DAYS = 3650
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:(\d{1,6})\s*([smhdw]))", re.IGNORECASE)

NO_CONTEST = N_("There is no contest running in this channel.")
ENTRIES_CLOSED = N_("Entries for this contest are closed.")


def parse_duration(text: str) -> timedelta | None:
    """`90s`, `12h`, `3d`, `1d12h`, `1w 2d` (s, m, h, d, w); None when `text` is not a duration."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        return None
    parts = _DURATION.findall(compact)
    if not parts:
        return None
    return timedelta(seconds=sum(int(amount) * _UNITS[unit.lower()] for amount, unit in parts))


def parse_moment(text: str, start: datetime, *, what: str) -> datetime:
    """A duration after `start`, or an ISO date or date-time (UTC unless it carries an offset); at least 60 s
    after `start` and at most 90 days. Raises UserError naming `what` (the option)."""
    raw = text.strip()
    duration = parse_duration(raw)
    if duration is not None:
        moment = start + duration
    else:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise UserError(
                tr(
                    "`{what}` must be a length like `90s`, `12h`, `3d` or `1d12h`, or a date like "
                    "`2026-12-24 18:00` (UTC unless you add an offset such as `+08:00`); got `{got}`.",
                    what=what,
                    got=raw[:40].replace("`", "ˋ"),
                )
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    if moment - start < MIN_WINDOW:
        raise UserError(tr("`{what}` must be at least 60 seconds after it starts.", what=what))
    if moment - start > MAX_WINDOW:
        raise UserError(tr("`{what}` can be at most 90 days after it starts.", what=what))
    return moment


Action = Literal["open_voting", "close_voting", "post_results"]


@dataclass(frozen=True)
class Due:
    contest: Contest
    action: Action


@dataclass(frozen=True)
class Results:
    contest: Contest
    standings: list[Standing]

    @property
    def winner(self) -> Standing | None:
        """The first on the leaderboard, if anyone voted for it (votes first, then the earlier entry)."""
        return self.standings[0] if self.standings and self.standings[0].votes > 0 else None


class ContestService:
    def __init__(self, store: ContestStore, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock: Callable[[], datetime] = clock or _now
        # Told when a contest's next moment changes (created, ended early): the scheduler recomputes its sleep.
        self.on_change: Callable[[], None] = lambda: None

    # ----- /contest create, end, status ---------------------------------------------------------------------

    async def create(
        self,
        *,
        guild_id: int,
        channel_id: int,
        creator_id: int,
        theme: str,
        deadline: str,
        entries_per_member: int = 1,
        budget: str | None = None,
        review: bool = False,
        voting: str | None = None,
        min_member_days: int = 0,
        winner_role_id: int | None = None,
    ) -> Contest:
        now = self.clock()
        theme = " ".join(theme.split())
        if not 1 <= len(theme) <= MAX_THEME:
            raise UserError(tr("The theme needs 1 to {limit} characters.", limit=MAX_THEME))
        if not 1 <= entries_per_member <= MAX_ENTRIES_PER_MEMBER:
            raise UserError(tr("`entries_per_member` must be 1 to {limit}.", limit=MAX_ENTRIES_PER_MEMBER))
        if not 0 <= min_member_days <= MAX_MEMBER_DAYS:
            raise UserError(tr("`min_member_days` must be 0 to {limit}.", limit=MAX_MEMBER_DAYS))
        closes = parse_moment(deadline, now, what="deadline")
        ends = parse_moment(voting or DEFAULT_VOTING, closes, what="voting")
        budget_micros = parse_usd(budget, what="budget") if budget else None
        if budget_micros == 0:
            raise UserError(tr("`budget` must be more than $0; leave it out for a contest without a budget."))
        if await self.store.running_in(channel_id) is not None:
            raise UserError(tr("This channel already has a contest running; `/contest end` closes it."))
        new = NewContest(
            guild_id=guild_id,
            channel_id=channel_id,
            theme=theme,
            creator_id=creator_id,
            created_at=now,
            deadline=closes,
            voting_ends=ends,
            entries_per_member=entries_per_member,
            votes_per_member=DEFAULT_VOTES_PER_MEMBER,
            budget_micros=budget_micros,
            review=review,
            min_member_days=min_member_days,
            winner_role_id=winner_role_id,
        )
        after = f"{theme[:60]}; budget {format_usd(budget_micros) if budget_micros else 'none'}"
        audit = AuditLine(guild_id, creator_id, "contest create", "contest", "", after)
        try:
            contest = await self.store.create_contest(new, audit)
        except ValueError:  # another /contest create won the channel between the look and the write
            raise UserError(tr("This channel already has a contest running; `/contest end` closes it.")) from None
        log.info("contest %d: created in channel %d, entries until %s", contest.id, channel_id, closes.isoformat())
        self.on_change()
        return contest

    async def end(self, channel_id: int, actor_id: int) -> Text:
        """Close the current phase early: entries (voting opens now), or voting (results are posted now)."""
        contest = await self.store.running_in(channel_id)
        if contest is None:
            raise UserError(tr(NO_CONTEST))
        now = self.clock()
        if contest.phase == "open":
            window = contest.voting_ends - contest.deadline
            moved = await self.store.shorten(contest.id, "open", now, now + window)
            answer = tr("Entries are closed; voting opens now and runs for its full window.")
        else:
            # The deadline (past already) stays before the end, as the table requires.
            opened = min(contest.deadline, now - timedelta(milliseconds=1))
            moved = await self.store.shorten(contest.id, "voting", opened, now)
            answer = tr("Voting is closed; the results are being posted.")
        if not moved:  # the scheduler moved it on meanwhile
            return tr("The contest had just moved on by itself; nothing was changed.")
        log.info("contest %d: %s phase ended early by user %d", contest.id, contest.phase, actor_id)
        self.on_change()
        return answer

    async def status(self, channel_id: int, user_id: int) -> Text:
        contest = await self.store.running_in(channel_id) or await self.store.latest_in(channel_id)
        if contest is None:
            raise UserError(tr(NO_CONTEST))
        entries = [entry for entry in await self.store.entries(contest.id) if entry.state != "released"]
        shown = sum(entry.state == "posted" for entry in entries)
        mine = sum(entry.user_id == user_id for entry in entries)
        votes = await self.store.vote_count(contest.id)
        used = await self.store.votes_by(contest.id, user_id)
        head = tr(
            "**{theme}** (contest #{id})\n{entries} · {votes}",
            theme=contest.theme,
            id=contest.id,
            entries=tr_n("{n} entry in the gallery", "{n} entries in the gallery", shown),
            votes=tr_n("{n} vote cast", "{n} votes cast", votes),
        )
        if contest.phase == "open":
            phase = tr(
                "Entries are open until <t:{deadline}:f> (<t:{deadline}:R>); voting then runs until <t:{ends}:f>. "
                "You have entered {mine} of {allowed}.",
                deadline=_unix(contest.deadline),
                ends=_unix(contest.voting_ends),
                mine=mine,
                allowed=contest.entries_per_member,
            )
        elif contest.phase == "voting":
            phase = tr(
                "Voting is open until <t:{ends}:f> (<t:{ends}:R>). You have {left} of {allowed} votes left.",
                ends=_unix(contest.voting_ends),
                left=max(contest.votes_per_member - used, 0),
                allowed=contest.votes_per_member,
            )
        elif contest.phase == "closed":
            phase = tr("Voting has ended; the results are being posted.")
        else:
            phase = tr("This contest has ended; its results are posted above.")
        return tr("{head}\n{phase}", head=head, phase=phase)

    # ----- entries ------------------------------------------------------------------------------------------

    async def claim(self, channel_id: int, user_id: int) -> Entry:
        """Take one of the member's entry slots in this channel's contest (before their job is reserved);
        UserError when there is no open contest or their slots are used."""
        contest = await self.store.running_in(channel_id)
        if contest is None:
            raise UserError(tr(NO_CONTEST))
        claim = await self.store.claim_entry(contest.id, user_id, self.clock())
        if claim.outcome == "closed":
            raise UserError(tr(ENTRIES_CLOSED))
        if claim.outcome == "full":
            raise UserError(
                tr_n(
                    "You have already entered this contest (the limit is {n} entry each).",
                    "You have already entered this contest {n} times (the limit is {n} entries each).",
                    contest.entries_per_member,
                )
            )
        assert claim.entry is not None
        log.info("contest %d: entry %d claimed by user %d", contest.id, claim.entry.id, user_id)
        return claim.entry

    async def link(self, entry_id: int, job_id: int) -> None:
        """The job that makes this entry (reserved after the claim)."""
        await self.store.link_job(entry_id, job_id)

    async def release(self, entry_id: int) -> bool:
        """The entry's job could not be made (refused, failed, cancelled: refunded): its slot is free again."""
        released = await self.store.release_entry(entry_id)
        if released:
            log.info("contest entry %d: released (its job did not deliver)", entry_id)
        return released

    async def job_failed(self, job_id: int) -> bool:
        """Delivery's hook: a job that ended without a clip frees its entry slot, if it was an entry."""
        entry = await self.store.entry_for_job(job_id)
        return entry is not None and await self.release(entry.id)

    async def release_job(self, job_id: int) -> bool:
        """Free the slot of the entry `job_id` makes (a moderator rejected it)."""
        return await self.job_failed(job_id)

    async def enter(self, channel_id: int, user_id: int, job_id: int) -> Entry:
        """Claim a slot and link an existing job to it in one step (a clip made for the contest)."""
        entry = await self.claim(channel_id, user_id)
        await self.link(entry.id, job_id)
        return entry

    async def entry_of(self, job_id: int) -> tuple[Contest, Entry] | None:
        """The contest entry `job_id` makes (None when it is an ordinary job, or its slot was released)."""
        entry = await self.store.entry_for_job(job_id)
        if entry is None or entry.state == "released":
            return None
        contest = await self.store.contest(entry.contest_id)
        return None if contest is None else (contest, entry)

    async def open_in(self, channel_id: int) -> Contest | None:
        """The contest taking entries in this channel, if any."""
        contest = await self.store.running_in(channel_id)
        return contest if contest is not None and contest.phase == "open" else None

    async def to_gallery(self, job_id: int) -> tuple[Contest, Entry] | None:
        """A delivered entry's gallery number (given once); None when the job is no contest entry."""
        entry = await self.store.entry_for_job(job_id)
        if entry is None or entry.state == "released":
            return None
        contest = await self.store.contest(entry.contest_id)
        if contest is None or (contest.phase in ("closed", "done") and entry.number is None):
            return None  # finished after voting closed: an ordinary clip, not in the gallery
        return contest, await self.store.number_entry(entry.id)

    async def gallery_size(self, contest_id: int) -> int:
        return sum(entry.state == "posted" for entry in await self.store.entries(contest_id))

    async def gallery_posted(self, entry_id: int, message_id: int) -> None:
        await self.store.set_gallery_message(entry_id, message_id)

    # ----- votes --------------------------------------------------------------------------------------------

    async def vote(self, entry_id: int, voter_id: int, joined_at: datetime | None) -> Text:
        """A ⭐ press: counts a vote, or takes it back on a second press. The answer is private."""
        entry = await self.store.entry(entry_id)
        contest = await self.store.contest(entry.contest_id) if entry else None
        if entry is None or contest is None:
            return tr("This entry is no longer in a contest.")
        now = self.clock()
        if contest.min_member_days and (joined_at is None or now - joined_at < timedelta(days=contest.min_member_days)):
            return tr_n(
                "Only members who joined this server at least {n} day ago can vote in this contest.",
                "Only members who joined this server at least {n} days ago can vote in this contest.",
                contest.min_member_days,
            )
        result = await self.store.toggle_vote(entry_id, voter_id, now)
        left = max(contest.votes_per_member - result.used, 0)
        if result.outcome == "added":
            log.info("contest %d: user %d voted for entry %d", contest.id, voter_id, entry_id)
            return tr("Vote counted (you have {left} left).", left=left)
        if result.outcome == "removed":
            return tr("Vote removed (you have {left} left).", left=left)
        if result.outcome == "own_entry":
            return tr("You cannot vote for your own entry.")
        if result.outcome == "no_votes_left":
            return tr_n(
                "You have used your {n} vote in this contest; press ⭐ again on the entry you voted for to take it "
                "back.",
                "You have used your {n} votes in this contest; press ⭐ again on an entry you voted for to take one "
                "back.",
                contest.votes_per_member,
            )
        if result.outcome == "not_voting" and contest.phase == "open":
            return tr("Voting opens <t:{deadline}:R>.", deadline=_unix(contest.deadline))
        if result.outcome == "not_voting":
            return tr("Voting for this contest has ended.")
        return tr("This entry is no longer in a contest.")

    # ----- the scheduler ------------------------------------------------------------------------------------

    async def due(self, now: datetime | None = None) -> list[Due]:
        """What must happen now: voting opens at the deadline, closes at its end, and closed contests get
        their results. Moments that passed while the bot was down are due at once."""
        now = now or self.clock()
        found = []
        for contest in await self.store.unfinished():
            if contest.phase == "open" and now >= contest.deadline:
                found.append(Due(contest, "open_voting"))
            elif contest.phase == "voting" and now >= contest.voting_ends:
                found.append(Due(contest, "close_voting"))
            elif contest.phase == "closed":
                found.append(Due(contest, "post_results"))
        return found

    async def next_moment(self) -> datetime | None:
        """The earliest moment something becomes due (None: no contest is running)."""
        moments = []
        for contest in await self.store.unfinished():
            if contest.phase == "open":
                moments.append(contest.deadline)
            elif contest.phase == "voting":
                moments.append(contest.voting_ends)
            else:
                moments.append(contest.created_at)  # closed: due now
        return min(moments, default=None)

    async def open_voting(self, contest: Contest) -> bool:
        """open → voting (once); the contest's budget pool stops paying for its channel."""
        if not await self.store.advance(contest.id, "open", "voting"):
            return False
        log.info("contest %d: entries closed, voting open until %s", contest.id, contest.voting_ends.isoformat())
        line = AuditLine(contest.guild_id, contest.creator_id, "pool retire", f"pool contest #{contest.id}", "", "")
        await self.store.close_pool(contest, line)
        return True

    async def close_voting(self, contest: Contest) -> bool:
        """voting → closed (once): votes are final."""
        if not await self.store.advance(contest.id, "voting", "closed"):
            return False
        log.info("contest %d: voting closed with %d vote(s)", contest.id, await self.store.vote_count(contest.id))
        return True

    async def results(self, contest_id: int) -> Results | None:
        contest = await self.store.contest(contest_id)
        if contest is None:
            return None
        return Results(contest, await self.store.leaderboard(contest_id))

    async def mark_results_intent(self, contest_id: int) -> bool:
        """True the first time: post. False: an earlier run may have posted them: look before posting."""
        return await self.store.mark_results_intent(contest_id, self.clock())

    async def results_posted(self, contest_id: int, message_id: int) -> bool:
        done = await self.store.record_results(contest_id, message_id)
        if done:
            log.info("contest %d: results posted (message %d)", contest_id, message_id)
        return done

    async def remember_message(
        self, contest_id: int, which: Literal["announcement", "voting"], message_id: int
    ) -> None:
        await self.store.set_message(contest_id, which, message_id)


def _now() -> datetime:
    return utcnow()  # looked up at each call, so a test can stand a clock in for the module's


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())
