"""`[access]` and `[admin]` in config.toml: ids are positive 64-bit integers (or their digits in quotes),
switches are true/false, and a bad value stops the bot with one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import access_policy
from cogs.access import GUILD_ONLY, NOT_ENABLED, Access
from settings import Secrets, Settings, SettingsError, load_config

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return Settings(config=load_config(path), secrets=Secrets(_env_file=None), config_path=path)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[access]\nallowed_guilds = [0]", "config.toml: access.allowed_guilds.0: Input should be greater than 0"),
        ("[access]\nallowed_guilds = [1, -5]", "config.toml: access.allowed_guilds.1: Input should be greater than 0"),
        # A float drops the last digits of an 18-digit id (it would name another server); true is not 1.
        ("[access]\nallowed_guilds = [1.2345e17]", "config.toml: access.allowed_guilds.0: Input should be a valid int"),
        ("[access]\nallowed_guilds = [true]", "config.toml: access.allowed_guilds.0: Input should be a valid integer"),
        ('[access]\nallowed_guilds = ["12x"]', "config.toml: access.allowed_guilds.0: Input should be a valid integer"),
        ('[access]\nallowed_guilds = [""]', "config.toml: access.allowed_guilds.0: Input should be a valid integer"),
        (
            "[access]\nallowed_guilds = [9223372036854775808]",
            "config.toml: access.allowed_guilds.0: Input should be less than or equal to 9223372036854775807",
        ),
        ("[access]\nallowed_guilds = 123", "config.toml: access.allowed_guilds: Input should be a valid list"),
        ('[access]\nleave_unlisted = "yes"', "config.toml: access.leave_unlisted: Input should be a valid boolean"),
        ("[access]\nallow_dms = 1", "config.toml: access.allow_dms: Input should be a valid boolean"),
        ("[access]\nallowed_servers = [1]", "config.toml: access.allowed_servers: Extra inputs are not permitted"),
        ("[admin]\nrole_ids = [0]", "config.toml: admin.role_ids.0: Input should be greater than 0"),
        ("[admin]\nrole_ids = [1e18]", "config.toml: admin.role_ids.0: Input should be a valid integer"),
        ("[admin]\nrole_ids = [false]", "config.toml: admin.role_ids.0: Input should be a valid integer"),
        ('[admin]\nrole_ids = "123"', "config.toml: admin.role_ids: Input should be a valid list"),
    ],
)
def test_a_bad_access_or_admin_value_is_refused_naming_its_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_the_defaults_serve_every_server_no_dm_and_name_no_admin_role(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.config.access.allowed_guilds == [] and settings.config.admin.role_ids == []
    access = access_policy(settings)
    assert access == Access(frozenset(), leave_unlisted=False, allow_dms=False)
    assert access.refusal(123) is None and access.refusal(None) == GUILD_ONLY


def test_ids_load_as_integers_quoted_or_not_and_become_the_policy(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[access]\nallowed_guilds = [123456789012345678, "876543210987654321", 123456789012345678]\n'
        "leave_unlisted = true\nallow_dms = true\n"
        '[admin]\nrole_ids = ["111111111111111111", 9223372036854775807]\n',
    )
    assert settings.config.admin.role_ids == [111111111111111111, 2**63 - 1]
    access = access_policy(settings)
    assert access == Access(frozenset({123456789012345678, 876543210987654321}), leave_unlisted=True, allow_dms=True)
    assert access.refusal(876543210987654321) is None and access.refusal(5) == NOT_ENABLED
    assert access.refusal(None) is None  # DMs allowed


def test_the_shipped_config_has_both_sections_at_their_defaults() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.access.allowed_guilds == [] and not config.access.leave_unlisted and not config.access.allow_dms
    assert config.admin.role_ids == []
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    assert "[access]" in text and "[admin]" in text  # documented where admins look, not only defaulted
