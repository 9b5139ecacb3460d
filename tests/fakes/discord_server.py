"""A local stand-in for Discord (REST + gateway WebSocket) that the real discord.py client talks to over
real sockets on 127.0.0.1. Endpoints, response shapes and traps follow docs/discord.md §13, §14.

Point discord.py at it with two class attributes (docs/discord.md §13)::

    discord.http.Route.BASE = f"{fake.base_url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

Paths in ``requests`` and in ``inject_error`` are relative to ``/api/v10`` (``/webhooks/...``); CDN downloads are
logged as ``/attachments/...``.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, WSMsgType, web

JSON = dict[str, Any]
DISCORD_EPOCH_MS = 1420070400000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15
EVERYONE_PERMISSIONS = 2248473465835073  # Discord's default @everyone set (no admin)
# discord.Permissions.text() | view_channel | read_message_history | add_reactions | use_application_commands | ...
# i.e. every text permission, no administrator.
DEFAULT_PERMISSIONS = 8515152769449024
OWNER_ID = 1000
HEARTBEAT_INTERVAL_MS = 41250
JOINED_AT = "2024-01-01T00:00:00+00:00"
MANAGE_ROLES = 1 << 28
ADMINISTRATOR = 1 << 3


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def interaction_token(interaction_id: int) -> str:
    """Shaped like Discord's: base64 of "interaction:<id>:<random>", so it starts "aW50ZXJhY3Rpb246"."""
    raw = f"interaction:{interaction_id}:{secrets.token_urlsafe(48)}"
    return base64.b64encode(raw.encode()).decode().rstrip("=")


def _json(obj: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": web.json_response appends a charset and discord.py then sees a str (trap 1).
    return web.Response(
        status=status, body=json.dumps(obj).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def _form_error(code: str, message: str) -> JSON:
    return {"_errors": [{"code": code, "message": message}]}


class DiscordError(Exception):
    """Raised by handlers; turned into Discord's JSON error body."""

    def __init__(
        self, status: int, code: int, message: str, *, errors: JSON | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message
        self.errors, self.headers = errors, headers or {}

    def response(self) -> web.Response:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        if self.status == 429:  # discord.py only retries a 429 that has a Via header and a JSON body (trap 2)
            body.update(retry_after=0.05, **{"global": False})
        return _json(body, self.status, self.headers)


def _rate_limited(message: str) -> DiscordError:
    headers = {"Via": "1.1 google", "Retry-After": "1", "X-RateLimit-Scope": "user"}
    return DiscordError(429, 0, message, headers=headers)


@dataclass
class RequestRecord:
    method: str
    path: str  # relative to /api/v10, or /attachments/... for the CDN
    query: dict[str, str]
    json: Any  # the JSON body, or payload_json of a multipart body
    files: list[tuple[str, int]]  # (filename, size)
    status: int = 0


@dataclass
class _Upload:
    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class _Injection:
    method: str
    prefix: str
    status: int
    code: int
    message: str
    times: int


@dataclass(eq=False)
class FakeMessage:
    id: int
    channel_id: int
    author_id: int
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    attachments: list[JSON] = field(default_factory=list)  # id, filename, size, content_type, url, data (bytes)
    flags: int = 0
    deleted: bool = False
    interaction_token: str | None = None
    allowed_mentions: JSON | None = None
    type: int = 0
    edits: int = 0
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in _walk_components(self.components)]


def _walk_components(node: object) -> list[JSON]:
    """Every component dict carrying a custom_id, at any depth (action rows, sections, containers)."""
    found: list[JSON] = []
    if isinstance(node, list):
        for item in node:
            found += _walk_components(item)
    elif isinstance(node, dict):
        if "custom_id" in node:
            found.append(node)
        for value in node.values():
            if isinstance(value, list | dict):
                found += _walk_components(value)
    return found


@dataclass(eq=False)
class FakeInteraction:
    id: int
    token: str
    type: int
    payload: JSON  # the INTERACTION_CREATE data sent to the bot
    attachment_size_limit: int
    _fake: FakeDiscord = field(repr=False)
    message_id: int | None = None  # the message a component lives on (type 3)
    created: float = field(default_factory=time.monotonic)
    acked: bool = False
    deferred_ephemeral: bool | None = None
    response_type: int | None = None
    original_message_id: int | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    choices: list[JSON] | None = None  # autocomplete result (type 8)
    modal: JSON | None = None  # modal sent (type 9)
    expired: bool = False
    dead: bool = False  # missed the ack deadline
    untouched_defer: bool = False  # type 5 and no webhook call since: the next POST edits the original
    _acked_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def original(self) -> FakeMessage | None:
        return None if self.original_message_id is None else self._fake.messages.get(self.original_message_id)

    async def wait_acked(self, timeout: float = 5) -> None:
        try:
            await asyncio.wait_for(self._acked_event.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"interaction {self.id} was not acknowledged within {timeout}s") from None

    async def wait_for(self, predicate: Callable[[FakeDiscord], bool], timeout: float = 30) -> None:
        await self._fake.wait_until(predicate, timeout)


@dataclass(eq=False)
class _Session:
    id: str
    seq: int = 0
    shard: tuple[int, int] = (0, 1)  # [shard_id, num_shards] as identified; a resume keeps it


class _Conn:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.session: _Session | None = None
        self.lock = asyncio.Lock()

    async def send(self, payload: JSON) -> None:
        async with self.lock:
            await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: JSON) -> None:
        assert self.session is not None
        async with self.lock:  # the sequence number and the frame order must agree
            self.session.seq += 1
            await self.ws.send_str(json.dumps({"op": 0, "t": event, "s": self.session.seq, "d": data}))


@dataclass
class _Call:
    request: web.Request
    match: dict[str, str]
    payload: Any  # the JSON body or payload_json (a list for command sync)
    files: list[_Upload]

    @property
    def body(self) -> JSON:
        return self.payload if isinstance(self.payload, dict) else {}


Handler = Callable[[_Call], Awaitable[web.Response]]


class FakeDiscord:
    """One application, one bot user, one guild with one text channel (more guilds join with `join_guild`)."""

    def __init__(
        self,
        *,
        upload_limit: int = 10 * 1024 * 1024,
        token_ttl: float = 900.0,
        ack_deadline: float = 3.0,
        premium_tier: int = 0,
        bot_token: str = "test-token",
    ) -> None:
        self.upload_limit, self.token_ttl, self.ack_deadline = upload_limit, token_ttl, ack_deadline
        self.app_permissions = DEFAULT_PERMISSIONS  # what the bot itself may do in the channel
        self.premium_tier, self.bot_token = premium_tier, bot_token
        self._last_id = 0
        self.application_id, self.bot_user_id = self._snowflake(), self._snowflake()
        self.guild_id, self.channel_id = self._snowflake(), self._snowflake()
        self.guilds: dict[int, int] = {self.guild_id: self.channel_id}  # the guilds the bot is in -> their channel
        self.guild_locales: dict[int, str] = {}  # a guild's community language (preferred_locale), en-US unless set
        self.left_guilds: list[int] = []  # guilds the bot left (DELETE /users/@me/guilds/{id}), in order
        # DMs: the channel opened with each user (POST /users/@me/channels), and the users whose privacy
        # settings refuse DMs from the bot (a message there is Discord's 403 50007).
        self.dm_channels: dict[int, int] = {}
        self.closed_dms: set[int] = set()
        self.base_url = self.gateway_url = ""
        self.sync_count = 0
        self.requests: list[RequestRecord] = []
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.identify: JSON | None = None  # the last IDENTIFY payload
        self.ready_count = self.resume_count = 0
        self._scopes: dict[int | None, list[JSON]] = {}  # None = global commands
        self._by_token: dict[str, FakeInteraction] = {}
        self._blobs: dict[int, tuple[str, str, bytes]] = {}  # attachment id -> (filename, content type, data)
        self._roles: dict[int, JSON] = {}
        # Each member's roles as last seen (an invoke's `roles`), for user options' resolved members.
        self.member_roles: dict[int, list[int]] = {}
        # Roles given with PUT /guilds/{g}/members/{u}/roles/{r}, in order: (guild, user, role).
        self.role_grants: list[tuple[int, int, int]] = []
        # Where the bot's own highest role sits: Discord refuses to give a role at or above it (50013).
        self.bot_top_role_position = 100
        self._injections: list[_Injection] = []
        self._conns: set[_Conn] = set()
        # The live connection of each shard (a bot that does not shard is shard 0 of 1). Discord sends a
        # guild's events, and its interactions, on shard (guild_id >> 22) % num_shards only.
        self._shards: dict[int, _Conn] = {}
        self.shard_count = 1
        self.recommended_shards = 1  # what GET /gateway/bot advises
        self.identifies: list[JSON] = []  # every IDENTIFY payload, in order
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._routes: list[tuple[str, re.Pattern[str], Handler, bool]] = [
            (m, re.compile(p), h, auth)
            for m, p, h, auth in [
                ("GET", r"/users/@me", self._get_me, True),
                ("DELETE", r"/users/@me/guilds/(?P<gid>\d+)", self._leave_guild, True),
                ("POST", r"/users/@me/channels", self._open_dm, True),
                ("GET", r"/oauth2/applications/@me", self._get_app, True),
                ("GET", r"/gateway(?:/bot)?", self._get_gateway, False),
                ("GET|PUT", r"/applications/(?P<app>\d+)(?:/guilds/(?P<gid>\d+))?/commands", self._commands, True),
                ("POST", r"/interactions/(?P<iid>\d+)/(?P<token>[^/]+)/callback", self._callback, False),
                ("POST", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)", self._execute_webhook, False),
                ("GET|PATCH|DELETE", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)",
                 self._webhook_message, False),
                ("GET", r"/channels/(?P<cid>\d+)", self._get_channel, True),
                ("POST", r"/channels/(?P<cid>\d+)/typing", self._typing, True),
                ("POST", r"/channels/(?P<cid>\d+)/messages", self._create_channel_message, True),
                ("GET|PATCH|DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._channel_message, True),
                ("GET", r"/channels/(?P<cid>\d+)/messages", self._channel_history, True),
                ("PUT", r"/guilds/(?P<gid>\d+)/members/(?P<uid>\d+)/roles/(?P<rid>\d+)", self._add_member_role, True),
                ("GET", r"/guilds/(?P<gid>\d+)", self._get_guild, True),
            ]
        ]  # fmt: skip

    def guild_locale(self, guild_id: int) -> str:
        return self.guild_locales.get(guild_id, "en-US")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)  # video uploads (trap 5)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._api)
        app.router.add_get("/attachments/{cid}/{aid}/{filename}", self._cdn)
        app.router.add_get("/gateway", self._gateway)  # discord.py keeps the trailing slash (trap 6);
        app.router.add_get("/gateway/", self._gateway)  # resume_gateway_url has none
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway/"

    async def stop(self) -> None:
        for conn in list(self._conns):
            await conn.ws.close(code=1001, message=b"server stopping")
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ test-facing API

    @property
    def commands(self) -> list[JSON]:
        """The last synced global commands followed by every guild scope's commands."""
        return [c for scope in self._scopes.values() for c in scope]

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        declared_size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> JSON:
        """Store a user upload on the fake CDN; returns the attachment object for resolved.attachments."""
        if not self.base_url:
            raise RuntimeError("start() the fake before adding attachments: their URLs point at it")
        aid = self._snowflake()
        self._blobs[aid] = (filename, content_type or "application/octet-stream", data)
        url = f"{self.base_url}/attachments/{self.channel_id}/{aid}/{quote(filename)}"
        size = len(data) if declared_size is None else declared_size
        optional = {"content_type": content_type, "width": width, "height": height}
        att: JSON = {"id": str(aid), "filename": filename, "size": size, "url": url, "proxy_url": url}
        return att | {"ephemeral": True} | {k: v for k, v in optional.items() if v is not None}

    async def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a live gateway connection has identified (or resumed) and got READY + GUILD_CREATE."""
        try:
            # A connection the bot is closing counts as gone (ws.closed flips before the handler ends).
            await self.wait_until(lambda: self._active is not None and not self._active.ws.closed, timeout)
        except TimeoutError:
            raise TimeoutError(f"the bot did not reach READY within {timeout}s") from None

    async def wait_shards(self, shard_ids: list[int], timeout: float = 10) -> None:
        """Wait until each of these shards has a live, identified connection."""

        def live() -> bool:
            return all(s in self._shards and not self._shards[s].ws.closed for s in shard_ids)

        try:
            await self.wait_until(live, timeout)
        except TimeoutError:
            raise TimeoutError(f"shards {shard_ids} were not all connected within {timeout}s") from None

    def shard_of(self, guild_id: int) -> int:
        """Discord's rule: a guild's events go to shard (guild_id >> 22) % num_shards."""
        return (guild_id >> 22) % self.shard_count

    def guild_on_shard(self, shard_id: int, shard_count: int) -> int:
        """A new guild the bot is in whose id falls on this shard (ids carry their creation time in their
        top bits, so the shard depends on the millisecond: pick the next one that lands there)."""
        gid = self._snowflake()
        while (gid >> 22) % shard_count != shard_id:
            gid += 1 << 22
        self._last_id = max(self._last_id, gid)
        self.guilds[gid] = self._snowflake()
        return gid

    @property
    def _active(self) -> _Conn | None:
        """The connection of shard 0 (the only one of a bot that does not shard), else any live one."""
        conn = self._shards.get(0)
        if conn is not None and not conn.ws.closed:
            return conn
        return next((c for c in self._shards.values() if not c.ws.closed), conn)

    async def wait_until(
        self,
        predicate: Callable[[], bool] | Callable[[FakeDiscord], bool],
        timeout: float = 30,
    ) -> None:
        """Poll until predicate() (or predicate(fake)) is true."""
        takes_fake = len(inspect.signature(predicate).parameters) > 0
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not (predicate(self) if takes_fake else predicate()):  # type: ignore[call-arg]
            if loop.time() > end:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.02)

    async def invoke(
        self,
        name: str,
        options: dict[str, object] | None = None,
        *,
        user_id: int = 1001,
        user_name: str = "alice",
        permissions: int = DEFAULT_PERMISSIONS,
        roles: list[int] | None = None,
        attachment_size_limit: int | None = None,
        dm: bool = False,
        guild_id: int | None = None,
        locale: str = "en-US",
        joined_at: str | None = None,
    ) -> FakeInteraction:
        """Run a synced chat-input command ("name" or "group sub"); attachment options take add_attachment().
        `dm=True` sends it from the member's DM with the bot (as a client would if the command allowed it);
        `guild_id` from another guild's channel (one from `join_guild`, or any id: a guild that has the
        commands but not the bot user, as an install with only the applications.commands scope)."""
        data = self._command_data(name, options or {}, focused=None)
        return await self._interact(2, data, user_id=user_id, user_name=user_name, permissions=permissions,
                                    roles=roles, attachment_size_limit=attachment_size_limit, dm=dm,
                                    guild_id=guild_id, locale=locale, joined_at=joined_at)  # fmt: skip

    async def autocomplete(
        self,
        name: str,
        option: str,
        value: str,
        *,
        options: dict[str, object] | None = None,
        user_id: int = 1001,
        user_name: str = "alice",
        permissions: int = DEFAULT_PERMISSIONS,
        timeout: float = 5,
    ) -> list[JSON]:
        """Send a type-4 interaction with `option` focused; returns the choices the bot answered with."""
        data = self._command_data(name, {**(options or {}), option: value}, focused=option)
        it = await self._interact(4, data, user_id=user_id, user_name=user_name, permissions=permissions)
        await it.wait_acked(timeout)
        return it.choices or []

    async def click(
        self,
        message_id: int,
        custom_id: str,
        *,
        user_id: int = 1001,
        user_name: str = "alice",
        permissions: int = DEFAULT_PERMISSIONS,
        roles: list[int] | None = None,
        values: list[str] | None = None,
        locale: str = "en-US",
        joined_at: str | None = None,
    ) -> FakeInteraction:
        """Click a button (or pick `values` in a select) on a stored message; the custom_id must be on it."""
        msg = self.messages.get(message_id)
        if msg is None or msg.deleted:
            raise LookupError(f"no message {message_id}")
        component = next((c for c in _walk_components(msg.components) if c["custom_id"] == custom_id), None)
        if component is None:
            raise LookupError(f"message {message_id} has no component {custom_id!r}; it has {msg.custom_ids()}")
        data: JSON = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if values is not None:
            data["values"] = values
        # From the message's guild, so on that guild's shard, as Discord sends it.
        return await self._interact(3, data, user_id=user_id, user_name=user_name, permissions=permissions,
                                    roles=roles, message=msg, locale=locale, joined_at=joined_at,
                                    guild_id=self._guild_of(msg.channel_id))  # fmt: skip

    async def submit_modal(
        self,
        opened: FakeInteraction,
        values: dict[str, str] | None = None,
        *,
        user_id: int = 1001,
        user_name: str = "alice",
        permissions: int = DEFAULT_PERMISSIONS,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Submit the modal the bot answered `opened` with (a type 9 response), as Discord does: a type 5
        interaction whose `data.components` mirror the modal's, each text input carrying its value —
        `values[custom_id]` when given, else the prefilled one. From a component, it carries the message."""
        if opened.modal is None:
            raise LookupError(f"interaction {opened.id} was not answered with a modal")
        values = values or {}

        def answered(component: JSON) -> JSON:
            if component.get("type") == 4:  # a text input
                cid = component["custom_id"]
                return {"type": 4, "id": component.get("id", 0), "custom_id": cid,
                        "value": values.get(cid, component.get("value") or "")}  # fmt: skip
            if "component" in component:  # a label (type 18) holding one component
                return {"type": component["type"], "id": component.get("id", 0),
                        "component": answered(component["component"])}  # fmt: skip
            if "components" in component:  # an action row
                return {"type": component["type"], "id": component.get("id", 0),
                        "components": [answered(c) for c in component["components"]]}  # fmt: skip
            return component

        data: JSON = {"custom_id": opened.modal["custom_id"],
                      "components": [answered(c) for c in opened.modal.get("components", [])]}  # fmt: skip
        message = self.messages.get(opened.message_id) if opened.message_id is not None else None
        guild = opened.payload.get("guild_id")  # where the modal was opened (a DM's: the first guild, as before)
        return await self._interact(5, data, user_id=user_id, user_name=user_name, permissions=permissions,
                                    message=message, locale=locale, guild_id=int(guild) if guild else None)  # fmt: skip

    def modal_inputs(self, opened: FakeInteraction) -> dict[str, str]:
        """The text inputs of the modal the bot answered `opened` with: custom_id -> prefilled value."""
        found = _walk_components((opened.modal or {}).get("components", []))
        return {c["custom_id"]: c.get("value") or "" for c in found if c.get("type") == 4}

    async def join_guild(self) -> int:
        """Someone adds the bot to another guild (one text channel, nothing else); returns the new guild's id
        (pass it as `invoke(..., guild_id=)`). A connected bot hears GUILD_CREATE at once, as from Discord;
        one that is not connected yet finds the guild in its READY (added while it was away)."""
        gid, cid = self._snowflake(), self._snowflake()
        self.guilds[gid] = cid
        conn = self._conn_for(gid)
        if conn is not None:
            # No "unavailable" key: how a join differs from a guild back after an outage (false).
            data = {k: v for k, v in self._guild_json(gid).items() if k != "unavailable"}
            await conn.dispatch("GUILD_CREATE", data)
        return gid

    def expire_token(self, token: str) -> None:
        """From now on this interaction token's webhook routes answer 401 / 50027."""
        self._by_token[token].expired = True

    def inject_error(
        self, method: str, path_prefix: str, status: int, code: int, message: str, *, times: int = 1
    ) -> None:
        """Answer the next `times` requests matching method ("*" = any) and path prefix with this error."""
        prefix = path_prefix.removeprefix("/api/v10")
        self._injections.append(_Injection(method.upper(), prefix, status, code, message, times))

    def delete_message(self, message_id: int) -> None:
        """A moderator deletes the message: later edits get 404 / 10008."""
        msg = self.messages[message_id]
        msg.deleted = True
        self._spawn(self._dispatch("MESSAGE_DELETE", self._delete_event(msg)))

    async def reconnect_gateway(self) -> None:
        """Ask the bot to reconnect (op 7); discord.py comes back with RESUME (op 6)."""
        conn = self._live()
        await conn.send({"op": 7, "d": None, "s": None, "t": None})

    # ------------------------------------------------------------------ ids, shapes

    def _snowflake(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, now)
        return self._last_id

    @property
    def _bot_user(self) -> JSON:
        return {"id": str(self.bot_user_id), "username": "TestBot", "discriminator": "0", "avatar": None, "bot": True,
                "global_name": None}  # fmt: skip

    def _channel_json(self, guild_id: int | None = None) -> JSON:
        gid = self.guild_id if guild_id is None else guild_id
        cid = self.guilds.get(gid, self.channel_id)
        return {"id": str(cid), "type": 0, "guild_id": str(gid), "name": "general",
                "position": 0, "permission_overwrites": [], "nsfw": False, "topic": None, "parent_id": None,
                "rate_limit_per_user": 0, "last_message_id": None}  # fmt: skip

    def _role_json(self, role_id: int, name: str, permissions: int) -> JSON:
        pos = int(role_id != self.guild_id)
        return {"id": str(role_id), "name": name, "permissions": str(permissions), "color": 0, "hoist": False,
                "flags": 0, "position": pos, "managed": False, "mentionable": False}  # fmt: skip

    def _guild_json(self, guild_id: int | None = None) -> JSON:
        gid = self.guild_id if guild_id is None else guild_id
        everyone = self._role_json(gid, "@everyone", EVERYONE_PERMISSIONS) | {"position": 0}
        roles = [everyone, *self._roles.values()] if gid == self.guild_id else [everyone]
        member = {"user": self._bot_user, "roles": [], "flags": 0, "joined_at": JOINED_AT, "deaf": False, "mute": False}
        name = "Test Guild" if gid == self.guild_id else f"Other Guild {gid}"
        return {"id": str(gid), "name": name, "unavailable": False, "member_count": 2, "large": False,
                "owner_id": str(OWNER_ID), "roles": roles, "channels": [self._channel_json(gid)], "members": [member],
                "threads": [], "emojis": [], "stickers": [], "features": [], "premium_tier": self.premium_tier,
                "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
                "soundboard_sounds": [], "joined_at": JOINED_AT,
                "preferred_locale": self.guild_locale(gid)}  # fmt: skip

    def _message_json(self, m: FakeMessage) -> JSON:
        data: JSON = {"id": str(m.id), "channel_id": str(m.channel_id), "guild_id": str(self._guild_of(m.channel_id)),
                      "type": m.type, "content": m.content, "author": self._bot_user, "embeds": m.embeds,
                      "attachments": [{k: v for k, v in a.items() if k != "data"} for a in m.attachments],
                      "components": m.components, "mentions": [], "mention_roles": [], "mention_everyone": False,
                      "pinned": False, "tts": False, "timestamp": m.timestamp, "edited_timestamp": m.edited_timestamp,
                      "flags": m.flags}  # fmt: skip
        if m.interaction_token is not None:
            data["webhook_id"] = data["application_id"] = str(self.application_id)
        return data

    def _delete_event(self, m: FakeMessage) -> JSON:
        return {"id": str(m.id), "channel_id": str(m.channel_id), "guild_id": str(self._guild_of(m.channel_id))}

    def _guild_of(self, channel_id: int) -> int:
        """The guild whose text channel this is (the first guild's for any other, DMs included)."""
        return next((gid for gid, cid in self.guilds.items() if cid == channel_id), self.guild_id)

    def _channel_of(self, it: FakeInteraction) -> int:
        """Where an interaction's responses are posted: its guild's channel, for a guild the bot is in (the
        first guild's channel otherwise, DMs included, as before guilds had channels of their own)."""
        cid = int(it.payload.get("channel_id") or 0)
        return cid if cid in self.guilds.values() else self.channel_id

    def _command_data(self, name: str, values: dict[str, object], *, focused: str | None) -> JSON:
        words = name.split()
        found = next(((gid, c) for gid, scope in self._scopes.items() for c in scope
                      if c["name"] == words[0] and gid in (None, self.guild_id)), None)  # fmt: skip
        if found is None:
            raise LookupError(f"/{words[0]} was never synced; synced: {[c['name'] for c in self.commands]}")
        gid, command = found
        defs: list[JSON] = command.get("options") or []
        path: list[JSON] = []
        for word in words[1:]:
            sub = next((o for o in defs if o["name"] == word and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"/{name}: no subcommand {word!r}")
            path.append(sub)
            defs = sub.get("options") or []
        options: list[JSON] = []
        resolved: JSON = {}
        for key, value in values.items():
            spec = next((o for o in defs if o["name"] == key), None)
            if spec is None:
                raise LookupError(f"/{name} has no option {key!r}; it has {[o['name'] for o in defs]}")
            if isinstance(value, dict):  # an attachment object from add_attachment()
                if spec["type"] != 11:
                    raise TypeError(f"option {key!r} is type {spec['type']}, not an attachment")
                resolved.setdefault("attachments", {})[value["id"]] = value
                value = value["id"]
            elif spec["type"] in (6, 7, 8):  # user, channel, role: an id, resolved as Discord does
                value = str(value)
                self._resolve(spec["type"], int(value), resolved)
            option: JSON = {"name": key, "type": spec["type"], "value": value}
            if key == focused:
                option["focused"] = True
            options.append(option)
        for sub in reversed(path):
            options = [{"name": sub["name"], "type": sub["type"], "options": options}]
        data: JSON = {"id": command["id"], "name": command["name"], "type": command.get("type", 1), "options": options}
        if resolved:
            data["resolved"] = resolved
        if gid is not None:
            data["guild_id"] = str(gid)
        return data

    def _resolve(self, option_type: int, snowflake: int, resolved: JSON) -> None:
        """The `resolved` entry Discord sends with a user (a member of this guild), channel or role option."""
        if option_type == 6:
            user = {"id": str(snowflake), "username": f"user-{snowflake}", "discriminator": "0", "avatar": None,
                    "global_name": None}  # fmt: skip
            roles = [str(r) for r in self.member_roles.get(snowflake, [])]
            member = {"roles": roles, "flags": 0, "joined_at": JOINED_AT, "permissions": str(DEFAULT_PERMISSIONS),
                      "deaf": False, "mute": False}  # fmt: skip
            resolved.setdefault("users", {})[str(snowflake)] = user
            resolved.setdefault("members", {})[str(snowflake)] = member
        elif option_type == 7:
            if snowflake != self.channel_id:
                raise LookupError(f"the fake has one channel ({self.channel_id}), not {snowflake}")
            channel = {**self._channel_json(), "permissions": str(DEFAULT_PERMISSIONS)}
            resolved.setdefault("channels", {})[str(snowflake)] = channel
        else:
            role = self._roles.get(snowflake) or self._role_json(snowflake, f"role-{snowflake}", 0)
            resolved.setdefault("roles", {})[str(snowflake)] = role

    # ------------------------------------------------------------------ gateway

    def _live(self, guild_id: int | None = None) -> _Conn:
        conn = self._active if guild_id is None else self._conn_for(guild_id)
        if conn is None or conn.ws.closed:
            raise RuntimeError("the bot is not connected to the fake gateway (on that guild's shard)")
        return conn

    def _conn_for(self, guild_id: int) -> _Conn | None:
        conn = self._shards.get(self.shard_of(guild_id))
        return conn if conn is not None and not conn.ws.closed else None

    async def _dispatch(self, event: str, data: JSON) -> None:
        gid = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
        conn = self._conn_for(int(gid)) if gid is not None else self._active
        if conn is not None and not conn.ws.closed:
            await conn.dispatch(event, data)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _interact(
        self,
        itype: int,
        data: JSON,
        *,
        user_id: int,
        user_name: str,
        permissions: int,
        roles: list[int] | None = None,
        attachment_size_limit: int | None = None,
        message: FakeMessage | None = None,
        dm: bool = False,
        guild_id: int | None = None,
        locale: str = "en-US",
        joined_at: str | None = None,  # when the member joined the guild (ISO 8601); JOINED_AT unless given
    ) -> FakeInteraction:
        gid = self.guild_id if guild_id is None else guild_id
        conn = self._live(None if dm else gid)
        cid = self.guilds.get(gid, self.channel_id + 2)  # a guild without the bot user: some channel of its own
        self.member_roles[user_id] = list(roles or [])
        resolved = data.get("resolved") or {}
        named = [int(r) for r in resolved.get("roles", {})]
        named += [int(r) for member in resolved.get("members", {}).values() for r in member["roles"]]
        for role_id in [*(roles or []), *named]:
            if role_id not in self._roles:  # make the role exist so Member.roles can resolve it
                self._roles[role_id] = self._role_json(role_id, f"role-{role_id}", 0)
                await conn.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(gid), "role": self._roles[role_id]})
        limit = self.upload_limit if attachment_size_limit is None else attachment_size_limit
        iid = self._snowflake()
        token = interaction_token(iid)
        user = {"id": str(user_id), "username": user_name, "discriminator": "0", "avatar": None, "global_name": None}
        payload: JSON = {
            "id": str(iid), "application_id": str(self.application_id), "type": itype, "version": 1, "token": token,
            "guild_id": str(gid), "channel_id": str(cid), "channel": self._channel_json(gid) | {"id": str(cid)},
            "guild": {"id": str(gid), "locale": self.guild_locale(gid), "features": []},
            "member": {"user": user, "roles": [str(r) for r in roles or []], "flags": 0,
                       "joined_at": joined_at or JOINED_AT,
                       "permissions": str(permissions), "deaf": False, "mute": False},
            "app_permissions": str(self.app_permissions), "locale": locale, "guild_locale": self.guild_locale(gid),
            "entitlements": [], "authorizing_integration_owners": {"0": str(gid)}, "context": 0,
            "attachment_size_limit": limit,  # discord.py raises KeyError without it (trap 3)
            "data": data,
        }  # fmt: skip
        if dm:  # a DM: no guild, no member (the user instead), a DM channel, context 1 (BOT_DM)
            for key in ("guild_id", "guild", "member", "guild_locale"):
                del payload[key]
            dm_channel = self.channel_id + 1
            payload.update(user=user, channel_id=str(dm_channel), context=1,
                           channel={"id": str(dm_channel), "type": 1, "recipients": [user]},
                           authorizing_integration_owners={"1": str(user_id)})  # fmt: skip
        if message is not None:
            payload["message"] = self._message_json(message)
        it = FakeInteraction(id=iid, token=token, type=itype, payload=payload, attachment_size_limit=limit,
                             _fake=self, message_id=message.id if message else None)  # fmt: skip
        self.interactions[iid] = it
        self._by_token[token] = it
        await conn.dispatch("INTERACTION_CREATE", payload)
        return it

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2)
        await ws.prepare(request)
        conn = _Conn(ws)
        self._conns.add(conn)
        try:
            # TEXT JSON frames: discord.py only decompresses binary frames, so compress= can be ignored.
            await conn.send({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
            async for frame in ws:
                if frame.type is WSMsgType.TEXT:
                    await self._on_gateway(conn, json.loads(frame.data))
        finally:
            self._conns.discard(conn)
            for shard, live in list(self._shards.items()):
                if live is conn:
                    del self._shards[shard]
        return ws

    async def _on_gateway(self, conn: _Conn, msg: JSON) -> None:
        op, d = msg.get("op"), msg.get("d") or {}
        if op == 1:
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            if d.get("token") != self.bot_token:
                await conn.ws.close(code=4004, message=b"Authentication failed.")
                return
            self.identify = d
            self.identifies.append(d)
            shard_id, self.shard_count = d.get("shard") or (0, 1)
            conn.session = session = _Session(secrets.token_hex(16), shard=(shard_id, self.shard_count))
            self._sessions[session.id] = session
            mine = [g for g in self.guilds if self.shard_of(g) == shard_id]
            await conn.dispatch("READY", {
                "v": 10, "user": self._bot_user, "guilds": [{"id": str(g), "unavailable": True} for g in mine],
                "session_id": session.id, "resume_gateway_url": self.gateway_url.rstrip("/"),
                "application": {"id": str(self.application_id), "flags": 0}, "private_channels": [],
                "relationships": [], "presences": [], "shard": [shard_id, self.shard_count],
            })  # fmt: skip
            for gid in mine:
                await conn.dispatch("GUILD_CREATE", self._guild_json(gid))
            self._shards[shard_id] = conn
            self.ready_count += 1
        elif op == 6:
            known = self._sessions.get(d.get("session_id", ""))
            if known is None or d.get("token") != self.bot_token:
                await conn.send({"op": 9, "d": False, "s": None, "t": None})
                return
            conn.session = known
            await conn.dispatch("RESUMED", {})
            self._shards[known.shard[0]] = conn
            self.resume_count += 1

    # ------------------------------------------------------------------ HTTP plumbing

    async def _read_body(self, request: web.Request) -> tuple[JSON | list[Any] | None, list[_Upload]]:
        payload: JSON | list[Any] | None = None
        files: list[_Upload] = []
        try:
            if request.content_type.startswith("multipart/"):
                async for part in await request.multipart():
                    if not isinstance(part, BodyPartReader):
                        continue
                    data = bytes(await part.read())
                    if part.filename:
                        files.append(_Upload(part.name or "", part.filename, part.headers.get("Content-Type"), data))
                    elif part.name == "payload_json":
                        payload = json.loads(data)
            elif request.body_exists:
                raw = await request.read()
                payload = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None
        return payload, files

    def _injected(self, method: str, path: str) -> DiscordError | None:
        for inj in self._injections:
            if inj.times > 0 and inj.method in ("*", method) and path.startswith(inj.prefix):
                inj.times -= 1
                if inj.status == 429:
                    return _rate_limited(inj.message)
                return DiscordError(inj.status, inj.code, inj.message)
        return None

    async def _api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        record = RequestRecord(request.method, path, dict(request.query), None, [])
        self.requests.append(record)
        try:
            # Read the whole body first, even for errors: answering mid-upload resets the client's connection.
            payload, files = await self._read_body(request)
            record.json, record.files = payload, [(f.filename, len(f.data)) for f in files]
            if error := self._injected(request.method, path):
                raise error
            for methods, pattern, handler, needs_bot in self._routes:
                match = pattern.fullmatch(path)
                if match is None or request.method not in methods.split("|"):
                    continue
                if needs_bot and request.headers.get("Authorization") != f"Bot {self.bot_token}":
                    raise DiscordError(401, 0, "401: Unauthorized")
                response = await handler(_Call(request, match.groupdict(), payload, files))
                break
            else:
                raise DiscordError(404, 0, "404: Not Found")
        except DiscordError as error:
            response = error.response()
        record.status = response.status
        return response

    async def _cdn(self, request: web.Request) -> web.Response:
        record = RequestRecord("GET", request.path, dict(request.query), None, [])
        self.requests.append(record)
        blob = self._blobs.get(int(request.match_info["aid"])) if request.match_info["aid"].isdigit() else None
        if error := self._injected("GET", request.path):
            response = web.Response(status=error.status, text=error.message)
        elif blob is None or blob[0] != request.match_info["filename"]:
            response = web.Response(status=404, text="Not Found")
        else:
            response = web.Response(body=blob[2], headers={"Content-Type": blob[1]})
        record.status = response.status
        return response

    # ------------------------------------------------------------------ messages

    def _validate(self, payload: JSON, files: list[_Upload], limit: int) -> None:
        if any(len(f.data) > limit for f in files):
            raise DiscordError(413, 40005, "Request entity too large")
        errors: JSON = {}
        content = payload.get("content")
        if isinstance(content, str) and len(content) > 2000:
            errors["content"] = _form_error("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds: list[JSON] = payload.get("embeds") or []
        texts = [e.get(k) for e in embeds for k in ("title", "description")]
        texts += [f.get(k) for e in embeds for f in e.get("fields", []) for k in ("name", "value")]
        size = sum(len(str(t or "")) for t in texts)
        if len(embeds) > 10:
            errors["embeds"] = _form_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        elif size > 6000:
            errors["embeds"] = _form_error("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        rows = payload.get("components") or []
        max_rows = 40 if int(payload.get("flags") or 0) & COMPONENTS_V2 else 5
        if len(rows) > max_rows:
            errors["components"] = _form_error("BASE_TYPE_MAX_LENGTH", f"Must be {max_rows} or fewer in length.")
        elif any(not 1 <= len(str(c["custom_id"])) <= 100 for c in _walk_components(rows)):
            errors["components"] = _form_error("BASE_TYPE_BAD_LENGTH", "custom_id must be between 1 and 100 in length.")
        if errors:
            raise DiscordError(400, 50035, "Invalid Form Body", errors=errors)

    def _new_attachments(self, payload: JSON, files: list[_Upload]) -> list[JSON]:
        placeholders = {str(a.get("id")): a for a in payload.get("attachments") or [] if isinstance(a, dict)}
        out: list[JSON] = []
        for index, up in enumerate(files):
            key = m.group(1) if (m := re.fullmatch(r"files\[(\d+)\]", up.field)) else str(index)
            meta = placeholders.get(key, {})
            filename = str(meta.get("filename") or up.filename)
            ctype = mimetypes.guess_type(filename)[0] or up.content_type or "application/octet-stream"
            aid = self._snowflake()
            self._blobs[aid] = (filename, ctype, up.data)
            url = f"{self.base_url}/attachments/{self.channel_id}/{aid}/{quote(filename)}"
            att: JSON = {"id": str(aid), "filename": filename, "size": len(up.data), "content_type": ctype,
                         "url": url, "proxy_url": url, "data": up.data}  # fmt: skip
            if meta.get("description"):
                att["description"] = meta["description"]
            out.append(att)
        return out

    def _create(
        self,
        payload: JSON,
        files: list[_Upload],
        *,
        flags: int,
        token: str | None = None,
        type: int = 0,
        channel_id: int | None = None,
    ) -> FakeMessage:
        msg = FakeMessage(
            id=self._snowflake(), channel_id=channel_id or self.channel_id, author_id=self.bot_user_id,
            content=payload.get("content") or "", embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []), attachments=self._new_attachments(payload, files),
            flags=flags, interaction_token=token, allowed_mentions=payload.get("allowed_mentions"), type=type,
        )  # fmt: skip
        self.messages[msg.id] = msg
        return msg

    def _edit(self, msg: FakeMessage, payload: JSON, files: list[_Upload]) -> FakeMessage:
        """Only keys present change; an `attachments` list keeps just the listed ids, plus any new files."""
        if "content" in payload:
            msg.content = payload["content"] or ""
        if "embeds" in payload:
            msg.embeds = list(payload["embeds"] or [])
        if "components" in payload:
            msg.components = list(payload["components"] or [])
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        if "flags" in payload:  # ephemeral is fixed at creation; LOADING is never settable
            msg.flags = (msg.flags & (EPHEMERAL | LOADING)) | (int(payload["flags"] or 0) & ~(EPHEMERAL | LOADING))
        if "attachments" in payload:
            keep = {str(a.get("id")) for a in payload["attachments"] or [] if isinstance(a, dict)}
            msg.attachments = [a for a in msg.attachments if a["id"] in keep]
        msg.attachments += self._new_attachments(payload, files)
        msg.flags &= ~LOADING
        msg.edits += 1
        msg.edited_timestamp = _now_iso()
        return msg

    @staticmethod
    def _flags(payload: JSON, allowed: int) -> int:
        return int(payload.get("flags") or 0) & allowed

    # ------------------------------------------------------------------ REST handlers

    async def _get_me(self, _c: _Call) -> web.Response:
        return _json(self._bot_user)

    async def _leave_guild(self, c: _Call) -> web.Response:
        gid = int(c.match["gid"])
        if gid not in self.guilds:
            raise DiscordError(404, 10004, "Unknown Guild")
        del self.guilds[gid]
        self.left_guilds.append(gid)
        # As Discord: the bot's gateway hears GUILD_DELETE without "unavailable" (removed, not an outage).
        await self._dispatch("GUILD_DELETE", {"id": str(gid)})
        return web.Response(status=204)

    async def _get_app(self, _c: _Call) -> web.Response:
        owner = {"id": str(OWNER_ID), "username": "owner", "discriminator": "0", "avatar": None, "global_name": None}
        return _json({"id": str(self.application_id), "name": "TestBot", "description": "", "icon": None,
                      "bot_public": True, "bot_require_code_grant": False, "owner": owner,
                      "verify_key": "0" * 64, "flags": 0, "bot": self._bot_user})  # fmt: skip

    async def _get_gateway(self, _c: _Call) -> web.Response:
        limits = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        url = self.gateway_url.rstrip("/")
        return _json({"url": url, "shards": self.recommended_shards, "session_start_limit": limits})

    async def _commands(self, c: _Call) -> web.Response:
        if int(c.match["app"]) != self.application_id:
            raise DiscordError(404, 10002, "Unknown Application")
        gid = int(c.match["gid"]) if c.match.get("gid") else None
        if c.request.method == "GET":
            return _json(self._scopes.get(gid, []))
        if not isinstance(c.payload, list):
            raise DiscordError(400, 50035, "Invalid Form Body")
        for item in c.payload:
            _check_command(item)
        previous = {(cmd["name"], cmd.get("type", 1)): cmd for cmd in self._scopes.get(gid, [])}
        synced: list[JSON] = []
        for item in c.payload:
            command = {**item, "type": item.get("type", 1)}
            before = previous.get((command["name"], command["type"]))
            command["id"] = before["id"] if before else str(self._snowflake())  # bulk overwrite keeps ids
            command["application_id"], command["version"] = str(self.application_id), str(self._snowflake())
            if gid is not None:
                command["guild_id"] = str(gid)
            synced.append(command)
        self._scopes[gid] = synced
        self.sync_count += 1
        return _json(synced)

    async def _callback(self, c: _Call) -> web.Response:
        it = self.interactions.get(int(c.match["iid"]))
        if it is None or it.token != c.match["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if it.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if it.dead or time.monotonic() - it.created > self.ack_deadline:
            it.dead = True
            raise DiscordError(404, 10062, "Unknown interaction")
        rtype, data, files = c.body.get("type"), c.body.get("data") or {}, c.files
        summary: JSON = {"id": str(it.id), "type": it.type}
        resource: JSON = {"type": rtype}
        if rtype in (4, 5):
            if rtype == 5:
                data, files = {"flags": int(data.get("flags") or 0) & EPHEMERAL}, []
            self._validate(data, files, it.attachment_size_limit)
            flags = self._flags(data, ~LOADING) | (LOADING if rtype == 5 else 0)
            msg = self._create(data, files, flags=flags, token=it.token, type=20 if it.type == 2 else 0,
                               channel_id=self._channel_of(it))  # fmt: skip
            it.original_message_id = msg.id
            if rtype == 5:
                it.deferred_ephemeral, it.untouched_defer = msg.ephemeral, True
            else:
                resource["message"] = self._message_json(msg)
            summary.update(response_message_id=str(msg.id), response_message_loading=rtype == 5,
                           response_message_ephemeral=msg.ephemeral)  # fmt: skip
        elif rtype in (6, 7):
            if it.message_id is None:
                raise DiscordError(400, 40043, "Interaction response type is only valid for component interactions")
            msg = self.messages[it.message_id]
            if rtype == 7:
                self._validate(data, files, it.attachment_size_limit)
                self._edit(msg, data, files)
                resource["message"] = self._message_json(msg)
            it.original_message_id = msg.id
            summary.update(response_message_id=str(msg.id), response_message_ephemeral=msg.ephemeral)
        elif rtype == 8:
            it.choices = list(data.get("choices") or [])
        elif rtype == 9:
            it.modal = data
        else:
            raise DiscordError(400, 50035, "Invalid Form Body", errors={"type": _form_error("BASE_TYPE_CHOICES", "")})
        it.acked, it.response_type = True, rtype
        it._acked_event.set()
        # discord.py >= 2.5 sends ?with_response=1 and needs this JSON body, not a 204 (trap 4).
        return _json({"interaction": summary, "resource": resource})

    def _token_owner(self, m: dict[str, str]) -> FakeInteraction:
        it = self._by_token.get(m["token"])
        if it is None or int(m["app"]) != self.application_id or it.dead or not it.acked:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if it.expired or time.monotonic() - it.created >= self.token_ttl:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return it

    async def _execute_webhook(self, c: _Call) -> web.Response:
        it = self._token_owner(c.match)
        self._validate(c.body, c.files, it.attachment_size_limit)
        if it.untouched_defer and it.original_message_id is not None:
            # Documented back-compat: the first POST right after a type-5 defer edits the loading message.
            it.untouched_defer = False
            msg = self._edit(self.messages[it.original_message_id], {**c.body, "flags": 0}, c.files)
        else:
            msg = self._create(c.body, c.files, flags=self._flags(c.body, ~LOADING), token=it.token,
                               channel_id=self._channel_of(it))  # fmt: skip
            it.followups.append(msg)
        if c.request.query.get("wait", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return _json(self._message_json(msg))

    async def _webhook_message(self, c: _Call) -> web.Response:
        it = self._token_owner(c.match)
        mid = it.original_message_id if c.match["mid"] == "@original" else int(c.match["mid"])
        msg = self.messages.get(mid) if mid is not None else None
        if msg is None or msg.deleted or mid not in {it.original_message_id, *(f.id for f in it.followups)}:
            raise DiscordError(404, 10008, "Unknown Message")
        if c.request.method == "DELETE":
            msg.deleted = True
            if not msg.ephemeral:
                await self._dispatch("MESSAGE_DELETE", self._delete_event(msg))
            return web.Response(status=204)
        if c.request.method == "PATCH":
            self._validate(c.body, c.files, it.attachment_size_limit)
            self._edit(msg, c.body, c.files)
            if mid == it.original_message_id:
                it.untouched_defer = False
        return _json(self._message_json(msg))

    def _check_channel(self, c: _Call) -> int:
        """The channel of the route: the text channel of a guild the bot is in, else 404."""
        cid = int(c.match["cid"])
        if cid not in self.guilds.values():
            raise DiscordError(404, 10003, "Unknown Channel")
        return cid

    async def _get_guild(self, c: _Call) -> web.Response:
        """GET /guilds/{g}: the guild object for a guild the bot is in; 403 50001 Missing Access otherwise."""
        gid = int(c.match["gid"])
        if gid not in self.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return _json(self._guild_json(gid))

    async def _get_channel(self, c: _Call) -> web.Response:
        return _json(self._channel_json(self._guild_of(self._check_channel(c))))

    async def _typing(self, c: _Call) -> web.Response:
        self._check_channel(c)
        return web.Response(status=204)

    def dms(self, user_id: int) -> list[FakeMessage]:
        """The messages the bot sent to this user's DM channel, oldest first."""
        cid = self.dm_channels.get(user_id)
        return [m for m in self.messages.values() if cid is not None and m.channel_id == cid]

    async def _open_dm(self, c: _Call) -> web.Response:
        # Opening a DM channel works whatever the user's settings; sending in it is what may be refused.
        user_id = int(c.body.get("recipient_id") or 0)
        if not user_id:
            raise DiscordError(400, 50035, "Invalid Form Body")
        cid = self.dm_channels.setdefault(user_id, self._snowflake())
        user = {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0", "avatar": None,
                "global_name": None}  # fmt: skip
        return _json({"id": str(cid), "type": 1, "last_message_id": None, "recipients": [user], "flags": 0})

    async def _create_dm_message(self, c: _Call, cid: int) -> web.Response:
        user_id = next(user for user, channel in self.dm_channels.items() if channel == cid)
        if user_id in self.closed_dms:
            raise DiscordError(403, 50007, "Cannot send messages to this user")
        self._validate(c.body, c.files, self.upload_limit)
        msg = self._create(c.body, c.files, flags=self._flags(c.body, ~(EPHEMERAL | LOADING)))
        msg.channel_id = cid
        return _json(self._message_json(msg))

    async def _create_channel_message(self, c: _Call) -> web.Response:
        if int(c.match["cid"]) in self.dm_channels.values():
            return await self._create_dm_message(c, int(c.match["cid"]))
        cid = self._check_channel(c)
        body = c.body
        self._validate(body, c.files, self.upload_limit)
        if not (body.get("content") or body.get("embeds") or body.get("components") or c.files or body.get("poll")):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        msg = self._create(body, c.files, flags=self._flags(body, ~(EPHEMERAL | LOADING)), channel_id=cid)
        event = {**self._message_json(msg), "member": {"roles": [], "joined_at": JOINED_AT, "flags": 0}}
        await self._dispatch("MESSAGE_CREATE", event)
        return _json(self._message_json(msg))

    async def _channel_message(self, c: _Call) -> web.Response:
        cid = self._check_channel(c)
        msg = self.messages.get(int(c.match["mid"]))
        # Ephemeral messages exist only for the interaction token: the bot token cannot see them.
        if msg is None or msg.deleted or msg.ephemeral or msg.channel_id != cid:
            raise DiscordError(404, 10008, "Unknown Message")
        if c.request.method == "DELETE":
            msg.deleted = True
            await self._dispatch("MESSAGE_DELETE", self._delete_event(msg))
            return web.Response(status=204)
        if c.request.method == "PATCH":
            if msg.author_id != self.bot_user_id:
                raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
            self._validate(c.body, c.files, self.upload_limit)
            self._edit(msg, c.body, c.files)
        return _json(self._message_json(msg))

    async def _channel_history(self, c: _Call) -> web.Response:
        """GET /channels/{id}/messages: newest first, `limit` (1-100, default 50), `before` / `after` an id."""
        cid = self._check_channel(c)
        query = c.request.query
        limit = int(query.get("limit", 50))
        if not 1 <= limit <= 100:
            raise DiscordError(400, 50035, "Invalid Form Body")
        before, after = int(query.get("before", 0)) or None, int(query.get("after", 0)) or None
        found = [m for m in self.messages.values()
                 if m.channel_id == cid and not m.deleted and not m.ephemeral
                 and (before is None or m.id < before) and (after is None or m.id > after)]  # fmt: skip
        found.sort(key=lambda m: m.id, reverse=True)
        return _json([self._message_json(m) for m in found[:limit]])

    async def _add_member_role(self, c: _Call) -> web.Response:
        """PUT /guilds/{g}/members/{u}/roles/{r}: 204; 403 50013 unless the bot has Manage Roles (or is an
        administrator) and the role sits below its own highest role; 404 for an unknown role or member."""
        gid, uid, rid = int(c.match["gid"]), int(c.match["uid"]), int(c.match["rid"])
        if gid not in self.guilds:
            raise DiscordError(404, 10004, "Unknown Guild")
        role = self._roles.get(rid)
        if role is None or gid != self.guild_id:
            raise DiscordError(404, 10011, "Unknown Role")
        if uid not in self.member_roles:
            raise DiscordError(404, 10007, "Unknown Member")
        if not self.app_permissions & (MANAGE_ROLES | ADMINISTRATOR) or role["position"] >= self.bot_top_role_position:
            raise DiscordError(403, 50013, "Missing Permissions")
        if rid not in self.member_roles[uid]:
            self.member_roles[uid].append(rid)
            self.role_grants.append((gid, uid, rid))
        return web.Response(status=204)


# Discord's rules for a command's names and descriptions, and their translations (a 400 otherwise).
_LOCALE_CODES = "id da de en-GB en-US es-ES es-419 fr hr it lt hu nl no pl pt-BR ro fi sv-SE vi tr cs el bg ru uk hi th"
LOCALES = frozenset([*_LOCALE_CODES.split(), "zh-CN", "ja", "zh-TW", "ko"])
NAME = re.compile(r"^[-_'\w\u0900-\u097F\u0E00-\u0E7F]{1,32}$")


def _check_command(command: JSON, top: bool = True) -> None:
    def invalid(why: str) -> DiscordError:
        return DiscordError(400, 50035, f"Invalid Form Body: {why}")

    names = [command.get("name", ""), *(command.get("name_localizations") or {}).values()]
    descriptions = [command.get("description", ""), *(command.get("description_localizations") or {}).values()]
    for key in ("name_localizations", "description_localizations"):
        for locale in command.get(key) or {}:
            if locale not in LOCALES:
                raise invalid(f"{key}: {locale!r} is not a valid locale")
    chat_input = command.get("type", 1) == 1 or not top
    for name in names:
        if chat_input and (not NAME.match(name) or name != name.lower()):
            raise invalid(f"name {name!r}: must be 1-32 lowercase letters, digits, - or _")
    for text in descriptions:
        if chat_input and not 1 <= len(text) <= 100:
            raise invalid(f"description {text!r}: must be 1-100 characters")
    for option in command.get("options") or []:
        _check_command(option, top=False)
        for choice in option.get("choices") or []:
            for name in [choice.get("name", ""), *(choice.get("name_localizations") or {}).values()]:
                if not 1 <= len(name) <= 100:
                    raise invalid(f"choice name {name!r}: must be 1-100 characters")
    if command.get("options"):
        for locale in ["", *LOCALES]:
            seen = [(o.get("name_localizations") or {}).get(locale, o["name"]) if locale else o["name"]
                    for o in command["options"]]  # fmt: skip
            if len(seen) != len(set(seen)):
                raise invalid(f"options: duplicate names in {locale or 'default'}")
