"""Fetching a member's image from Discord's CDN, capped whatever size it declared, and checking it from its
bytes in a worker process (`services.image_pool`: decoding is CPU work, and a hostile file must not stall
the bot).

Only Discord's CDN is fetched from, over https, and redirects are not followed: the attachment URL
comes from the interaction payload, so the bot must not become a way to make requests elsewhere. When
discord.py is pointed at another endpoint (DISCORD_API_BASE: a proxy or the tests' local stand-in), that
origin serves attachments too and is allowed as well.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import discord
import yarl

from core.errors import UserError
from core.spec import ImageInput
from core.text import N_, tr
from services.image_pool import ImageChecker
from services.images import MAX_DECLARED_BYTES

log = logging.getLogger(__name__)

NOT_DOWNLOADED = N_("I could not download your image from Discord. Please upload it again.")
# What a refusal is prefixed with when it is about another image than the first (`label`).
LABELS = {"end image": N_("end image")}
DISCORD_CDN = ("https://cdn.discordapp.com", "https://media.discordapp.net")
MAX_DOWNLOADS = 4  # at once; more wait their turn (each holds up to 20 MiB)


def cdn_origins(api_base: str | None) -> tuple[str, ...]:
    """Where attachments may be fetched from: Discord's CDN, plus the origin of DISCORD_API_BASE if set."""
    if not api_base:
        return DISCORD_CDN
    return (*DISCORD_CDN, str(yarl.URL(api_base).origin()))


def _origin(url: yarl.URL) -> str | None:
    try:
        return str(url.origin())
    except ValueError:  # relative, or no host
        return None


class AttachmentFetcher:
    def __init__(self, origins: tuple[str, ...] = DISCORD_CDN, checker: ImageChecker | None = None) -> None:
        self._origins = frozenset(origins)
        self.checker = checker or ImageChecker()
        self._http: aiohttp.ClientSession | None = None
        self._downloads = asyncio.Semaphore(MAX_DOWNLOADS)

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        """Kills image checks in flight (a shutdown must not wait for them) and closes the HTTP session."""
        await self.checker.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def image(self, attachment: discord.Attachment, label: str = "image") -> ImageInput:
        data = await self._download(attachment.url)
        try:
            return await self.checker.check(data)
        except UserError as exc:
            if label == "image":
                raise
            shown = tr(LABELS[label]) if label in LABELS else label
            raise UserError(tr("Your {label}: {refusal}", label=shown, refusal=exc.message)) from None

    async def _download(self, url: str) -> bytes:
        """Fetch the attachment from the CDN with a hard cap, whatever size it declared."""
        assert self._http is not None, "open() first"
        target = yarl.URL(url)
        if _origin(target) not in self._origins:
            # Never the query string: Discord signs attachment URLs there.
            log.warning("refused to download an attachment from %s (not Discord's CDN)", target.with_query(None))
            raise UserError(tr(NOT_DOWNLOADED))
        chunks, total = [], 0
        try:
            async with self._downloads, self._http.get(url, allow_redirects=False) as response:
                if response.status != 200:  # a redirect (3xx) too: it could lead anywhere
                    raise UserError(tr(NOT_DOWNLOADED))
                async for chunk in response.content.iter_chunked(64 * 1024):
                    total += len(chunk)
                    if total > MAX_DECLARED_BYTES:
                        raise UserError(tr("The image is larger than 20 MB. Upload a smaller file."))
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError):
            raise UserError(tr(NOT_DOWNLOADED)) from None
        return b"".join(chunks)
