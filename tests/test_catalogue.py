"""The message catalogue: complete for every shipped locale, placeholders intact, within Discord's limits,
and in step with the code (every `tr`/`N_` message and every command string has an entry)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from string import Formatter

import pytest
from babel.messages.pofile import read_po

from core.text import Text, tr, tr_n
from services.i18n import CATALOGUES, DOMAIN, LOCALES_DIR, localise, translations

ROOT = Path(__file__).resolve().parent.parent
# Discord's limits, tightest first: a translation may not cross a limit its English form is within
# (a 40-character button label stays under 80, a modal title under 45, a description under 100).
LIMITS = (32, 45, 80, 100, 256, 1024, 2000, 4096)
NAME = re.compile(r"^[-_'\w\u0900-\u097F\u0E00-\u0E7F]{1,32}$")


def catalogue(folder: str) -> list:
    with (LOCALES_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        return [message for message in read_po(po, locale=folder) if message.id]


def fields(template: str) -> set[str]:
    return {name for _text, name, _spec, _conv in Formatter().parse(template) if name is not None}


def sample(template: str) -> dict[str, object]:
    """Plausible values for each placeholder: numbers where a format spec asks for one, text otherwise."""
    values: dict[str, object] = {}
    for _text, name, spec, _conv in Formatter().parse(template):
        if name is not None:
            values[name.split(".")[0].split("[")[0]] = 12345 if spec else "sample value 1234"
    return values


def limit_of(length: int) -> int:
    return next((limit for limit in LIMITS if length <= limit), LIMITS[-1])


def test_the_catalogues_are_in_step_with_the_code() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "catalogue.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("folder", sorted(CATALOGUES.values()))
def test_every_message_is_translated_with_its_placeholders(folder: str) -> None:
    for message in catalogue(folder):
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"{folder}: no translation for {message.id!r}"
        assert not message.fuzzy, f"{folder}: {message.id!r} is marked fuzzy (unreviewed)"
        for translated in strings:
            assert fields(translated) == fields(ids[0]), f"{folder}: placeholders differ in {message.id!r}"


@pytest.mark.parametrize("locale", sorted(CATALOGUES))
def test_every_message_renders_within_discords_limits(locale: str) -> None:
    for message in catalogue(CATALOGUES[locale]):
        if message.context:  # command strings: checked below with Discord's rules for them
            continue
        if isinstance(message.id, tuple):
            singular, plural = message.id
            for n in (1, 2, 12345):
                text = tr_n(singular, plural, n, **{k: v for k, v in sample(plural).items() if k != "n"})
                rendered = localise(text, locale)
                assert len(rendered) <= limit_of(len(str(text))), (locale, message.id, rendered)
            continue
        text = tr(message.id, **sample(message.id))
        rendered = localise(text, locale)
        assert rendered != str(text) or message.string == message.id, (locale, message.id)
        assert len(rendered) <= limit_of(len(str(text))), (locale, message.id, rendered)


@pytest.mark.parametrize("locale", sorted(CATALOGUES))
def test_command_strings_follow_discords_rules(locale: str) -> None:
    for message in catalogue(CATALOGUES[locale]):
        if not message.context:
            continue
        translated = translations(locale).pgettext(message.context, message.id)
        if message.context.endswith("_name") and message.context != "choice_name":
            assert NAME.match(translated) and translated == translated.lower(), (message.id, translated)
        else:
            assert 1 <= len(translated) <= 100, (message.id, translated)


def test_a_message_falls_back_to_english_outside_the_shipped_locales() -> None:
    text = tr("Sorry, something went wrong on our side (reference {reference}). Nothing was charged.", reference=7)
    assert localise(text, "fr") == str(text) == localise(text, None)
    assert localise(text, "zh-CN") != str(text) and "7" in localise(text, "zh-CN")


def test_a_text_is_its_english_form_and_survives_pickling() -> None:
    import pickle

    text = tr_n("{n} video", "{n} videos", 3)
    assert text == "3 videos" and isinstance(text, str)
    again = pickle.loads(pickle.dumps(text))
    assert isinstance(again, Text) and again == text and again.msgid == "{n} video"
