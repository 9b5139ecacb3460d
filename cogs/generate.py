"""/video, /animate and /camera: thin adapters that check what needs no I/O, defer, and launch.

Checks that need no I/O answer privately at once; otherwise the command defers *ephemerally* within
the 3 s (docs/discord.md), downloads and checks the image, and hands over to `cogs.launch`, which
reserves the cost and only then posts the public job card. So a problem found late is still private.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import discord
from discord import app_commands
from discord.ext import commands

from cogs.attachments import AttachmentFetcher
from cogs.context import CogContext
from cogs.funnel import reply_privately
from cogs.held import LazyGallery
from cogs.launch import JobLauncher
from cogs.options import (
    DURATIONS,
    MODELS,
    QUALITY_I2V,
    QUALITY_T2V,
    Options,
    offer_only_what_is_served,
    suggest_moves,
)
from cogs.speech import to_member
from core import camera
from core.defaults import DefaultsStore, MemberDefaults, Merged
from core.errors import StorageError, UserError
from core.spec import END_FRAME_MODELS, Mode
from core.text import N_, tr, tr_n
from services.images import check_declared
from services.prompts import with_camera

log = logging.getLogger(__name__)

END_FRAME_NEEDS_02 = N_("An end frame needs the Hailuo 02 model. Choose `model: Hailuo 02`.")
TOO_MANY_VARIANTS_ONE = N_("This bot makes one clip per command here (you asked for {asked}): leave out `variants`.")
TOO_MANY_VARIANTS = N_("This bot makes at most {n} variants per command here (you asked for {asked}).")


class GenerateCog(commands.Cog):
    def __init__(self, bot: commands.Bot, context: CogContext) -> None:
        self.launcher = JobLauncher(context, LazyGallery(bot))
        self.jobs = context.jobs
        self.defaults: DefaultsStore | None = context.defaults
        self.attachments = AttachmentFetcher(context.cdn_origins)
        offer = context.jobs.offer()
        offer_only_what_is_served([self.video, self.animate], self.animate, offer.models, offer.end_frames)

    async def cog_load(self) -> None:
        await self.attachments.open()

    async def cog_unload(self) -> None:
        await self.attachments.close()  # kills image checks in flight: a shutdown never waits for them

    async def _merged(self, interaction: discord.Interaction, mode: Mode, options: Options) -> Merged:
        """The options with the member's /settings defaults filled in. One indexed local read; a sick
        database only means no defaults this time, never a refused command."""
        found = MemberDefaults()
        if self.defaults is not None:
            try:
                found = await self.defaults.get(interaction.user.id)
            except StorageError as exc:
                log.warning("could not read the defaults of user %d: %s", interaction.user.id, exc)
        return options.merged(mode, found, self.jobs.models_for(interaction.guild_id))

    # ----- commands --------------------------------------------------------------------------------

    @app_commands.command(name="video", description="Generate a video from a text prompt (Hailuo).")
    @app_commands.describe(
        prompt="What should happen in the video (up to 2000 characters; camera moves like [Pan left] allowed)",
        quality="standard = 768P, pro = 1080P (6 s only)",
        duration="Length of the clip; 10 s only at 768P",
        optimize_prompt="Let the service expand and refine your prompt (default: on, or your /settings)",
        camera="Optional camera moves, up to 3 (e.g. Push in, Pan left) — start typing to see them",
        model="Which Hailuo model (default: Hailuo 2.3, or your /settings)",
        variants="How many clips to make with these settings at once (1–4, each one charged; default 1)",
        contest="Enter this clip in the channel's contest (shown in its gallery without your name)",
    )
    @app_commands.choices(quality=QUALITY_T2V, model=MODELS)
    @app_commands.choices(duration=DURATIONS)
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        quality: app_commands.Choice[str] | None = None,
        duration: app_commands.Choice[int] | None = None,
        optimize_prompt: bool | None = None,
        camera: str | None = None,
        model: app_commands.Choice[str] | None = None,
        variants: app_commands.Range[int, 1, 4] | None = None,
        contest: bool | None = None,
    ) -> None:
        options = Options(quality, duration, model, optimize_prompt)
        merged = await self._merged(interaction, "t2v", options)
        try:
            spec = options.spec("t2v", with_camera(prompt, camera), required=True, merged=merged)
            count = self._variants(variants)
        except UserError as exc:
            await reply_privately(interaction, exc.message)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.launcher.launch(
            interaction, spec, command="video", defaults=merged, variants=count, contest=bool(contest)
        )

    @app_commands.command(name="animate", description="Animate an image into a video (Hailuo).")
    @app_commands.describe(
        image="The first frame: JPEG, PNG or WebP, up to 20 MB, short side over 300 px",
        prompt="Optional: what should happen (camera moves like [Push in] allowed)",
        quality="standard/pro = 768P/1080P; fast/fast-pro = cheaper variants (Hailuo 2.3)",
        duration="Length of the clip; 10 s only at 768P",
        optimize_prompt="Let the service expand and refine your prompt (default: on, or your /settings)",
        camera="Optional camera moves, up to 3 (e.g. Push in, Pan left) — start typing to see them",
        model="Which Hailuo model (default: Hailuo 2.3, or your /settings)",
        end_image="Optional last frame (Hailuo 02 only): the clip moves from image to end_image",
        variants="How many clips to make with these settings at once (1–4, each one charged; default 1)",
        contest="Enter this clip in the channel's contest (shown in its gallery without your name)",
    )
    @app_commands.choices(quality=QUALITY_I2V, model=MODELS)
    @app_commands.choices(duration=DURATIONS)
    async def animate(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 0, 2000] | None = None,
        quality: app_commands.Choice[str] | None = None,
        duration: app_commands.Choice[int] | None = None,
        optimize_prompt: bool | None = None,
        camera: str | None = None,
        model: app_commands.Choice[str] | None = None,
        end_image: discord.Attachment | None = None,
        variants: app_commands.Range[int, 1, 4] | None = None,
        contest: bool | None = None,
    ) -> None:
        options = Options(quality, duration, model, optimize_prompt)
        merged = await self._merged(interaction, "i2v", options)
        try:
            spec = options.spec("i2v", with_camera(prompt, camera), required=False, merged=merged)
            count = self._variants(variants)
            check_declared(image.size, image.filename)
            if end_image is not None:
                if spec.model not in END_FRAME_MODELS:
                    raise UserError(tr(END_FRAME_NEEDS_02))
                check_declared(end_image.size, end_image.filename)
        except UserError as exc:
            await reply_privately(interaction, exc.message)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            first = await self.attachments.image(image)
            last = await self.attachments.image(end_image, "end image") if end_image is not None else None
        except UserError as exc:
            await interaction.edit_original_response(content=to_member(interaction, exc.message))
            return
        await self.launcher.launch(
            interaction,
            replace(spec, image=first, end_image=last),
            command="animate",
            defaults=merged,
            variants=count,
            contest=bool(contest),
        )

    def _variants(self, asked: int | None) -> int:
        """How many jobs to make; more than this bot allows (`quotas.max_variants`) is refused privately."""
        count = asked or 1
        if count > self.jobs.max_variants:
            raise UserError(tr_n(TOO_MANY_VARIANTS_ONE, TOO_MANY_VARIANTS, self.jobs.max_variants, asked=count))
        return count

    @video.autocomplete("camera")
    @animate.autocomplete("camera")
    async def camera_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=value, value=value) for value in suggest_moves(current)]

    @app_commands.command(name="camera", description="List the camera moves you can put in a prompt.")
    async def camera_help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(to_member(interaction, camera.help_text()), ephemeral=True)
