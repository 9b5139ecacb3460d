"""The leak check the secret tests share, written independently of core.redaction's own matcher."""

from __future__ import annotations

RUN = 8  # the documented rule: no 8 consecutive characters of a secret, in any letter case


def echoes(text: str, secret: str) -> list[str]:
    """Every 8-character window of `secret` that `text` contains, ignoring case (empty: no leak)."""
    lowered = text.lower()
    return [window for i in range(len(secret) - RUN + 1) if (window := secret[i : i + RUN].lower()) in lowered]


def key_echoes(key: str) -> list[str]:
    """What a careless provider might send back: the key upper-cased, lower-cased, cut short, or a middle."""
    return [key.upper(), key.lower()[:12], key[len(key) // 3 : len(key) // 3 + 9], key]
