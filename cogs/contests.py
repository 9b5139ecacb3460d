"""/contest and what a contest posts: the announcement, the gallery ("Entry #n", no author) with ⭐ buttons
that survive restarts, the voting notice and the results. Thin: `ContestService` decides, this posts.

A background scheduler sleeps until the next contest moment (recomputed when a contest is created or ended)
and catches up at start. Results are posted once: the intent is recorded first, and a run that finds the
intent recorded looks in the channel for its own results post (a marker in the embed footer) before posting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.context import CogContext
from cogs.funnel import reply_privately
from cogs.guarded import guarded, has_role, require_guards
from cogs.held import EnterAction
from cogs.speech import to_server
from core.contests import Contest
from core.text import N_, Text, tr, tr_n
from services.contests import ContestService, Results

log = logging.getLogger(__name__)

REFUSED = N_("You need the Manage Server permission to start or end a contest.")
NOT_SET_UP = N_("Contests are not set up on this bot.")
GONE = N_("This button no longer does anything.")
MARKER = "contest-results:{id}"  # in the results embed's footer: how a restarted bot finds its own post
VOTE_TEMPLATE = r"contest:vote:(?P<entry_id>[0-9]{1,20})"
NO_PINGS = discord.AllowedMentions.none()
RETRY_SECONDS = 30.0  # after a pass that failed (Discord down, a missing channel)
MAX_SLEEP = 3600.0
HISTORY_LOOKBACK = 200
SHOWN_PLACES = 20
MEDALS = ("🥇", "🥈", "🥉")


def may_manage(cog: ContestCog, interaction: discord.Interaction) -> bool:
    granted = interaction.permissions
    return granted.manage_guild or granted.administrator or has_role(interaction, cog.admin_role_ids)


def anyone(cog: ContestCog, interaction: discord.Interaction) -> bool:
    return True


def _ready(cog: ContestCog) -> str | None:
    return tr(NOT_SET_UP) if cog.contests is None else None


managers_only = guarded(may_manage, tr(REFUSED), _ready)
open_to_all = guarded(anyone, tr(REFUSED), _ready)


class VoteButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=VOTE_TEMPLATE):
    """⭐ under a gallery entry; its custom_id carries the entry, so it works in any process."""

    def __init__(self, entry_id: int, label: str = "Vote") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, emoji="⭐", style=discord.ButtonStyle.primary, custom_id=f"contest:vote:{entry_id}"
            )
        )
        self.entry_id = entry_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> VoteButton:
        return cls(int(match["entry_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = (
            interaction.client.get_cog(ContestCog.__cog_name__)
            if isinstance(interaction.client, commands.Bot)
            else None
        )
        if not isinstance(cog, ContestCog):
            await reply_privately(interaction, tr(GONE))
            return
        await cog.vote(interaction, self.entry_id)


class ContestCog(commands.Cog):
    contest_group = app_commands.Group(
        name="contest",
        description="Creative contests: entries, a gallery without names, votes and results.",
        guild_only=True,
    )

    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.bot = bot
        self.contests = context.contests
        self.jobs = context.jobs
        self.funnel = context.funnel
        self.admin_role_ids = context.admin_role_ids
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        if self.contests is not None:
            self.contests.on_change = self.wake
        self.enter_action = EnterAction(context, bot, self)  # 🏆 on finished cards in a contest's channel
        require_guards(self)

    @property
    def service(self) -> ContestService:
        assert self.contests is not None  # the guards answer before any body runs without it
        return self.contests

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(VoteButton)
        if self.contests is not None:
            self._scheduler = asyncio.create_task(self._schedule(), name="contest-scheduler")

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(VoteButton)
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler

    def wake(self) -> None:
        """A contest's next moment changed (created, ended early): recompute the scheduler's sleep."""
        self._wake.set()

    # ----- commands ---------------------------------------------------------------------------------------

    @contest_group.command(name="create", description="Start a contest in this channel.")
    @app_commands.describe(
        theme="What the entries should show",
        deadline="When entries close: a length (90s, 12h, 3d, 1d12h) or a date (UTC unless an offset is given)",
        entries_per_member="Entries each member may make (default 1)",
        budget="Dollars that pay for entries made in this channel, e.g. 10 (default: members' own allowances)",
        review="Entries wait for a moderator's approval before the gallery",
        voting="How long voting lasts after the deadline (default 24h), or when it ends",
        min_member_days="Members who joined fewer days ago may not vote (default 0)",
        winner_role="A role given to the winner",
    )
    @managers_only
    async def create(
        self,
        interaction: discord.Interaction,
        theme: app_commands.Range[str, 1, 200],
        deadline: app_commands.Range[str, 1, 40],
        entries_per_member: app_commands.Range[int, 1, 20] = 1,
        budget: app_commands.Range[str, 1, 20] | None = None,
        review: bool = False,
        voting: app_commands.Range[str, 1, 40] | None = None,
        min_member_days: app_commands.Range[int, 0, 3650] = 0,
        winner_role: discord.Role | None = None,
    ) -> str:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        contest = await self.service.create(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            creator_id=interaction.user.id,
            theme=theme,
            deadline=deadline,
            entries_per_member=entries_per_member,
            budget=budget,
            review=review,
            voting=voting,
            min_member_days=min_member_days,
            winner_role_id=winner_role.id if winner_role else None,
        )
        try:
            posted = await self._channel(contest).send(
                to_server(interaction, announcement(contest)), allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as exc:
            log.warning("contest %d: could not post its announcement: %s", contest.id, exc)
            return tr(
                "Contest #{id} is running, but its announcement could not be posted here: check the bot may send "
                "messages in this channel.",
                id=contest.id,
            )
        await self.service.remember_message(contest.id, "announcement", posted.id)
        return tr(
            "Contest #{id} is running: entries until <t:{deadline}:f>, voting until <t:{ends}:f>.",
            id=contest.id,
            deadline=int(contest.deadline.timestamp()),
            ends=int(contest.voting_ends.timestamp()),
        )

    @contest_group.command(name="end", description="Close this channel's contest early: entries, or else voting.")
    @managers_only
    async def end(self, interaction: discord.Interaction) -> str:
        assert interaction.channel_id is not None
        return await self.service.end(interaction.channel_id, interaction.user.id)

    @contest_group.command(name="status", description="This channel's contest: phase, entries, votes, time left.")
    @open_to_all
    async def status(self, interaction: discord.Interaction) -> str:
        assert interaction.channel_id is not None
        return await self.service.status(interaction.channel_id, interaction.user.id)

    # ----- the gallery and its votes ----------------------------------------------------------------------

    async def post_entry(self, job_id: int, clip_path: Path) -> bool:
        """Post a delivered entry to its contest's gallery as "Entry #n" with the clip, the prompt and ⭐,
        without its author (once: an entry posted already is left alone). False when the job is no entry."""
        placed = await self.service.to_gallery(job_id)
        if placed is None:
            return False
        contest, entry = placed
        if entry.gallery_message_id is not None:
            return True
        job = await self.jobs.get(job_id)
        prompt = discord.utils.escape_mentions(discord.utils.escape_markdown(job.prompt if job else ""))[:1500]
        guild = self.bot.get_guild(contest.guild_id)
        text = tr("**Entry #{number}** · {theme}\n{prompt}", number=entry.number, theme=contest.theme, prompt=prompt)
        view = discord.ui.View(timeout=None)
        view.add_item(VoteButton(entry.id, to_server(guild, tr("Vote"))))
        message = await self._channel(contest).send(
            to_server(guild, text)[:2000],
            # Named by the entry, not the job: a job number would lead back to its card and its author.
            file=discord.File(clip_path, filename=f"entry-{entry.number}{clip_path.suffix}"),
            view=view,
            allowed_mentions=NO_PINGS,
        )
        await self.service.gallery_posted(entry.id, message.id)
        log.info("contest %d: job %d posted as entry #%s", contest.id, job_id, entry.number)
        return True

    async def vote(self, interaction: discord.Interaction, entry_id: int) -> None:
        try:
            gate = getattr(self.bot, "gate", None)
            if gate is not None and not await gate.admit(interaction):
                return
            if self.contests is None:
                await reply_privately(interaction, tr(NOT_SET_UP))
                return
            joined_at = getattr(interaction.user, "joined_at", None)
            await reply_privately(interaction, await self.contests.vote(entry_id, interaction.user.id, joined_at))
        except Exception as exc:
            await self.funnel.report(interaction, exc, f"contest vote on entry {entry_id}")

    # ----- the scheduler ----------------------------------------------------------------------------------

    async def _schedule(self) -> None:
        await self.bot.wait_until_ready()
        while True:
            self._wake.clear()
            delay = RETRY_SECONDS
            try:
                if await self.run_due():
                    moment = await self.service.next_moment()
                    delay = MAX_SLEEP if moment is None else (moment - self.service.clock()).total_seconds()
            except Exception:
                log.exception("contests: the scheduler's pass failed; trying again in %.0f s", RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(delay, 0.0), MAX_SLEEP)):
                    await self._wake.wait()

    async def run_due(self) -> bool:
        """Do everything due now; False when something failed (it is tried again later)."""
        ok = True
        for due in await self.service.due():
            contest = due.contest
            try:
                if due.action == "open_voting":
                    if await self.service.open_voting(contest):
                        await self._announce_voting(contest)
                elif due.action == "close_voting":
                    if await self.service.close_voting(contest):
                        await self._post_results(contest.id)
                else:
                    await self._post_results(contest.id)
            except Exception:
                log.exception("contest %d: %s failed; trying again later", contest.id, due.action)
                ok = False
        return ok

    async def _announce_voting(self, contest: Contest) -> None:
        shown = await self.service.gallery_size(contest.id)
        guild = self.bot.get_guild(contest.guild_id)
        text = tr(
            "⭐ **Voting is open** for **{theme}**: {entries}. Press ⭐ Vote under the ones you like ({votes}; press "
            "again to take a vote back). Authors stay hidden until the results. Voting ends <t:{ends}:R>.",
            theme=contest.theme,
            entries=tr_n("{n} entry", "{n} entries", shown),
            votes=tr_n("{n} vote each", "{n} votes each", contest.votes_per_member),
            ends=int(contest.voting_ends.timestamp()),
        )
        message = await self._channel(contest).send(to_server(guild, text), allowed_mentions=NO_PINGS)
        await self.service.remember_message(contest.id, "voting", message.id)

    async def _post_results(self, contest_id: int) -> None:
        results = await self.service.results(contest_id)
        if results is None or results.contest.phase != "closed":
            return
        contest = results.contest
        channel = self._channel(contest)
        role_note = await self._give_role(results)  # idempotent: Discord's role PUT is
        if not await self.service.mark_results_intent(contest.id):
            found = await self._find_results(channel, contest.id)
            if found is not None:
                log.info("contest %d: its results were posted before a restart (message %d)", contest.id, found.id)
                await self.service.results_posted(contest.id, found.id)
                return
        guild = self.bot.get_guild(contest.guild_id)
        message = await channel.send(embed=results_embed(results, role_note, guild), allowed_mentions=NO_PINGS)
        await self.service.results_posted(contest.id, message.id)

    async def _give_role(self, results: Results) -> Text | None:
        contest, winner = results.contest, results.winner
        if contest.winner_role_id is None or winner is None:
            return None
        user_id, role_id = winner.entry.user_id, contest.winner_role_id
        try:
            await self.bot.http.add_role(contest.guild_id, user_id, role_id, reason=f"won contest #{contest.id}")
        except discord.Forbidden as exc:
            log.warning(
                "contest %d: could not give role %d to user %d (the bot needs Manage Roles and a role above it): %s",
                contest.id,
                role_id,
                user_id,
                exc,
            )
            return tr(
                "The bot could not give <@&{role}> to the winner: it needs the Manage Roles permission and a role "
                "above <@&{role}>.",
                role=role_id,
            )
        except discord.HTTPException as exc:
            log.warning("contest %d: giving role %d to user %d failed: %s", contest.id, role_id, user_id, exc)
            return tr("The bot could not give <@&{role}> to the winner (Discord refused).", role=role_id)
        log.info("contest %d: gave role %d to the winner, user %d", contest.id, role_id, user_id)
        return tr("<@{user}> now has <@&{role}>.", user=user_id, role=role_id)

    async def _find_results(self, channel: discord.PartialMessageable, contest_id: int) -> discord.Message | None:
        marker = MARKER.format(id=contest_id)
        me = self.bot.user.id if self.bot.user else None
        async for message in channel.history(limit=HISTORY_LOOKBACK):
            if message.author.id == me and any(marker in (embed.footer.text or "") for embed in message.embeds):
                return message
        return None

    def _channel(self, contest: Contest) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(contest.channel_id, guild_id=contest.guild_id)


def announcement(contest: Contest) -> Text:
    return tr(
        "🏆 **Contest: {theme}**\nEnter a clip on this theme before <t:{deadline}:f> (<t:{deadline}:R>): "
        "`/video` or `/animate` with `contest: True` in this channel, or 🏆 Enter in contest on a clip you make "
        "here; {entries}. Entries are shown without their authors' names; voting "
        "with ⭐ runs until <t:{ends}:f>, then the results name the authors.{budget}",
        theme=contest.theme,
        deadline=int(contest.deadline.timestamp()),
        ends=int(contest.voting_ends.timestamp()),
        entries=tr_n("{n} entry each", "up to {n} entries each", contest.entries_per_member),
        budget=tr(" The contest's budget pays for the entries.") if contest.pool_id is not None else "",
    )


def results_embed(results: Results, role_note: Text | None, guild: discord.Guild | None) -> discord.Embed:
    contest, standings = results.contest, results.standings
    lines = []
    for place, standing in enumerate(standings[:SHOWN_PLACES]):
        medal = MEDALS[place] if place < len(MEDALS) and standing.votes else f"{place + 1}."
        line = tr_n(
            "{medal} **Entry #{number}** by <@{user}>: {n} vote",
            "{medal} **Entry #{number}** by <@{user}>: {n} votes",
            standing.votes,
            medal=medal,
            number=standing.entry.number,
            user=standing.entry.user_id,
        )
        lines.append(to_server(guild, line))
    winner = results.winner
    if not standings:
        verdict = tr("Nobody entered this contest.")
    elif winner is None:
        verdict = tr("No votes were cast, so there is no winner.")
    else:
        verdict = tr(
            "The winner is <@{user}> with Entry #{number}!", user=winner.entry.user_id, number=winner.entry.number
        )
    lines.append("")
    lines.append(to_server(guild, verdict))
    if role_note is not None:
        lines.append(to_server(guild, role_note))
    embed = discord.Embed(title=to_server(guild, tr("🏆 Results: {theme}", theme=contest.theme))[:256])
    embed.description = "\n".join(lines)[:4000]
    footer = to_server(guild, tr("Contest #{id}", id=contest.id))
    embed.set_footer(text=f"{footer} · {MARKER.format(id=contest.id)}")
    return embed
