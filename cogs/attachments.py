"""Fetching a member's image from Discord's CDN, capped whatever size it declared, and checking it
from its bytes (in a worker thread: decoding is CPU work)."""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from core.errors import UserError
from core.spec import ImageInput
from services.images import MAX_DECLARED_BYTES, inspect_image

NOT_DOWNLOADED = "I could not download your image from Discord. Please upload it again."


class AttachmentFetcher:
    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def image(self, attachment: discord.Attachment, label: str = "image") -> ImageInput:
        data = await self._download(attachment.url)
        try:
            return await asyncio.to_thread(inspect_image, data)
        except UserError as exc:
            if label == "image":
                raise
            raise UserError(f"Your {label}: {exc.message}") from None

    async def _download(self, url: str) -> bytes:
        """Fetch the attachment with a hard cap, whatever size it declared."""
        assert self._http is not None, "open() first"
        chunks, total = [], 0
        try:
            async with self._http.get(url) as response:
                if response.status != 200:
                    raise UserError(NOT_DOWNLOADED)
                async for chunk in response.content.iter_chunked(64 * 1024):
                    total += len(chunk)
                    if total > MAX_DECLARED_BYTES:
                        raise UserError("The image is larger than 20 MB. Upload a smaller file.")
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError):
            raise UserError(NOT_DOWNLOADED) from None
        return b"".join(chunks)
