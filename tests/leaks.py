"""What the secret tests share: a leak check written independently of core.redaction, and logging set up
as bot.py does it, at DEBUG everywhere."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import logsafe
from bot import configure_logging

RUN = 8  # the documented rule: no 8 consecutive characters of a secret, in any letter case


def echoes(text: str, secret: str) -> list[str]:
    """Every 8-character window of `secret` that `text` contains, ignoring case (empty: no leak)."""
    lowered = text.lower()
    return [window for i in range(len(secret) - RUN + 1) if (window := secret[i : i + RUN].lower()) in lowered]


def key_echoes(key: str) -> list[str]:
    """What a careless provider might send back: the key upper-cased, lower-cased, cut short, or a middle."""
    return [key.upper(), key.lower()[:12], key[len(key) // 3 : len(key) // 3 + 9], key]


QUIETED = ("httpx", "discord.http", "aiosqlite")  # loggers configure_logging turns down


@contextlib.contextmanager
def logging_as_the_bot_does(
    secrets: list[str | None], stream: io.StringIO, *, fmt: str = "text"
) -> Iterator[logging.Handler]:
    """configure_logging at DEBUG into `stream` (`fmt`: bot.log_format), with even the loggers it turns
    down at DEBUG (redaction must hold regardless); logging is process-wide, so everything is put back
    afterwards."""
    loggers = [logging.getLogger(name) for name in ("", *QUIETED)]
    levels = [logger.level for logger in loggers]
    handler = configure_logging("DEBUG", secrets, stream=stream, fmt=fmt)
    for logger in loggers[1:]:
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        logsafe.uninstall()
