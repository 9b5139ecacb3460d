"""/video, /animate, /camera and the Re-roll / Delete buttons: thin adapters over JobService.

Sequence (discord.md A2, A3, A17): checks that need no I/O answer privately at once; otherwise we
defer *ephemerally* within the 3 s, download and check the image, reserve the cost, and only then
post the public job card as a follow-up. So a problem found late is still private, while the card
everyone follows is public. The private "thinking" message is first edited into a short receipt, so
the follow-up creates a new message rather than editing the deferred one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Literal

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from cogs.cards import render
from cogs.reporter import NO_PINGS, DiscordReporter
from services import camera
from services.delivery import JobReporter, SavedClipReporter
from services.errors import QuotaExceeded, UserError
from services.images import MAX_DECLARED_BYTES, check_declared, inspect_image
from services.intake import Requester
from services.jobs import JobService
from services.pricing import format_usd
from services.prompts import validate_combination, validate_prompt
from services.spec import END_FRAME_MODELS, MODEL_HAILUO_23, MODEL_LABELS, GenerationSpec, ImageInput
from storage.db import StorageError
from storage.jobs import JobRecord

log = logging.getLogger(__name__)

QUALITY_T2V = [
    app_commands.Choice(name="standard — 768P", value="standard"),
    app_commands.Choice(name="pro — 1080P (6 s only)", value="pro"),
]
QUALITY_I2V = [
    *QUALITY_T2V,
    app_commands.Choice(name="fast — 768P, cheaper", value="fast"),
    app_commands.Choice(name="fast-pro — 1080P, cheaper (6 s only)", value="fast-pro"),
]
DURATIONS = [
    app_commands.Choice(name="6 seconds", value=6),
    app_commands.Choice(name="10 seconds (768P only)", value=10),
]


RESERVED_DURING_RESTART = (
    "Job #{job_id} is accepted, but the bot is restarting: it will start, and its card appear here, "
    "when the bot is back (usually within a minute)."
)
COULD_NOT_POST = "Sorry, I could not post your job. Nothing was charged."
RESTARTING = "The bot is restarting and not taking new videos for a moment. Please try again in a minute."
MODELS = [app_commands.Choice(name=label, value=model) for model, label in MODEL_LABELS.items()]


@dataclass(frozen=True)
class Options:
    """The common options of /video and /animate, as the user chose them."""

    quality: app_commands.Choice[str] | None
    duration: app_commands.Choice[int] | None
    model: app_commands.Choice[str] | None
    optimize_prompt: bool

    def spec(self, mode: Literal["t2v", "i2v"], prompt: str | None, *, required: bool) -> GenerationSpec:
        """Checks that need no I/O: the combination, then the prompt."""
        quality = self.quality.value if self.quality else "standard"
        duration = self.duration.value if self.duration else 6
        model = self.model.value if self.model else MODEL_HAILUO_23
        validate_combination(mode, quality, duration, model)
        return GenerationSpec(
            mode=mode,
            quality=quality,  # type: ignore[arg-type]
            duration=duration,
            prompt=validate_prompt(prompt, required=required),
            optimize_prompt=self.optimize_prompt,
            model=model,
        )


def offer_only_what_is_served(cog: GenerateCog, models: list[str], end_frames: bool) -> None:
    """Trim the commands to what the configured providers can make: the `model` option lists only
    served models (and disappears when there is one), `end_image` disappears when no provider takes
    end frames. discord.py builds the options from these parameters when the tree is synced."""
    for command in (cog.video, cog.animate):
        params = command._params  # no public API edits option choices after definition
        if len(models) <= 1:
            params.pop("model", None)
        else:
            params["model"].choices = [choice for choice in MODELS if choice.value in models]
    if not end_frames:
        cog.animate._params.pop("end_image", None)


NEEDED_PERMISSIONS = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "embed_links": "Embed Links",
    "attach_files": "Attach Files",
    "read_message_history": "Read Message History",
}


def missing_channel_permissions(interaction: discord.Interaction) -> list[str]:
    if interaction.guild_id is None:
        return []
    granted = interaction.app_permissions
    return [label for name, label in NEEDED_PERMISSIONS.items() if not getattr(granted, name)]


def with_camera(prompt: str | None, moves: str | None) -> str | None:
    """The `camera` option is a convenience: its moves become a bracket at the start of the prompt."""
    if not moves:
        return prompt
    return f"[{moves}] {prompt or ''}".strip()


def suggest_moves(current: str, limit: int = 25) -> list[str]:
    """Autocomplete for the `camera` option: complete the last of the comma-separated moves.

    Only known moves are echoed back (unknown text is dropped), so every choice stays within
    Discord's 100 characters: three moves are at most 45."""
    *typed, last = current[:200].split(",")
    done = [move for move in map(_canonical_move, typed) if move is not None][:3]
    if len(done) == 3:
        return [", ".join(done)]
    return [", ".join([*done, move]) for move in camera.suggest(last.strip(), limit) if move not in done][:limit]


def _canonical_move(text: str) -> str | None:
    try:
        return camera.parse_directives(f"[{text}]")[0][0]
    except (UserError, IndexError):
        return None


def quota_text(exc: QuotaExceeded) -> str:
    if exc.resets_at is None:
        return exc.message
    return f"{exc.message} It resets <t:{int(exc.resets_at.timestamp())}:R>."


class GenerateCog(commands.Cog):
    def __init__(self, bot: commands.Bot, jobs: JobService, *, handover_seconds: float) -> None:
        self.bot = bot
        self.jobs = jobs
        self.handover_seconds = handover_seconds
        self._http: aiohttp.ClientSession | None = None
        offer_only_what_is_served(self, jobs.router.offered_models(), jobs.router.end_frames_possible())

    async def cog_load(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def cog_unload(self) -> None:
        if self._http is not None:
            await self._http.close()

    # ----- commands --------------------------------------------------------------------------------

    @app_commands.command(name="video", description="Generate a video from a text prompt (Hailuo).")
    @app_commands.describe(
        prompt="What should happen in the video (up to 2000 characters; camera moves like [Pan left] allowed)",
        quality="standard = 768P, pro = 1080P (6 s only)",
        duration="Length of the clip; 10 s only at 768P",
        optimize_prompt="Let the service expand and refine your prompt (default: on)",
        camera="Optional camera moves, up to 3 (e.g. Push in, Pan left) — start typing to see them",
        model="Which Hailuo model (default: Hailuo 2.3)",
    )
    @app_commands.choices(quality=QUALITY_T2V, duration=DURATIONS, model=MODELS)
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        quality: app_commands.Choice[str] | None = None,
        duration: app_commands.Choice[int] | None = None,
        optimize_prompt: bool = True,
        camera: str | None = None,
        model: app_commands.Choice[str] | None = None,
    ) -> None:
        try:
            options = Options(quality, duration, model, optimize_prompt)
            spec = options.spec("t2v", with_camera(prompt, camera), required=True)
        except UserError as exc:
            await interaction.response.send_message(exc.message, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._start(interaction, spec, command="video")

    @app_commands.command(name="animate", description="Animate an image into a video (Hailuo).")
    @app_commands.describe(
        image="The first frame: JPEG, PNG or WebP, up to 20 MB, short side over 300 px",
        prompt="Optional: what should happen (camera moves like [Push in] allowed)",
        quality="standard/pro = 768P/1080P; fast/fast-pro = cheaper variants (Hailuo 2.3)",
        duration="Length of the clip; 10 s only at 768P",
        optimize_prompt="Let the service expand and refine your prompt (default: on)",
        camera="Optional camera moves, up to 3 (e.g. Push in, Pan left) — start typing to see them",
        model="Which Hailuo model (default: Hailuo 2.3)",
        end_image="Optional last frame (Hailuo 02 only): the clip moves from image to end_image",
    )
    @app_commands.choices(quality=QUALITY_I2V, duration=DURATIONS, model=MODELS)
    async def animate(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 0, 2000] | None = None,
        quality: app_commands.Choice[str] | None = None,
        duration: app_commands.Choice[int] | None = None,
        optimize_prompt: bool = True,
        camera: str | None = None,
        model: app_commands.Choice[str] | None = None,
        end_image: discord.Attachment | None = None,
    ) -> None:
        try:
            options = Options(quality, duration, model, optimize_prompt)
            spec = options.spec("i2v", with_camera(prompt, camera), required=False)
            check_declared(image.size, image.filename)
            if end_image is not None:
                if spec.model not in END_FRAME_MODELS:
                    raise UserError("An end frame needs the Hailuo 02 model. Choose `model: Hailuo 02`.")
                check_declared(end_image.size, end_image.filename)
        except UserError as exc:
            await interaction.response.send_message(exc.message, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            first = await self._fetch_image(image)
            last = await self._fetch_image(end_image, "end image") if end_image is not None else None
        except UserError as exc:
            await interaction.edit_original_response(content=exc.message)
            return
        await self._start(interaction, replace(spec, image=first, end_image=last), command="animate")

    @video.autocomplete("camera")
    @animate.autocomplete("camera")
    async def camera_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=value, value=value) for value in suggest_moves(current)]

    @app_commands.command(name="camera", description="List the camera moves you can put in a prompt.")
    async def camera_help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(camera.HELP_TEXT, ephemeral=True)

    # ----- buttons -----------------------------------------------------------------------------------

    async def reroll(self, interaction: discord.Interaction, job_id: int) -> None:
        job = await self.jobs.repo.get(job_id)
        if job is None:
            await interaction.response.send_message("That job no longer exists.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            spec = self.jobs.spec_for(job)
        except (OSError, UserError):
            await interaction.edit_original_response(content="The original image is no longer stored; start anew.")
            return
        await self._start(interaction, spec, command=job.command, parent_job_id=job.id)

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        if not await self._may_manage(interaction, job_id, "cancel"):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self.jobs.request_cancel(job_id)
        log.info("job %d: cancel by user %d: %s", job_id, interaction.user.id, outcome.value)
        await interaction.edit_original_response(content=outcome.message)

    async def _may_manage(self, interaction: discord.Interaction, job_id: int, verb: str) -> bool:
        """The requester, or anyone allowed to manage messages in the channel."""
        job = await self.jobs.repo.get(job_id)
        if (job is not None and interaction.user.id == job.user_id) or interaction.permissions.manage_messages:
            return True
        await interaction.response.send_message(
            f"Only the person who asked for this video (or a moderator) can {verb} it.", ephemeral=True
        )
        return False

    async def delete(self, interaction: discord.Interaction, job_id: int) -> None:
        if not await self._may_manage(interaction, job_id, "delete"):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            if interaction.message is not None:
                await interaction.message.delete()
        except discord.NotFound:
            pass
        except discord.HTTPException:
            await interaction.edit_original_response(content="I could not delete that message.")
            return
        log.info("job %d: result deleted by user %d", job_id, interaction.user.id)
        await interaction.edit_original_response(content="Deleted.")

    # ----- after a restart -------------------------------------------------------------------------

    def reporter_for_resumed(self, job: JobRecord) -> JobReporter:
        """A reporter for a job found unfinished at start: its card is edited (or posted anew) with
        the bot token, and the requester is mentioned when the clip is posted."""
        if job.channel_id is None:
            return SavedClipReporter(self.jobs.tmp_dir.parent / "outputs")
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)

        async def moved(message_id: int) -> None:
            await self.jobs.repo.update(job.id, message_id=message_id)

        return DiscordReporter(
            channel=channel,
            message_id=job.message_id,
            upload_limit=job.upload_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES,
            on_new_message=moved,
            mention_on_delivery=job.user_id,
        )

    # ----- shared steps --------------------------------------------------------------------------------

    async def _fetch_image(self, attachment: discord.Attachment, label: str = "image") -> ImageInput:
        data = await self._download(attachment.url)
        try:
            return await asyncio.to_thread(inspect_image, data)
        except UserError as exc:
            if label == "image":
                raise
            raise UserError(f"Your {label}: {exc.message}") from None

    async def _download(self, url: str) -> bytes:
        """Fetch the attachment with a hard cap, whatever size it declared."""
        assert self._http is not None
        chunks, total = [], 0
        try:
            async with self._http.get(url) as response:
                if response.status != 200:
                    raise UserError("I could not download your image from Discord. Please upload it again.")
                async for chunk in response.content.iter_chunked(64 * 1024):
                    total += len(chunk)
                    if total > MAX_DECLARED_BYTES:
                        raise UserError("The image is larger than 20 MB. Upload a smaller file.")
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError):
            raise UserError("I could not download your image from Discord. Please upload it again.") from None
        return b"".join(chunks)

    def _requester(self, interaction: discord.Interaction) -> Requester:
        roles = getattr(interaction.user, "roles", [])
        return Requester(
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            role_ids=tuple(role.id for role in roles),
            interaction_id=interaction.id,
            upload_limit=interaction.filesize_limit,
        )

    async def _start(
        self, interaction: discord.Interaction, spec: GenerationSpec, *, command: str, parent_job_id: int | None = None
    ) -> None:
        """Reserve, post the public card, and run the job in the background."""
        if not self.jobs.accepting:
            await interaction.edit_original_response(content=RESTARTING)
            return
        missing = missing_channel_permissions(interaction)
        if missing:
            # Interaction replies work without them, but a job that outlives the 15-minute token, a
            # card a moderator deleted, or a restart all need the bot's own access to the channel.
            await interaction.edit_original_response(
                content=f"I need these permissions in this channel first: {', '.join(missing)}. "
                "Ask a moderator to grant them. Nothing was charged."
            )
            return
        try:
            job = await self.jobs.create(
                spec, self._requester(interaction), command=command, parent_job_id=parent_job_id
            )
        except QuotaExceeded as exc:
            await interaction.edit_original_response(content=quota_text(exc))
            return
        except UserError as exc:
            await interaction.edit_original_response(content=exc.message)
            return
        except StorageError:
            log.exception("could not record a new job for user %d", interaction.user.id)
            await interaction.edit_original_response(
                content="Sorry, I could not record your request. Nothing was charged."
            )
            return
        if not self.jobs.accepting:
            # The bot began stopping while this was being reserved: the job stays reserved (it never
            # reached a provider) and the next start carries it on, posting its card then.
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(content=RESERVED_DURING_RESTART.format(job_id=job.id))
            return
        try:
            message_id = await self._post_card(interaction, job)
        except Exception:
            # Reserved but never shown or started: give the money back before saying so.
            log.exception("job %d: could not post the job card", job.id)
            await self.jobs.abandon(job, "could not post the job card")
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(
                    content="Sorry, I could not post your job. Nothing was charged."
                )
            return
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)

        async def moved(message_id: int) -> None:
            await self.jobs.repo.update(job.id, message_id=message_id)

        reporter = DiscordReporter(
            interaction=interaction,
            channel=channel,
            message_id=message_id,
            upload_limit=interaction.filesize_limit,
            handover_seconds=self.handover_seconds,
            on_new_message=moved,
        )
        self.jobs.start(job, reporter)

    async def _post_card(self, interaction: discord.Interaction, job: JobRecord) -> int:
        """The private receipt, then the public card (a new message: the deferred one is edited first)."""
        cost = "free preview" if job.cost_micros == 0 else format_usd(job.cost_micros)
        await interaction.edit_original_response(content=f"Job #{job.id} accepted ({cost}). Follow it below.")
        card = self.jobs.card_for(job)
        message = await interaction.followup.send(embed=render(card), wait=True, allowed_mentions=NO_PINGS)
        await self.jobs.repo.update(job.id, message_id=message.id)
        return message.id
