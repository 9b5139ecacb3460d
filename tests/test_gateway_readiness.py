"""/healthz's gateway part follows discord.py's own events (dispatched by the real client), sharded or not."""

from __future__ import annotations

import asyncio

import discord
from discord.ext import commands

from bot import watch_gateway
from ops_server import Readiness


async def until_missing(readiness: Readiness, expected: dict[str, str]) -> None:
    async with asyncio.timeout(5):
        while readiness.missing != expected:  # noqa: ASYNC110 - the listeners run as tasks of their own
            await asyncio.sleep(0)


async def test_an_unsharded_client_is_up_from_ready_or_resumed_until_a_disconnect() -> None:
    readiness = Readiness()
    readiness.up("database")
    async with commands.Bot(command_prefix="!", intents=discord.Intents.none()) as client:
        watch_gateway(client, readiness)
        client.dispatch("ready")
        await until_missing(readiness, {})
        client.dispatch("disconnect")
        await until_missing(readiness, {"gateway": "disconnected; reconnecting"})
        client.dispatch("resumed")
        await until_missing(readiness, {})


async def test_a_sharded_client_is_up_once_all_shards_were_ready_and_none_is_lost() -> None:
    readiness = Readiness()
    readiness.up("database")
    async with commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.none(), shard_count=2) as client:
        watch_gateway(client, readiness)
        handled = asyncio.Event()

        async def probe() -> None:
            handled.set()

        client.add_listener(probe, "on_probe")
        client.dispatch("shard_ready", 0)  # one shard is not the gateway
        client.dispatch("probe")  # its listener runs after the one before it (tasks start in order)
        await asyncio.wait_for(handled.wait(), 5)
        assert readiness.missing == {"gateway": "not connected yet"}
        client.dispatch("shard_ready", 1)
        client.dispatch("ready")
        await until_missing(readiness, {})
        client.dispatch("shard_disconnect", 1)
        client.dispatch("disconnect")
        await until_missing(readiness, {"gateway": "shard 1 disconnected; reconnecting"})
        client.dispatch("shard_disconnect", 0)
        await until_missing(readiness, {"gateway": "shards 0, 1 disconnected; reconnecting"})
        client.dispatch("shard_resumed", 0)
        client.dispatch("resumed")
        await until_missing(readiness, {"gateway": "shard 1 disconnected; reconnecting"})
        client.dispatch("shard_ready", 1)  # came back with a new session (IDENTIFY), not a resume
        await until_missing(readiness, {})
