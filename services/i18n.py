"""The message catalogue: every member-facing `Text` rendered in the member's language.

Catalogues are gettext `.po` files under `locales/<lang>/LC_MESSAGES/messages.po`, read with Babel at
first use and compiled in memory. The English templates in the code are the keys, so English needs no
catalogue; a locale without one (or a message its catalogue lacks) falls back to English.
`scripts/catalogue.py` extracts the keys into `locales/messages.pot` and updates every catalogue.
"""

from __future__ import annotations

import functools
import gettext
import io
import logging
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from core.text import Text

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
# Discord's locale codes (interaction.locale) and the catalogue that serves each. Traditional Chinese
# (zh-TW) is not served by the Simplified catalogue: English is the better fallback than the wrong script.
CATALOGUES = {"zh-CN": "zh_CN"}
SHIPPED_LOCALES = ("en-US", *CATALOGUES)


@functools.cache
def translations(locale: str | None) -> gettext.NullTranslations:
    """The compiled catalogue for a Discord locale code ("zh-CN"), or English."""
    folder = CATALOGUES.get(str(locale or ""))
    if folder is None:
        return gettext.NullTranslations()
    path = LOCALES_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=folder)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)  # fuzzy (unreviewed) entries are left out, so they stay English
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def localise(value: str, locale: str | None) -> str:
    """`value` in the language of `locale` when it is a `Text` the catalogue has; otherwise as it is."""
    if not isinstance(value, Text) or not locale or locale not in CATALOGUES:
        return str(value)
    catalogue = translations(locale)
    if value.plural is not None:
        template = catalogue.ngettext(value.msgid, value.plural, value.n or 0)
    else:
        template = catalogue.gettext(value.msgid)
    if not value.params:
        return template
    params = {key: _param(item, locale) for key, item in value.params.items()}
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):  # a broken translation: English beats an error
        log.warning("catalogue %s: the translation of %r does not fit its parameters", locale, value.msgid)
        return str(value)


def _param(item: Any, locale: str) -> Any:
    return localise(item, locale) if isinstance(item, Text) else item


def translate_command_string(message: str, location: str, locale: str) -> str | None:
    """A command's, option's or choice's name or description (keyed by its place, e.g. `command_name`),
    or None when the catalogue has none, so Discord shows the English one."""
    if locale not in CATALOGUES:
        return None
    translated = translations(locale).pgettext(location, message)
    return None if translated == message else translated
