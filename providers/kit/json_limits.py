"""JSON from strangers (provider callbacks), parsed only after a cheap check of its structure.

`json.loads` recurses once per `[` or `{`: a body of 200,000 nested brackets (400 KB, well under any body
cap) raises RecursionError from inside the parser, which a web server turns into a 500 and a traceback per
request. `loads` looks at the raw bytes first and refuses, with a `ValueError` like any malformed JSON (so
callers need no new error handling), a body nested deeper than `max_depth` or made of more than
`max_items` strings, arrays and objects. A callback names a task and a status: it nests 3-4 levels and
holds a few dozen items, so neither limit is near anything real, and the second keeps the check cheap.

The check never loops over the whole body in Python (a 32 MiB body would stall the event loop for
seconds): escapes are removed and everything but quotes and brackets deleted by `replace` and `translate`,
in C; only what is left, at most 2 x `max_items` bytes, is walked in Python (about 1 ms).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # far below the interpreter's recursion limit (~1000), far above any callback
MAX_ITEMS = 10_000  # strings, arrays and objects in one body (brackets inside strings count too)

_QUOTE = ord('"')
_OPENERS = frozenset(b"[{")
_NOT_TOKENS = bytes(byte for byte in range(256) if byte not in b'"[]{}')


class JsonTooComplex(ValueError):
    """JSON nested too deeply, or made of too many items, to be parsed safely."""


def check_structure(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> None:
    """Raise `JsonTooComplex` when `data`, read as JSON, nests arrays and objects more than `max_depth`
    levels deep or is made of more than `max_items` strings, arrays and objects. Safe and cheap on any
    bytes; says nothing about whether they are valid JSON (that is the parser's job)."""
    # Escaped backslashes first (they pair left to right), then escaped quotes: every `"` left opens or
    # closes a string. Bytes below 0x80 never occur inside a multi-byte UTF-8 character, so working on
    # bytes is working on the text.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    tokens = unescaped.translate(None, _NOT_TOKENS)
    if len(tokens) > 2 * max_items:
        raise JsonTooComplex(f"JSON of more than {max_items} strings, arrays and objects")
    depth = 0
    in_string = False
    for byte in tokens:
        if byte == _QUOTE:
            in_string = not in_string
        elif in_string:
            continue
        elif byte in _OPENERS:
            depth += 1
            if depth > max_depth:
                raise JsonTooComplex(f"JSON nested deeper than {max_depth} levels")
        else:
            # Never below zero: a stray closer must not hide the depth of what follows it.
            depth = max(depth - 1, 0)


def loads(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> Any:
    """`json.loads` for untrusted bytes: UTF-8 only (RFC 8259 §8.1; a leading BOM is tolerated, as
    `json.loads` does), structure checked first. Raises `JsonTooComplex` for a deep or sprawling body and
    another `ValueError` (JSONDecodeError, UnicodeDecodeError) for any other malformed one."""
    text = data.decode("utf-8-sig")
    check_structure(data, max_depth=max_depth, max_items=max_items)
    return json.loads(text)
