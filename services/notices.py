"""Admin notices (audit lines, pool alerts) for a server's log channel. Services say what to post; the
Discord side attaches how (`attach`), once the client exists. A notice that cannot be posted is logged
and dropped: it never fails the command or the job that caused it.

A notice is a `core.text.Text`: the channel is public in its server, so the Discord side renders it in the
server's language."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Send = Callable[[int, str], Awaitable[None]]  # (channel id, text: a Text, rendered by the sender)


class LogChannel:
    def __init__(self) -> None:
        self._send: Send | None = None

    def attach(self, send: Send) -> None:
        self._send = send

    async def post(self, channel_id: int | None, text: str) -> None:
        if channel_id is None or self._send is None:
            return
        try:
            await self._send(channel_id, text)
        except Exception as exc:  # a deleted channel, missing permissions, Discord down: the log keeps it
            log.warning("could not post to log channel %d: %s", channel_id, exc)
