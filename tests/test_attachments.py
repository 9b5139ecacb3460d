"""Attachment downloads (cogs/attachments.py): only from Discord's CDN (or the origin discord.py was
pointed at), no redirects followed, a hard size cap, and the bytes checked in the worker pool.

A real aiohttp server on 127.0.0.1 plays the CDN; a second one plays a host the bot must never reach.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace

import discord
import pytest
from aiohttp import web

from cogs.attachments import DISCORD_CDN, NOT_DOWNLOADED, AttachmentFetcher, cdn_origins
from core.errors import UserError
from services.images import TOO_COMPLEX
from tests import hostile_images as hostile
from tests.fakes.local_server import LocalServer
from tests.test_images import encode

GOOD = encode("JPEG", (640, 480))


class FakeCdn(LocalServer):
    def __init__(self, redirect_to: str = "") -> None:
        super().__init__()
        self.redirect_to = redirect_to
        self.files = {"ok.jpg": GOOD, "bomb.jpg": hostile.progressive_scan_repeat(), "huge.jpg": bytes(21 << 20)}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/attachments/{name}", self._file)
        router.add_get("/moved/{name}", self._moved)

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[name], content_type="image/jpeg")

    async def _moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{self.redirect_to or self.base_url}/attachments/{request.match_info['name']}")


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeCdn]:
    server = FakeCdn()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def cdn(elsewhere: FakeCdn) -> AsyncIterator[FakeCdn]:
    server = FakeCdn(redirect_to=elsewhere.base_url)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fetcher(cdn: FakeCdn) -> AsyncIterator[AttachmentFetcher]:
    fetcher = AttachmentFetcher(cdn_origins(cdn.base_url + "/api"))
    await fetcher.open()
    yield fetcher
    await fetcher.close()


def attachment(url: str) -> discord.Attachment:
    payload = {"id": "1", "filename": "cat.jpg", "size": 1000, "url": url, "proxy_url": url}
    return discord.Attachment(data=payload, state=SimpleNamespace(http=None))  # type: ignore[arg-type]


def test_allowed_origins_are_discords_cdn_plus_the_api_base() -> None:
    assert cdn_origins(None) == DISCORD_CDN == ("https://cdn.discordapp.com", "https://media.discordapp.net")
    assert cdn_origins("http://127.0.0.1:8765") == (*DISCORD_CDN, "http://127.0.0.1:8765")
    assert cdn_origins("https://proxy.example/discord/") == (*DISCORD_CDN, "https://proxy.example")


async def test_an_image_on_the_cdn_is_downloaded_and_checked(cdn: FakeCdn, fetcher: AttachmentFetcher) -> None:
    image = await fetcher.image(attachment(f"{cdn.base_url}/attachments/ok.jpg?ex=1&hm=abc"))
    assert (image.mime, image.width, image.height, image.data) == ("image/jpeg", 640, 480, GOOD)


async def test_a_bomb_on_the_cdn_is_refused_as_too_complex(cdn: FakeCdn, fetcher: AttachmentFetcher) -> None:
    with pytest.raises(UserError) as caught:
        await fetcher.image(attachment(f"{cdn.base_url}/attachments/bomb.jpg"), "end image")
    assert caught.value.message == f"Your end image: {TOO_COMPLEX}"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("{elsewhere}/attachments/ok.jpg?ex=1&hm=secret", id="another-host"),
        pytest.param("http://cdn.discordapp.com/attachments/ok.jpg?hm=secret", id="discord-cdn-over-http"),
        pytest.param("https://cdn.discordapp.com.evil.example/ok.jpg?hm=secret", id="lookalike-host"),
        pytest.param("https://cdn.discordapp.com:8443/ok.jpg?hm=secret", id="discord-cdn-other-port"),
        pytest.param("file:///etc/passwd?hm=secret", id="file-url"),
        pytest.param("attachments/ok.jpg?hm=secret", id="relative"),
    ],
)
async def test_other_hosts_are_refused_unrequested_and_logged_without_the_query(
    cdn: FakeCdn, elsewhere: FakeCdn, fetcher: AttachmentFetcher, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="cogs.attachments"), pytest.raises(UserError) as caught:
        await fetcher.image(attachment(url.format(elsewhere=elsewhere.base_url)))
    assert caught.value.message == NOT_DOWNLOADED
    assert elsewhere.requests == [] and cdn.requests == []
    [record] = [r for r in caplog.records if r.name == "cogs.attachments"]
    assert record.levelno == logging.WARNING and "not Discord's CDN" in record.getMessage()
    assert "secret" not in caplog.text


async def test_a_redirect_is_not_followed(cdn: FakeCdn, elsewhere: FakeCdn, fetcher: AttachmentFetcher) -> None:
    with pytest.raises(UserError) as caught:
        await fetcher.image(attachment(f"{cdn.base_url}/moved/ok.jpg"))
    assert caught.value.message == NOT_DOWNLOADED
    assert [(r.path, r.status) for r in cdn.requests] == [("/moved/ok.jpg", 302)]
    assert elsewhere.requests == []


async def test_missing_and_oversized_files(cdn: FakeCdn, fetcher: AttachmentFetcher) -> None:
    with pytest.raises(UserError, match="could not download"):
        await fetcher.image(attachment(f"{cdn.base_url}/attachments/gone.jpg"))
    with pytest.raises(UserError, match="larger than 20 MB"):
        await fetcher.image(attachment(f"{cdn.base_url}/attachments/huge.jpg"))
