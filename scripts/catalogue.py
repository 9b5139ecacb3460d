"""Extract every member-facing message and command string into locales/messages.pot, and bring each
locale's catalogue up to date with it (new keys untranslated, vanished ones dropped).

    .venv/bin/python scripts/catalogue.py          # update the template and the catalogues
    .venv/bin/python scripts/catalogue.py --check  # exit 1 if they are out of date (the tests do this too)

Translate the new entries (empty msgstr) in locales/<lang>/LC_MESSAGES/messages.po afterwards.
"""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from babel.messages.catalog import Catalog  # noqa: E402
from babel.messages.extract import extract_from_dir  # noqa: E402
from babel.messages.pofile import read_po, write_po  # noqa: E402

from services.i18n import CATALOGUES, DOMAIN, LOCALES_DIR  # noqa: E402

SOURCE_DIRS = ("core", "services", "cogs", "providers", "media")
KEYWORDS = {"tr": None, "tr_n": (1, 2), "N_": None}


def code_messages() -> list[tuple[str | tuple[str, str], str]]:
    """(msgid or (singular, plural), where) for every tr/tr_n/N_ in the product code."""
    found = []
    for folder in SOURCE_DIRS:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            ROOT / folder, method_map=[("**.py", "python")], keywords=KEYWORDS, comment_tags=()
        ):
            if isinstance(message, tuple):
                message = (message[0], message[1])
            found.append((message, f"{folder}/{filename}:{lineno}"))
    return found


async def command_messages() -> list[tuple[str, str]]:
    import discord
    from discord import app_commands

    from cogs.client import COGS
    from cogs.translator import command_strings

    tree: app_commands.CommandTree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))
    commands = [command for cog in COGS for command in getattr(cog, "__cog_app_commands__", [])]
    return await command_strings(tree, commands)


def template() -> Catalog:
    catalog = Catalog(project="hailuo-bot", domain=DOMAIN, charset="utf-8", fuzzy=False)
    for message, where in code_messages():
        catalog.add(message, locations=[(where.rsplit(":", 1)[0], int(where.rsplit(":", 1)[1]))])
    for location, message in asyncio.run(command_messages()):
        catalog.add(message, context=location)
    return catalog


def render(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_po(out, catalog, omit_header=False, no_location=True, sort_output=True, width=120)
    return out.getvalue()


def updated(folder: str, pot: Catalog) -> Catalog:
    path = LOCALES_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po"
    if path.exists():
        with path.open("rb") as po:
            catalog = read_po(po, locale=folder)
    else:
        catalog = Catalog(locale=folder, project="hailuo-bot", domain=DOMAIN, charset="utf-8", fuzzy=False)
    catalog.update(pot, no_fuzzy_matching=True)  # a guessed translation is worse than English
    catalog.obsolete.clear()
    return catalog


def main(check: bool) -> int:
    pot = template()
    wanted = {LOCALES_DIR / f"{DOMAIN}.pot": render(pot)}
    for folder in CATALOGUES.values():
        wanted[LOCALES_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po"] = render(updated(folder, pot))
    stale = [path for path, data in wanted.items() if _body(path.read_bytes() if path.exists() else b"") != _body(data)]
    if check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run scripts/catalogue.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wanted[path])
        print(f"updated {path.relative_to(ROOT)}")
    return 0


def _body(data: bytes) -> bytes:
    """The catalogue without its header's dates, which change on every run."""
    dated = (b'"POT-Creation-Date', b'"PO-Revision')
    return b"\n".join(line for line in data.splitlines() if not line.startswith(dated))


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv[1:]))
