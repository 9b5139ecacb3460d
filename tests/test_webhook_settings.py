"""[webhooks] settings: the receiver's limits are bounded, and the listen address defaults to loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from settings import SettingsError, WebhooksSection, load_config
from webhook_guard import ConnectionLimits
from webhooks import connection_limits


def config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"[webhooks]\n{body}\n", encoding="utf-8")
    return path


def test_defaults_listen_on_loopback_with_finite_limits() -> None:
    section = WebhooksSection()
    assert section.listen_host == "127.0.0.1"
    assert (section.max_connections, section.header_timeout_seconds, section.idle_timeout_seconds) == (64, 5, 15)
    assert section.body_timeout_seconds == 30


def test_the_shipped_config_loads_and_listens_on_loopback() -> None:
    cfg = load_config(Path(__file__).resolve().parent.parent / "config.toml")
    assert cfg.webhooks.listen_host == "127.0.0.1" and cfg.webhooks.max_connections == 64


@pytest.mark.parametrize(
    "line",
    [
        "max_connections = 0",
        "max_connections = 100000",
        "header_timeout_seconds = 0",
        "header_timeout_seconds = 3600",
        "idle_timeout_seconds = -1",
        "idle_timeout_seconds = 3630",
        "body_timeout_seconds = 0",
        'body_timeout_seconds = "nan"',
    ],
)
def test_limits_out_of_range_are_refused_with_the_key(tmp_path: Path, line: str) -> None:
    with pytest.raises(SettingsError, match=f"webhooks.{line.split()[0]}"):
        load_config(config(tmp_path, line))


def test_a_direct_http_url_on_the_listen_port_needs_an_explicit_listen_host(tmp_path: Path) -> None:
    # A config written for the old default (0.0.0.0) that sends providers straight to this port.
    with pytest.raises(SettingsError, match=re.escape('listen_host = "0.0.0.0"')):
        load_config(config(tmp_path, 'public_base_url = "http://203.0.113.5:8080"'))
    explicit = load_config(config(tmp_path, 'public_base_url = "http://203.0.113.5:8080"\nlisten_host = "0.0.0.0"'))
    assert explicit.webhooks.listen_host == "0.0.0.0"


@pytest.mark.parametrize(
    "url", ["https://bot.example.org", "http://bot.example.org:8443", "http://127.0.0.1:8080", "http://localhost:8080"]
)
def test_a_proxy_or_local_url_keeps_the_loopback_default(tmp_path: Path, url: str) -> None:
    assert load_config(config(tmp_path, f'public_base_url = "{url}"')).webhooks.listen_host == "127.0.0.1"


def test_the_receiver_gets_its_limits_from_the_section() -> None:
    section = WebhooksSection(
        max_connections=3, header_timeout_seconds=1, idle_timeout_seconds=2, body_timeout_seconds=4
    )
    assert connection_limits(section) == ConnectionLimits(
        max_connections=3, header_timeout=1, idle_timeout=2, body_timeout=4
    )
    assert connection_limits(WebhooksSection()) == ConnectionLimits()  # one set of defaults
