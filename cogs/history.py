"""/history (a member's jobs, newest first, ten a page) and /show (a finished job posted again, privately).

Both are private and ping no one. A member sees their own jobs; someone with Manage Messages may see
anyone's (checked here, whatever Discord's command permissions say). The page buttons carry who is
listed, the page and who asked (`hailuo-history:<user>:<page>:<viewer>`), so they keep working after
a restart and only the one who asked can turn the pages.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.buttons import ButtonRouter, job_view
from cogs.cards import render
from cogs.context import CogContext
from cogs.reporter import NO_PINGS
from cogs.speech import member_locale, to_member
from core.clock import unix
from core.history import HistoryReader
from core.jobs import JobRecord, JobStatus
from core.text import N_, Text, tr, tr_n
from services.endings import ending_message
from services.i18n import localise
from services.jobs import JobService
from services.outputs import OutputKeeper, fresh_link
from services.pricing import format_usd
from services.prompts import display_safe

log = logging.getLogger(__name__)

PAGE_SIZE = 10
PREFIX = "hailuo-history"
TEMPLATE = rf"{PREFIX}:(?P<user>[0-9]{{1,20}}):(?P<page>[0-9]{{1,6}}):(?P<viewer>[0-9]{{1,20}})"
NOT_YOURS = N_("Only moderators (Manage Messages) can see someone else's jobs.")
NOT_YOUR_BUTTONS = N_("These buttons belong to whoever ran this /history: run /history yourself.")
NO_JOB = N_("You have no job #{job_id}.")
NOT_YOUR_JOB = N_("Only the person who asked for job #{job_id} (or a moderator) can show it.")
# A job's status as a member reads it in /history and in /show's suggestions.
STATUS_WORDS = {
    JobStatus.RESERVED: N_("reserved"),
    JobStatus.SUBMITTING: N_("submitting"),
    JobStatus.SUBMITTED: N_("submitted"),
    JobStatus.QUEUED: N_("queued"),
    JobStatus.RUNNING: N_("running"),
    JobStatus.DOWNLOADING: N_("downloading"),
    JobStatus.POSTING: N_("posting"),
    JobStatus.DELIVERED: N_("delivered"),
    JobStatus.FAILED: N_("failed"),
    JobStatus.CANCELLED: N_("cancelled"),
}
LINK_NOTE = N_("The provider's link to the clip (it expires soon: save it).")
ICONS = {
    JobStatus.DELIVERED: "✅",
    JobStatus.FAILED: "❌",
    JobStatus.CANCELLED: "✖️",
}


def jump_link(job: JobRecord) -> str | None:
    if job.channel_id is None or job.message_id is None:
        return None
    return f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.message_id}"


def status_word(status: JobStatus) -> Text:
    return tr(STATUS_WORDS.get(status, status.value))


def cost_text(job: JobRecord) -> str:
    cost = tr("free") if job.cost_micros == 0 else format_usd(job.cost_micros)
    if job.status.refunded:
        return tr("~~{cost}~~ refunded", cost=cost) if job.cost_micros else cost
    return cost if job.terminal else tr("{cost} (reserved)", cost=cost)


def history_line(job: JobRecord) -> Text:
    stamp = unix(job.created_at)
    fields = {
        "job_id": job.id,
        "date": f"<t:{int(stamp)}:d>" if stamp is not None else "?",
        "icon": ICONS.get(job.status, "⏳"),
        "status": status_word(job.status),
        "cost": cost_text(job),
        "prompt": display_safe(job.prompt, 80) if job.prompt else tr("*(no prompt)*"),
    }
    link = jump_link(job)
    if link:
        return tr("**#{job_id}** · {date} · {icon} {status} · {cost} · [message]({link})\n> {prompt}", link=link,
                  **fields)  # fmt: skip
    return tr("**#{job_id}** · {date} · {icon} {status} · {cost}\n> {prompt}", **fields)


def page_count(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def history_embed(
    user_id: int, viewer_id: int, jobs: list[JobRecord], page: int, total: int, locale: str | None = None
) -> discord.Embed:
    """One page of /history, in the language of `locale` (the member who asked)."""
    title = tr("Your jobs, newest first") if user_id == viewer_id else tr("Jobs, newest first")
    embed = discord.Embed(title=localise(title, locale), colour=0x3498DB)
    header = "" if user_id == viewer_id else localise(tr("Jobs of <@{user_id}>", user_id=user_id), locale) + "\n\n"
    lines = [localise(history_line(job), locale) for job in jobs]
    empty = localise(tr("No jobs yet: try /video."), locale)
    embed.description = header + ("\n".join(lines) if lines else empty)
    footer = tr_n("Page {page} of {pages} · {n} job", "Page {page} of {pages} · {n} jobs", total, page=page,
                  pages=page_count(total))  # fmt: skip
    embed.set_footer(text=localise(footer, locale))
    return embed


def page_custom_id(user_id: int, page: int, viewer_id: int) -> str:
    return f"{PREFIX}:{user_id}:{page}:{viewer_id}"


class HistoryPageButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """Previous or next page of a /history answer (which one is in the page number it carries)."""

    def __init__(self, user_id: int, page: int, viewer_id: int, *, label: str = "", disabled: bool = False) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label or f"Page {page}",
            style=discord.ButtonStyle.secondary,
            custom_id=page_custom_id(user_id, page, viewer_id),
            disabled=disabled,
        )
        super().__init__(button)
        self.user_id, self.page, self.viewer_id = user_id, page, viewer_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> HistoryPageButton:
        return cls(int(match["user"]), int(match["page"]), int(match["viewer"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        router = getattr(interaction.client, "buttons", None)
        cog = (
            interaction.client.get_cog(HistoryCog.__cog_name__)
            if isinstance(interaction.client, commands.Bot)
            else None
        )
        if not isinstance(router, ButtonRouter) or not isinstance(cog, HistoryCog):
            log.error("a /history page button was pressed but /history is not loaded")
            return
        try:
            if router.gate is not None and not await router.gate.admit(interaction):
                return
            await cog.turn_page(interaction, self.user_id, max(self.page, 1), self.viewer_id)
        except Exception as exc:
            await router.funnel.report(interaction, exc, f"/history page {self.page}")


def pages_view(
    user_id: int, page: int, pages: int, viewer_id: int, locale: str | None = None
) -> discord.ui.View | None:
    if pages <= 1:
        return None
    newer, older = localise(tr("◀ Newer"), locale), localise(tr("Older ▶"), locale)
    view = discord.ui.View(timeout=None)
    view.add_item(HistoryPageButton(user_id, page - 1, viewer_id, label=newer, disabled=page <= 1))
    view.add_item(HistoryPageButton(user_id, page + 1, viewer_id, label=older, disabled=page >= pages))
    return view


def clip_missing(job_id: int, *, too_large: bool, link: str | None) -> Text:
    """/show's note when the clip cannot be attached: too large for this chat, or no longer kept."""
    if too_large:
        if link:
            return tr("Job #{job_id}'s clip is too large to upload here. Its card: {link}", job_id=job_id, link=link)
        return tr("Job #{job_id}'s clip is too large to upload here.", job_id=job_id)
    if link:
        return tr("Job #{job_id}'s clip is no longer stored. Its card: {link}", job_id=job_id, link=link)
    return tr("Job #{job_id}'s clip is no longer stored.", job_id=job_id)


class HistoryCog(commands.Cog):
    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.bot = bot
        self.jobs: JobService = context.jobs
        self.history: HistoryReader | None = context.history
        self.outputs: OutputKeeper | None = context.outputs

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(HistoryPageButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(HistoryPageButton)

    # ----- /history ------------------------------------------------------------------------------

    @app_commands.command(name="history", description="See your past videos (moderators: anyone's).")
    @app_commands.describe(user="Whose jobs (moderators only; yours when left out)", page="Which page (10 a page)")
    async def history_command(
        self,
        interaction: discord.Interaction,
        user: discord.User | None = None,
        page: app_commands.Range[int, 1, 100_000] = 1,
    ) -> None:
        target = user.id if user is not None else interaction.user.id
        if target != interaction.user.id and not interaction.permissions.manage_messages:
            await self._refuse(interaction, tr(NOT_YOURS))
            return
        embed, view = await self._page(target, page, interaction.user.id, member_locale(interaction))
        await interaction.response.send_message(
            embed=embed, view=view or discord.ui.View(), ephemeral=True, allowed_mentions=NO_PINGS
        )

    async def turn_page(self, interaction: discord.Interaction, user_id: int, page: int, viewer_id: int) -> None:
        """A page button: only the one who ran /history may press it, and may still see whose it lists."""
        if interaction.user.id != viewer_id:
            await self._refuse(interaction, tr(NOT_YOUR_BUTTONS))
            return
        if user_id != viewer_id and not interaction.permissions.manage_messages:
            await self._refuse(interaction, tr(NOT_YOURS))
            return
        embed, view = await self._page(user_id, page, viewer_id, member_locale(interaction))
        await interaction.response.edit_message(embed=embed, view=view, allowed_mentions=NO_PINGS)

    async def _refuse(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(to_member(interaction, text), ephemeral=True, allowed_mentions=NO_PINGS)

    async def _page(
        self, user_id: int, page: int, viewer_id: int, locale: str
    ) -> tuple[discord.Embed, discord.ui.View | None]:
        history = self._history()
        total = await history.count_of(user_id)
        page = min(page, page_count(total))
        jobs = await history.jobs_of(user_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        return history_embed(user_id, viewer_id, jobs, page, total, locale), pages_view(
            user_id, page, page_count(total), viewer_id, locale
        )

    def _history(self) -> HistoryReader:
        if self.history is None:
            raise RuntimeError("/history has no history reader (CogContext.history)")
        return self.history

    # ----- /show ---------------------------------------------------------------------------------

    @app_commands.command(name="show", description="Post one of your finished videos again, just for you.")
    @app_commands.describe(job="The job number (start typing to pick one of yours)")
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        record = await self._history().get(job)
        mine = record is not None and record.user_id == interaction.user.id
        if record is None or (not mine and not interaction.permissions.manage_messages):
            text = tr(NOT_YOUR_JOB if record is not None else NO_JOB, job_id=job)
            await interaction.edit_original_response(content=to_member(interaction, text), allowed_mentions=NO_PINGS)
            return
        await self._show(interaction, record)

    async def _show(self, interaction: discord.Interaction, job: JobRecord) -> None:
        link = jump_link(job)
        if not job.terminal:
            running = (
                tr("Job #{job_id} is still running. Its card: {link}", job_id=job.id, link=link)
                if link
                else tr("Job #{job_id} is still running.", job_id=job.id)
            )
            await interaction.edit_original_response(content=to_member(interaction, running), allowed_mentions=NO_PINGS)
            return
        card = self.jobs.card_for(job)
        # Delete means nothing on a private message: its owner dismisses it. Private: the member's language.
        view = job_view(job.id, "reroll", locale=member_locale(interaction))
        if job.status != JobStatus.DELIVERED:
            embed = render(card.with_stage("failed" if job.status == JobStatus.FAILED else "cancelled",
                                           message=ending_message(job.status, job.error_kind)))  # fmt: skip
            await interaction.edit_original_response(embed=embed, view=view, allowed_mentions=NO_PINGS)
            return
        stored = await self.outputs.stored(job.id) if self.outputs is not None else None
        limit = interaction.filesize_limit
        if stored is not None and stored[1].stat().st_size <= limit:
            _, clip, thumb = stored
            files = [discord.File(clip, filename=f"hailuo-{job.id}.mp4")]
            embed = render(card.with_stage("done"))
            if thumb is not None:
                files.append(discord.File(thumb, filename=f"hailuo-{job.id}.jpg"))
                embed.set_thumbnail(url=f"attachment://hailuo-{job.id}.jpg")
            await interaction.edit_original_response(
                embed=embed, attachments=files, view=view, allowed_mentions=NO_PINGS
            )
            return
        url = fresh_link(job)
        if url is not None:
            embed = render(card.with_stage("done", link=url, message=tr(LINK_NOTE)))
            await interaction.edit_original_response(embed=embed, view=view, allowed_mentions=NO_PINGS)
            return
        embed = render(card.with_stage("done"))
        await interaction.edit_original_response(
            content=to_member(interaction, clip_missing(job.id, too_large=stored is not None, link=link)),
            embed=embed,
            view=view,
            allowed_mentions=NO_PINGS,
        )

    @show.autocomplete("job")
    async def show_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        wanted = current.strip().lstrip("#").lower()
        jobs = await self._history().jobs_of(interaction.user.id, limit=100)
        choices = []
        for job in jobs:
            if wanted and not (str(job.id).startswith(wanted) or wanted in job.prompt.lower()):
                continue
            status = to_member(interaction, status_word(job.status))
            name = f"#{job.id} · {status} · {job.prompt}".replace("\n", " ")
            choices.append(app_commands.Choice(name=name[:97] + "…" if len(name) > 100 else name, value=job.id))
            if len(choices) == 25:
                break
        return choices
