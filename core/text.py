"""Member-facing text that can be said again in another language.

A `Text` is a `str` holding the English form, so logs, tests and code that only passes text along read it
as before; it also keeps its catalogue key (the English template, gettext style) and its parameters, so
the Discord layer can render it in the member's language (`services.i18n.localise`). Build one with `tr`
or `tr_n`; mark a template kept in a constant with `N_` so the catalogue extractor finds it.

String operations on a `Text` (slicing, `+`, an f-string) give a plain `str` in English: compose messages
with templates and parameters instead, and a parameter that is itself a `Text` is translated too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Text(str):
    msgid: str
    plural: str | None
    n: int | None
    params: Mapping[str, Any]

    def __new__(cls, msgid: str, params: Mapping[str, Any], plural: str | None = None, n: int | None = None) -> Text:
        template = plural if plural is not None and n != 1 else msgid  # English: one, and everything else
        self = super().__new__(cls, template.format(**params) if params else template)
        self.msgid, self.plural, self.n, self.params = msgid, plural, n, dict(params)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # str's own pickling would call __new__ with the English text
        return (Text, (self.msgid, self.params, self.plural, self.n))


def tr(msgid: str, /, **params: Any) -> Text:
    """A message from the catalogue: `msgid` is its English template with `{name}` placeholders."""
    return Text(msgid, params)


def tr_n(singular: str, plural: str, n: int, /, **params: Any) -> Text:
    """A message whose wording depends on a count; `{n}` is available as a placeholder."""
    return Text(singular, {"n": n, **params}, plural, n)


def N_(msgid: str) -> str:
    """Marks a template kept in a constant for the catalogue; render it later with `tr(CONSTANT, ...)`."""
    return msgid
