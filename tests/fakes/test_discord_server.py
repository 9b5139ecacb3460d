"""The fake Discord works with a real discord.py bot over real sockets (docs/discord.md §13, §14)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_server import EPHEMERAL, LOADING, FakeDiscord, FakeInteraction

MIB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(3000)
VIDEO = b"\x00\x00\x00\x18ftypmp42" + random.Random(2).randbytes(2 * MIB - 12)
Scenario = Callable[[discord.Interaction, discord.Attachment, int], Awaitable[Any]]
STYLES = ["cinematic", "cartoon", "noir"]


class AgainButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"t:again:(?P<job>\d+)"):
    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Again", custom_id=f"t:again:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AgainButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        assert isinstance(interaction.client, TinyBot)
        interaction.client.clicks.append(self.job)
        await interaction.response.send_message(f"again {self.job}", ephemeral=True)


@app_commands.command(name="render", description="Render a video")
@app_commands.describe(image="input picture", frames="how many frames", style="look")
@app_commands.choices(frames=[app_commands.Choice(name="one", value=1), app_commands.Choice(name="three", value=3)])
async def render(
    interaction: discord.Interaction,
    image: discord.Attachment,
    frames: app_commands.Choice[int],
    style: str | None = None,
) -> None:
    bot = interaction.client
    assert isinstance(bot, TinyBot) and bot.scenario is not None
    try:
        outcome = await bot.scenario(interaction, image, frames.value)
    except Exception as exc:  # handed to the test, which decides whether it was expected
        outcome = exc
    bot.outcomes.put_nowait(outcome)


@render.autocomplete("style")
async def style_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=s, value=s) for s in STYLES if s.startswith(current)]


class TinyBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            chunk_guilds_at_startup=False,
        )
        self.scenario: Scenario | None = None
        self.outcomes: asyncio.Queue[Any] = asyncio.Queue()
        self.clicks: list[int] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AgainButton)
        self.tree.add_command(render)
        await self.tree.sync()


@dataclass
class Env:
    fake: FakeDiscord
    bot: TinyBot

    async def run(
        self, scenario: Scenario, *, image: dict[str, Any] | None = None, **invoke: Any
    ) -> tuple[FakeInteraction, Any]:
        """Invoke /render with an image and frames=3; returns the interaction and what the scenario returned."""
        self.bot.scenario = scenario
        image = image or self.fake.add_attachment(PNG, "in.png", "image/png", width=64, height=48)
        it = await self.fake.invoke("render", {"image": image, "frames": 3}, **invoke)
        return it, await asyncio.wait_for(self.bot.outcomes.get(), 10)


@contextlib.asynccontextmanager
async def running(**fake_options: Any) -> AsyncIterator[Env]:
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    fake = FakeDiscord(**fake_options)
    await fake.start()
    discord.http.Route.BASE = f"{fake.base_url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    bot = TinyBot()
    task = asyncio.create_task(bot.start(fake.bot_token))
    try:
        ready = asyncio.create_task(fake.wait_ready(10))
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # login or connect failed: show why instead of timing out
            ready.cancel()
            task.result()
        await ready
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        yield Env(fake, bot)
    finally:
        await bot.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await fake.stop()
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with running() as e:
        yield e


def statuses(fake: FakeDiscord, method: str, pattern: str) -> list[int]:
    return [r.status for r in fake.requests if r.method == method and re.fullmatch(pattern, r.path)]


async def test_bot_logs_in_syncs_and_gets_ready(env: Env) -> None:
    fake, bot = env.fake, env.bot
    assert fake.sync_count == 1
    [command] = fake.commands
    assert command["name"] == "render" and int(command["id"]) > 0
    assert command["application_id"] == str(fake.application_id)
    assert [(o["name"], o["type"]) for o in command["options"]] == [("image", 11), ("frames", 4), ("style", 3)]
    assert [c["value"] for c in command["options"][1]["choices"]] == [1, 3]
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.application_id
    guild = bot.get_guild(fake.guild_id)
    assert guild is not None and guild.filesize_limit == 10 * MIB
    channel = guild.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel) and channel.name == "general"
    assert fake.identify is not None and fake.identify["token"] == fake.bot_token
    assert statuses(fake, "GET", "/users/@me") == [200]
    assert statuses(fake, "GET", "/oauth2/applications/@me") == [200]
    assert statuses(fake, "PUT", f"/applications/{fake.application_id}/commands") == [200]


async def test_defer_edits_followup_file_and_persistent_button(env: Env) -> None:
    fake = env.fake

    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        data = await image.read()
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="progress 1/2")
        preview = discord.File(io.BytesIO(PNG), "preview.png")
        await interaction.edit_original_response(content="progress 2/2", attachments=[preview])
        await interaction.followup.send("done", file=discord.File(io.BytesIO(VIDEO), "out.mp4"))
        view = discord.ui.View(timeout=None)
        view.add_item(AgainButton(42))
        await interaction.edit_original_response(content="finished", view=view)
        return data, image.size, image.content_type, image.width, frames, interaction.filesize_limit

    it, outcome = await env.run(scenario)
    assert outcome == (PNG, len(PNG), "image/png", 64, 3, 10 * MIB)
    assert it.acked and it.response_type == 5 and it.deferred_ephemeral is False
    original = it.original()
    assert original is not None and original.content == "finished" and not original.flags & LOADING
    assert [a["filename"] for a in original.attachments] == ["preview.png"]  # kept: the last edit had no attachments
    assert original.custom_ids() == ["t:again:42"]
    [followup] = it.followups
    [video] = followup.attachments
    assert followup.content == "done" and followup.id != original.id
    assert (video["filename"], video["size"], video["content_type"]) == ("out.mp4", len(VIDEO), "video/mp4")
    assert video["data"] == VIDEO
    webhook = f"/webhooks/{fake.application_id}/{it.token}"
    assert statuses(fake, "PATCH", webhook + "/messages/@original") == [200, 200, 200]
    assert [r.files for r in fake.requests if r.method == "POST" and r.path == webhook] == [[("out.mp4", len(VIDEO))]]

    click = await fake.click(original.id, "t:again:42")
    await click.wait_acked()
    assert env.bot.clicks == [42]
    reply = click.original()
    assert click.response_type == 4 and reply is not None
    assert reply.content == "again 42" and reply.flags & EPHEMERAL


async def test_first_followup_after_defer_edits_the_original(env: Env) -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.defer(thinking=True, ephemeral=True)
        first = await interaction.followup.send("first", ephemeral=True, wait=True)
        second = await interaction.followup.send("second", ephemeral=True, wait=True)
        return first.id, second.id

    it, (first_id, second_id) = await env.run(scenario)
    assert it.deferred_ephemeral is True
    assert first_id == it.original_message_id and [m.id for m in it.followups] == [second_id]
    assert env.fake.messages[first_id].content == "first"


async def test_upload_over_the_limit_gives_413_40005() -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.defer(thinking=True)
        big = discord.File(io.BytesIO(bytes(MIB + 1)), "big.mp4")
        try:
            await interaction.followup.send("done", file=big)
        except discord.HTTPException as exc:
            return exc.status, exc.code, interaction.filesize_limit
        return "uploaded"

    async with running(upload_limit=MIB) as env:
        it, outcome = await env.run(scenario)
        assert outcome == (413, 40005, MIB)
        assert it.followups == []
        [rejected] = [r for r in env.fake.requests if r.status == 413]
        assert rejected.files == [("big.mp4", MIB + 1)]


@pytest.mark.parametrize("how", ["expire_token", "token_ttl"])
async def test_expired_token_gives_401_50027_and_bot_token_fallback_works(how: str) -> None:
    async with running(token_ttl=0.3 if how == "token_ttl" else 900.0) as env:
        fake = env.fake

        async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
            await interaction.response.defer(thinking=True)
            original = await interaction.original_response()
            if how == "expire_token":
                fake.expire_token(interaction.token)
            else:
                await asyncio.sleep(0.35)
            try:
                await interaction.edit_original_response(content="too late")
                error = None
            except discord.HTTPException as exc:
                error = exc.status, exc.code
            channel = interaction.channel
            assert isinstance(channel, discord.TextChannel)
            await channel.get_partial_message(original.id).edit(content="edited with the bot token")
            file = discord.File(io.BytesIO(VIDEO[:4096]), "out.mp4")
            sent = await channel.send("here it is", file=file, allowed_mentions=discord.AllowedMentions.none())
            return error, original.id, sent.id

        _, (error, original_id, sent_id) = await env.run(scenario)
        assert error == (401, 50027)
        assert fake.messages[original_id].content == "edited with the bot token"
        sent = fake.messages[sent_id]
        assert sent.interaction_token is None and sent.attachments[0]["data"] == VIDEO[:4096]
        assert sent.allowed_mentions == {"parse": []}
        # MESSAGE_CREATE reached the bot over the gateway.
        await fake.wait_until(lambda: any(m.id == sent_id for m in env.bot.cached_messages), 5)


async def test_rate_limit_429_is_retried_transparently(env: Env) -> None:
    fake = env.fake
    fake.inject_error("PATCH", "/webhooks/", 429, 0, "You are being rate limited.")
    fake.inject_error("POST", f"/channels/{fake.channel_id}/messages", 429, 0, "You are being rate limited.")

    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="after 429")
        assert isinstance(interaction.channel, discord.TextChannel)
        return (await interaction.channel.send("channel after 429")).id

    it, outcome = await env.run(scenario)
    assert isinstance(outcome, int), outcome
    original = it.original()
    assert original is not None and original.content == "after 429"
    assert fake.messages[outcome].content == "channel after 429"
    assert statuses(fake, "PATCH", rf"/webhooks/\d+/{re.escape(it.token)}/messages/@original") == [429, 200]
    assert statuses(fake, "POST", f"/channels/{fake.channel_id}/messages") == [429, 200]


async def test_attachment_read_returns_the_bytes_the_fake_serves(env: Env) -> None:
    fake = env.fake
    data = random.Random(3).randbytes(5000)
    image = fake.add_attachment(data, "photo one.jpg", None, declared_size=123)

    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.defer(thinking=True)
        first = await image.read()
        fake.inject_error("GET", "/attachments/", 404, 0, "gone")
        try:
            await image.read()
        except discord.NotFound:
            return first, image.size, image.content_type, image.filename
        return "the injected 404 was not served"

    _, outcome = await env.run(scenario, image=image)
    assert outcome == (data, 123, None, "photo one.jpg")
    assert [r.status for r in fake.requests if r.path.startswith("/attachments/")] == [200, 404]


async def test_ack_after_the_deadline_gives_10062() -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await asyncio.sleep(0.3)
        try:
            await interaction.response.defer(thinking=True)
        except discord.NotFound as exc:
            return exc.status, exc.code
        return "acked late"

    async with running(ack_deadline=0.2) as env:
        it, outcome = await env.run(scenario)
        assert outcome == (404, 10062)
        assert not it.acked and it.original() is None


async def test_second_ack_gives_40060_with_exact_json_content_type(env: Env) -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.defer(thinking=True)
        url = f"{env.fake.base_url}/api/v10/interactions/{interaction.id}/{interaction.token}/callback"
        async with aiohttp.ClientSession() as session, session.post(url, json={"type": 5}) as resp:
            return resp.status, resp.headers["Content-Type"], await resp.json()

    it, outcome = await env.run(scenario)
    assert outcome == (
        400,
        "application/json",
        {"message": "Interaction has already been acknowledged.", "code": 40060},
    )
    assert it.response_type == 5


async def test_moderator_deleted_message_gives_10008_on_edit(env: Env) -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.defer(thinking=True)
        original = await interaction.original_response()
        env.fake.delete_message(original.id)
        codes = []
        assert isinstance(interaction.channel, discord.TextChannel)
        for edit in (
            interaction.edit_original_response(content="x"),
            interaction.channel.get_partial_message(original.id).edit(content="x"),
        ):
            try:
                await edit
            except discord.NotFound as exc:
                codes.append(exc.code)
        return codes

    _, outcome = await env.run(scenario)
    assert outcome == [10008, 10008]


async def test_ephemeral_original_is_unreachable_with_the_bot_token(env: Env) -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.defer(thinking=True, ephemeral=True)
        original = await interaction.original_response()
        assert isinstance(interaction.channel, discord.TextChannel)
        try:
            await interaction.channel.get_partial_message(original.id).edit(content="x")
        except discord.NotFound as exc:
            return exc.code
        return "edited"

    it, outcome = await env.run(scenario)
    assert outcome == 10008
    original = it.original()
    assert original is not None and original.flags & EPHEMERAL


async def test_autocomplete_returns_the_bots_choices(env: Env) -> None:
    choices = await env.fake.autocomplete("render", "style", "c")
    assert choices == [{"name": "cinematic", "value": "cinematic"}, {"name": "cartoon", "value": "cartoon"}]
    with pytest.raises(LookupError):
        await env.fake.invoke("never-synced")


async def test_gateway_resume_keeps_dispatching(env: Env) -> None:
    fake = env.fake
    resumed = asyncio.create_task(env.bot.wait_for("resumed"))
    await fake.reconnect_gateway()
    await asyncio.wait_for(resumed, 5)  # the bot saw RESUMED
    assert fake.resume_count == 1

    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.send_message("after resume")
        return "ok"

    it, outcome = await env.run(scenario)
    assert outcome == "ok" and fake.ready_count == 1
    original = it.original()
    assert original is not None and original.content == "after resume"


async def test_invoker_roles_and_permissions_reach_the_bot(env: Env) -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.send_message("ok", ephemeral=True)
        assert isinstance(interaction.user, discord.Member)
        perms = interaction.permissions
        return interaction.user.id, [r.id for r in interaction.user.roles], perms.administrator, perms.attach_files

    _, outcome = await env.run(
        scenario, user_id=77, roles=[555], permissions=discord.Permissions(attach_files=True).value
    )
    assert outcome == (77, [env.fake.guild_id, 555], False, True)
    _, outcome = await env.run(scenario)
    assert outcome[2:] == (False, True)  # default: every text permission, no administrator


async def test_a_guild_joins_and_leaving_it_answers_204_as_discord_does(env: Env) -> None:
    fake, bot = env.fake, env.bot
    joined = asyncio.create_task(bot.wait_for("guild_join"))
    other = await fake.join_guild()
    guild = await asyncio.wait_for(joined, 5)
    assert guild.id == other and bot.get_guild(other) is not None and len(bot.guilds) == 2
    removed = asyncio.create_task(bot.wait_for("guild_remove"))
    await guild.leave()  # DELETE /users/@me/guilds/{id}, then GUILD_DELETE on the gateway
    assert (await asyncio.wait_for(removed, 5)).id == other
    assert bot.get_guild(other) is None and fake.left_guilds == [other] and other not in fake.guilds
    assert statuses(fake, "DELETE", f"/users/@me/guilds/{other}") == [204]
    with pytest.raises(discord.NotFound) as info:  # not in it any more: Unknown Guild
        await guild.leave()
    assert info.value.code == 10004


async def test_an_interaction_can_come_from_another_guild(env: Env) -> None:
    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.send_message("ok", ephemeral=True)
        return interaction.guild_id, interaction.channel_id

    other = await env.fake.join_guild()
    _, outcome = await env.run(scenario, guild_id=other)
    assert outcome == (other, env.fake.guilds[other])
    _, outcome = await env.run(scenario, guild_id=42)  # a guild the bot user is not in
    assert outcome[0] == 42


async def test_giving_a_role_needs_manage_roles_and_a_role_below_the_bots(env: Env) -> None:
    from tests.fakes.discord_server import MANAGE_ROLES

    fake, bot = env.fake, env.bot

    async def scenario(interaction: discord.Interaction, image: discord.Attachment, frames: int) -> Any:
        await interaction.response.send_message("ok", ephemeral=True)
        assert isinstance(interaction.user, discord.Member) and interaction.user.joined_at is not None
        return interaction.user.joined_at.isoformat()

    await env.run(scenario, user_id=78, roles=[555])  # the role exists: someone has it
    _, joined = await env.run(scenario, user_id=77, joined_at="2026-12-01T10:00:00+00:00")
    assert joined == "2026-12-01T10:00:00+00:00"
    with pytest.raises(discord.Forbidden) as refused:  # the default bot has no Manage Roles
        await bot.http.add_role(fake.guild_id, 77, 555)
    assert (refused.value.status, refused.value.code) == (403, 50013)
    fake.app_permissions |= MANAGE_ROLES
    await bot.http.add_role(fake.guild_id, 77, 555)
    await bot.http.add_role(fake.guild_id, 77, 555)  # idempotent, as Discord's
    assert fake.role_grants == [(fake.guild_id, 77, 555)]
    assert statuses(fake, "PUT", f"/guilds/{fake.guild_id}/members/77/roles/555") == [403, 204, 204]
    fake.bot_top_role_position = 1  # the role sits at the bot's own height: refused
    with pytest.raises(discord.Forbidden):
        await bot.http.add_role(fake.guild_id, 77, 555)
    with pytest.raises(discord.NotFound) as unknown:
        await bot.http.add_role(fake.guild_id, 77, 999)
    assert unknown.value.code == 10011


async def test_channel_history_pages_newest_first(env: Env) -> None:
    fake, bot = env.fake, env.bot
    channel = bot.get_partial_messageable(fake.channel_id, guild_id=fake.guild_id)
    sent = [await channel.send(f"message {n}") for n in range(130)]
    seen = [message.id async for message in channel.history(limit=120)]
    assert seen == [message.id for message in reversed(sent)][:120]
    assert len(statuses(fake, "GET", f"/channels/{fake.channel_id}/messages")) == 2  # 100, then 20 before
