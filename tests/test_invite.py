"""The invite link asks for exactly the permissions the README tells an admin to grant (and that the bot
checks in a channel before a job), and the README's quick start is there, in the order an admin needs it."""

from __future__ import annotations

import re
from pathlib import Path

import discord

from cogs.client import INVITE_PERMISSIONS, invite_url
from cogs.launch import NEEDED_PERMISSIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def readme_permissions() -> list[str]:
    """The bold names after "bot permissions" in the invite step of "Create the Discord application"."""
    invite_step = re.search(r"\n3\. Invite it.*?(?=\n\d+\. )", section("Create the Discord application"), re.S)
    assert invite_step is not None
    after = re.split(r"bot\s+permissions", invite_step.group(0), maxsplit=1)[1]
    return re.findall(r"\*\*([^*]+)\*\*", after)


def flag(name: str) -> str:
    """A permission as Discord's settings name it ("View Channels") -> discord.py's flag ("view_channel")."""
    words = name.lower().split()
    for candidate in ("_".join(words), "_".join([*words[:-1], words[-1].removesuffix("s")])):
        if candidate in discord.Permissions.VALID_FLAGS:
            return candidate
    raise AssertionError(f"README permission {name!r} is not a Discord permission")


def test_the_invite_asks_for_exactly_the_permissions_the_readme_lists() -> None:
    listed = readme_permissions()
    assert len(listed) == 5, listed
    assert {flag(name) for name in listed} == set(NEEDED_PERMISSIONS)
    assert discord.Permissions(**dict.fromkeys(map(flag, listed), True)).value == INVITE_PERMISSIONS.value == 117760
    assert invite_url(42) == (
        "https://discord.com/oauth2/authorize?client_id=42&scope=bot+applications.commands&permissions=117760"
    )


def test_the_quick_start_is_numbered_in_the_order_a_new_admin_needs_it() -> None:
    quick = section("Quick start")
    steps = re.findall(r"^(\d+)\. (.*)$", quick, re.M)
    assert [int(number) for number, _ in steps] == list(range(1, len(steps) + 1))
    order = ["New Application", "Public Bot", ".env.example", "scripts/run.sh", "printed link", "allowed_guilds"]
    firsts = [next(i for i, (_, text) in enumerate(steps) if needle in text) for needle in order]
    assert firsts == sorted(firsts), dict(zip(order, firsts, strict=True))
    assert "Developer Mode" in quick and "Server Settings → Integrations" in quick
    # The sample start-up line carries the real permissions integer.
    assert f"permissions={INVITE_PERMISSIONS.value}" in quick


def test_env_example_is_the_file_the_quick_start_copies() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    assert "DISCORD_TOKEN=" in lines  # blank: read as "not set" until filled in
    keys = ("WAVESPEED_API_KEY=", "SEAART_API_KEY=", "MINIMAX_API_KEY=", "TOAPIS_API_KEY=")
    assert all(key in lines for key in keys)


def test_the_readme_configuration_table_names_the_access_and_admin_keys() -> None:
    table = section("Configuration")
    for key in ("access.allowed_guilds", "access.leave_unlisted", "access.allow_dms", "admin.role_ids"):
        assert f"| `{key}` |" in table, key
