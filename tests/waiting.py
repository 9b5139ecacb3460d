"""Waiting for a state in tests, never for a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 60) -> None:
    """Check `condition` (plain or awaitable) until it holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            held = condition()
            if held if isinstance(held, bool) else await held:
                return
            await asyncio.sleep(0.02)
