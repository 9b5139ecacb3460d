"""A strict reader for the part of YAML that compose.yaml is written in, for tests/test_compose.py: PyYAML
is not among the project's dependencies, and a YAML parser only for one static test did not earn a place.

Read: block mappings and block sequences by indentation (spaces only), `# comments`, plain scalars
(integers, floats, true/false, null and ~ as PyYAML reads them, the rest strings), '...' and "..."
strings (the escapes \\" and \\\\ only), and one-line flow sequences of scalars `[a, "b c"]`. Anything
else — anchors and aliases, tags, block and multi-line scalars, flow mappings, yes/no/on/off (booleans
to PyYAML, strings to YAML 1.2), a duplicate key — is refused with the line it is on, so the file
never means something else to Docker Compose than to this test. `test_compose.py` checks that it reads
compose.yaml exactly as PyYAML does wherever PyYAML is installed.
"""

from __future__ import annotations

import re
from typing import Any

INT = re.compile(r"[-+]?(0|[1-9]\d*)")
FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+)")
# Read otherwise by PyYAML (YAML 1.1) than by YAML 1.2: booleans, octal and sexagesimal (22:22!)
# numbers, exponents, infinities. Quoted, each is a string to both.
AMBIGUOUS = re.compile(
    r"(?i:yes|no|on|off|y|n|[-+]?\.(inf|nan))|[-+]?0\d+|[-+]?\d+(:[0-5]?\d)+|[-+]?[\d.]+[eE][-+]?\d+"
)
REFUSED_STARTS = ("&", "*", "!", "|", ">", "{", "%", "@", "`", "?")


class YamlSubsetError(ValueError):
    pass


def load(text: str) -> Any:
    lines = _lines(text)
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0][1])
    if end != len(lines):
        raise YamlSubsetError(f"line {lines[end][0]}: indented less than the block it ends")
    return value


def _lines(text: str) -> list[tuple[int, int, str]]:
    """(line number, indent, content without its comment) of every line that holds something."""
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlSubsetError(f"line {number}: a tab in the indentation")
        content = _without_comment(raw, number).rstrip()
        if content.strip():
            found.append((number, len(content) - len(content.lstrip()), content.strip()))
    return found


def _without_comment(raw: str, number: int) -> str:
    quote, i = "", 0
    while i < len(raw):
        char = raw[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 1  # the escaped character cannot end the string
            elif char == quote:
                quote = ""
        elif char in "'\"" and (i == 0 or raw[i - 1] in " [,-:"):
            quote = char
        elif char == "#" and (i == 0 or raw[i - 1] == " "):
            return raw[:i]
        i += 1
    if quote:
        raise YamlSubsetError(f"line {number}: a string that does not end on its line")
    return raw


def _block(lines: list[tuple[int, int, str]], start: int, indent: int) -> tuple[Any, int]:
    if lines[start][2].startswith("- ") or lines[start][2] == "-":
        return _sequence(lines, start, indent)
    return _mapping(lines, start, indent)


def _sequence(lines: list[tuple[int, int, str]], i: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while i < len(lines) and lines[i][1] == indent:
        number, _, content = lines[i]
        if not content.startswith("- "):
            raise YamlSubsetError(f"line {number}: a sequence item must be `- value`")
        item = content[2:].strip()
        if _split_key(item, number) is not None:
            raise YamlSubsetError(f"line {number}: mappings inside sequences are not read here")
        items.append(_scalar_or_flow(item, number))
        i += 1
    return items, i


def _mapping(lines: list[tuple[int, int, str]], i: int, indent: int) -> tuple[dict[Any, Any], int]:
    mapping: dict[Any, Any] = {}
    while i < len(lines) and lines[i][1] == indent:
        number, _, content = lines[i]
        split = _split_key(content, number)
        if split is None:
            raise YamlSubsetError(f"line {number}: expected `key: value`")
        key, rest = split
        if key in mapping:
            raise YamlSubsetError(f"line {number}: {key!r} is already a key of this mapping")
        i += 1
        if rest:
            mapping[key] = _scalar_or_flow(rest, number)
        elif i < len(lines) and lines[i][1] > indent:
            mapping[key], i = _block(lines, i, lines[i][1])
        elif i < len(lines) and lines[i][1] == indent and lines[i][2].startswith("- "):
            mapping[key], i = _sequence(lines, i, indent)  # a sequence may sit at its key's indent
        else:
            mapping[key] = None
    if i < len(lines) and lines[i][1] > indent:
        raise YamlSubsetError(f"line {lines[i][0]}: indented more than its mapping")
    return mapping, i


def _split_key(content: str, number: int) -> tuple[Any, str] | None:
    """`key: rest` -> (key, rest); None when the line is not a mapping entry."""
    if content[:1] in "'\"":
        end = _quoted_end(content)
        if end is None or not content[end:].startswith(":"):
            return None
        if content[end + 1 : end + 2] not in ("", " "):
            return None
        return _scalar(content[:end], number), content[end + 1 :].strip()
    match = re.match(r"([^\s:'\"\[\]{},#][^:]*?):(?:\s+|$)", content)
    if match is None:
        return None
    return _scalar(match.group(1), number), content[match.end() :].strip()  # `on:` is True to PyYAML


def _quoted_end(text: str) -> int | None:
    quote, i = text[0], 1
    while i < len(text):
        if text[i] == "\\" and quote == '"':
            i += 2
            continue
        if text[i] == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return None


def _scalar_or_flow(text: str, number: int) -> Any:
    if not text.startswith("["):
        return _scalar(text, number)
    if not text.endswith("]"):
        raise YamlSubsetError(f"line {number}: a flow sequence must end on its line")
    items, rest = [], text[1:-1].strip()
    while rest:
        end = _quoted_end(rest) if rest[0] in "'\"" else rest.find(",") if "," in rest else len(rest)
        if end is None:
            raise YamlSubsetError(f"line {number}: an unended string in a flow sequence")
        items.append(_scalar(rest[:end].strip(), number))
        rest = rest[end:].strip()
        if rest and not rest.startswith(","):
            raise YamlSubsetError(f"line {number}: expected `,` in a flow sequence")
        rest = rest[1:].strip()
    return items


def _scalar(text: str, number: int) -> Any:
    if text[:1] == '"':
        if _quoted_end(text) != len(text):
            raise YamlSubsetError(f"line {number}: text after a string")
        return re.sub(r"\\(.)", lambda escape: _escaped(escape[1], number), text[1:-1])
    if text[:1] == "'":
        if _quoted_end(text) != len(text):
            raise YamlSubsetError(f"line {number}: text after a string")
        return text[1:-1].replace("''", "'")
    if text.startswith(REFUSED_STARTS) or AMBIGUOUS.fullmatch(text) or ": " in text or text.endswith(":"):
        raise YamlSubsetError(f"line {number}: {text!r} is outside the YAML read here (quote it)")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    if INT.fullmatch(text):
        return int(text)
    if FLOAT.fullmatch(text):
        return float(text)
    return text


def _escaped(char: str, number: int) -> str:
    if char not in '"\\':
        raise YamlSubsetError(f'line {number}: only the escapes \\" and \\\\ are read here')
    return char
