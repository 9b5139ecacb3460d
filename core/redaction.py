"""Secrets out of text: the one redaction rule for log lines and for provider text we store.

Two kinds of evidence, because we hold some secrets and only ever see others go by:

- Secrets we know (the bot token, provider keys, webhook secrets, the callback path token): every run of
  `MIN_RUN` (8) or more consecutive characters of one, in any letter case, is masked. An echo that a
  provider upper-cased, cut short or quoted from the middle is caught, not only the exact value; so is
  its percent-encoded form (a secret inside a URL query).
- Secrets by shape, for the ones we never hold: Discord interaction tokens (base64 of "interaction:",
  so they start with "aW50ZXJhY3Rpb246"), the token segment of `/webhooks/<id>/<token>` and
  `/interactions/<id>/<token>/` paths (plain or percent-encoded), the value of a key named like
  `token`, `secret`, `password`, `api_key` or `authorization` in JSON or a Python dict's repr, the value
  after `Bearer`/`Bot`, `token=`/`secret:`-style pairs with a long value, the password in a URL
  (`postgresql://user:password@host`), and anything shaped like a Discord bot token.

False positives, and why they are acceptable: an 8-character window of a random key (62^8 ≈ 2·10^14
values) appearing in unrelated text by chance is negligible. What does happen is a key sharing a
non-secret part with other text (JWT-style keys all start "eyJhbGciOi"): that text is masked too,
which costs readability, never safety. A fragment shorter than 8 characters is not masked: it is not
a usable key. A secret shorter than 8 characters is masked only whole (in any case), and one shorter
than `MIN_SECRET` (4) not at all: masking every "abc" in the logs would shred them, and such a value
guards nothing. Letter case is folded for ASCII only (keys and tokens are ASCII).

Pure standard library, so the providers' `sanitize` and the logging filter share it.
"""

from __future__ import annotations

import functools
import re
import string
import threading
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
MIN_RUN = 8  # shortest echo of a known secret that is masked
MIN_SECRET = 4  # shorter "secrets" are ignored (see the module docstring)

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# ----- shapes -------------------------------------------------------------------------------------------

_SEP = r"(?:/|%2[Ff])"  # a path separator, plain or percent-encoded (a URL inside a query string)
_SEGMENT = r"(?:(?!%2[Ff])[^/\s?#&\"'<>])+"
SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Discord interaction tokens: base64 of "interaction:<id>:<random>". Alphanumeric input never encodes
    # to "/", so stopping there keeps the rest of a URL readable.
    (re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_+=-]*"), MASK),
    # The token segment of Discord's interaction webhooks and callbacks, and of our own callback URLs.
    (re.compile(rf"({_SEP}(?:webhooks|interactions){_SEP}{_SEGMENT}{_SEP}){_SEGMENT}"), rf"\1{MASK}"),
    # A gateway payload's "token" (logged as JSON or as a dict's repr), and keys named like secrets.
    (
        re.compile(
            r"""(["'](?:[\w-]*token|[\w-]*secret|password|api[_-]?key|authorization)["']\s*:\s*["'])[^"']*(["'])""",
            re.IGNORECASE,
        ),
        rf"\1{MASK}\2",
    ),
    # An Authorization header's credentials.
    (re.compile(r"\b(Bearer|Bot)(\s+)[A-Za-z0-9._~+/=-]{20,}"), rf"\1\2{MASK}"),
    # `token=...` / `api_key: ...` in free text or a query string; long values only, so prose such as
    # "token: expired" stays readable.
    (
        re.compile(r"\b([\w-]*token|[\w-]*secret|password|api[_-]?key)(\s*[:=]\s*)[A-Za-z0-9._~+/=%-]{16,}", re.I),
        rf"\1\2{MASK}",
    ),
    # The password in a URL's user part (a database URL: postgresql://user:password@host/name).
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#@]+@"), rf"\1{MASK}@"),
    # A Discord bot token: base64 user id, a timestamp, an HMAC, joined by dots.
    (re.compile(r"(?<![\w-])[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"), MASK),
)


def redact_shapes(text: str) -> str:
    for pattern, replacement in SHAPES:
        text = pattern.sub(replacement, text)
    return text


# ----- known secrets ------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """ASCII lower case; never changes the length, so positions in the folded text are positions in `text`."""
    return text.translate(_ASCII_LOWER)


class SecretMatcher:
    """Masks every run of `MIN_RUN`+ consecutive characters of any of `secrets`, in any letter case.

    Every window of `MIN_RUN` characters of every secret goes into a set; a text is scanned window by
    window, but only inside runs made of characters that secrets contain (found by one regex), so prose
    costs little. Overlapping and touching matches merge into one mask.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        windows: dict[int, set[str]] = {}
        alphabet: set[str] = set()
        for secret in secrets:
            for variant in {secret, quote(secret, safe="")}:
                if len(variant) < MIN_SECRET:
                    continue
                folded = fold(variant)
                size = min(MIN_RUN, len(folded))
                windows.setdefault(size, set()).update(folded[i : i + size] for i in range(len(folded) - size + 1))
                alphabet.update(folded)
        self._windows = {size: frozenset(found) for size, found in windows.items()}
        self._runs: re.Pattern[str] | None = None
        if windows:
            chars = "".join(re.escape(char) for char in sorted(alphabet))
            self._runs = re.compile(f"[{chars}]{{{min(windows)},}}", re.IGNORECASE | re.ASCII)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where echoes of the secrets are, as merged (start, end) pairs in order."""
        if self._runs is None:
            return []
        found: list[tuple[int, int]] = []
        for run in self._runs.finditer(text):
            folded, base = fold(run.group()), run.start()
            for size, windows in self._windows.items():
                hits = (i for i in range(len(folded) - size + 1) if folded[i : i + size] in windows)
                found.extend((base + i, base + i + size) for i in hits)
        return _merged(found)

    def mask(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        parts, last = [], 0
        for start, end in spans:
            parts += [text[last:start], MASK]
            last = end
        parts.append(text[last:])
        return "".join(parts)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@functools.lru_cache(maxsize=64)
def _matcher(secrets: tuple[str, ...]) -> SecretMatcher:
    return SecretMatcher(secrets)


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every echo of `secrets` masked (the rule of the module docstring; no shapes)."""
    return _matcher(tuple(secrets)).mask(text)


class Redactor:
    """Known secrets, plus the shapes, masked in any text. `register` adds a secret learned after start
    (the callback path token is read from the database); it is safe to call from any thread."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._matcher = SecretMatcher(())
        for secret in secrets:
            self.register(secret)

    def register(self, secret: str | None) -> None:
        if not secret:
            return
        with self._lock:
            if secret in self._secrets:
                return
            secrets = (*self._secrets, secret)
            # Built before it is published: a concurrent redact() uses the old matcher or the new one.
            self._matcher = SecretMatcher(secrets)
            self._secrets = secrets

    def redact(self, text: str) -> str:
        # Known secrets first: a shape must not cut one in two and leave a maskable part unmasked.
        return redact_shapes(self._matcher.mask(text))
