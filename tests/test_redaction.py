"""core.redaction: echoes of known secrets (any case, cut short) and secrets recognised by their shape."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from core.redaction import MASK, Redactor, SecretMatcher, redact_secrets, redact_shapes

KEY = "wsk_9fQ2xLm7Pz4RtY8vN3bK6cJ1hD5gS0aE"
BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhJkLm.q7Xz0aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3"
INTERACTION = "aW50ZXJhY3Rpb246" + base64.b64encode(b"1234567890123456789:Xy7Qp2Lm9Rt4Vb8Nc3").decode().rstrip("=")


@pytest.mark.parametrize(
    "echo",
    [
        KEY,
        KEY.upper(),
        KEY.lower(),
        KEY.swapcase(),
        KEY[:8],  # truncated to the shortest masked run
        KEY[:20],
        KEY[-9:],
        KEY[11:19],  # a window from the middle
        KEY[5:25].upper(),
    ],
)
def test_every_run_of_eight_characters_of_a_key_is_masked_in_any_case(echo: str) -> None:
    text = f"invalid api key '{echo}' for this account"
    redacted = redact_secrets(text, [KEY])
    assert redacted == f"invalid api key '{MASK}' for this account"


def test_a_fragment_shorter_than_eight_characters_is_left_alone() -> None:
    assert redact_secrets(f"prefix {KEY[:7]} suffix", [KEY]) == f"prefix {KEY[:7]} suffix"


def test_touching_and_overlapping_echoes_merge_into_one_mask() -> None:
    assert redact_secrets(f"[{KEY}{KEY.upper()}]", [KEY]) == f"[{MASK}]"
    assert redact_secrets(f"a {KEY[:10]} b {KEY[-10:]} c", [KEY]) == f"a {MASK} b {MASK} c"


def test_a_percent_encoded_secret_is_masked_too() -> None:
    secret = "p@ss/w+rd=0123456789"
    assert redact_secrets("url?cb=p%40ss%2Fw%2Brd%3D0123456789&x=1", [secret]) == f"url?cb={MASK}&x=1"


def test_short_secrets_are_masked_whole_and_tiny_ones_ignored() -> None:
    assert redact_secrets("the secret is AbCdE1, not abcde", ["abcde1"]) == f"the secret is {MASK}, not abcde"
    assert redact_secrets("abc abc", ["abc"]) == "abc abc"


def test_unrelated_text_is_untouched() -> None:
    text = "job 12: submitted to wavespeed (task 7f3a9c1e-aaaa-bbbb), polling every 1.5 s; token handover in 840 s"
    assert Redactor([KEY, BOT_TOKEN]).redact(text) == text


def test_matching_text_keeps_its_positions_with_non_ascii_around_it() -> None:
    # Case folding is ASCII-only, so "İ" (which lower() turns into two characters) shifts nothing.
    assert redact_secrets(f"İİ {KEY.upper()} ß", [KEY]) == f"İİ {MASK} ß"


def test_discord_token_shapes_are_masked_without_being_registered() -> None:
    redactor = Redactor()
    lines = [
        f"POST https://discord.com/api/v10/interactions/1234/{INTERACTION}/callback with None has returned 204",
        "PATCH https://discord.com/api/v10/webhooks/5678/itoken-opaque_Value-123/messages/@original",
        "For Shard ID None: WebSocket Event: {'t': 'INTERACTION_CREATE', 'd': {'token': 'opaque-Value-42'}}",
        json.dumps({"op": 2, "d": {"token": "opaque-Value-43", "intents": 1}}),
        f"a bare interaction token {INTERACTION} in prose",
        f"Authorization: Bot {BOT_TOKEN}",
        f"an unregistered bot token {BOT_TOKEN}.",
        "callback to http%3A%2F%2Fhost%2Fwebhooks%2Fwavespeed%2FpathTOKEN_abc-123&x=1",
        "GET /hook?token=abcdefghijklmnop0123&page=2",
    ]
    redacted = [redactor.redact(line) for line in lines]
    for secret in (INTERACTION, "itoken-opaque_Value-123", "opaque-Value-4", BOT_TOKEN, "pathTOKEN", "abcdefghijklm"):
        assert not any(secret in line for line in redacted), (secret, redacted)
    assert redacted[0].endswith(f"/interactions/1234/{MASK}/callback with None has returned 204")
    assert redacted[1].endswith(f"/webhooks/5678/{MASK}/messages/@original")
    assert "'token': '***'" in redacted[2] and '"token": "***"' in redacted[3]
    assert redacted[7].endswith(f"webhooks%2Fwavespeed%2F{MASK}&x=1")


def test_registered_secrets_are_masked_from_then_on() -> None:
    redactor = Redactor(["discord-bot-token-value", None, ""])
    path_token = "Zx8-Qw_3rTy7uIo9pAs1dFg2"
    assert redactor.redact(f"('webhook_path_token', '{path_token}')") == f"('webhook_path_token', '{path_token}')"
    redactor.register(path_token)
    redactor.register(path_token)  # twice is harmless
    assert redactor.redact(f"('webhook_path_token', '{path_token}')") == f"('webhook_path_token', '{MASK}')"
    assert redactor.redact("DISCORD-BOT-TOKEN") == MASK


def test_register_from_many_threads_loses_none() -> None:
    redactor = Redactor()
    secrets = [f"secret-number-{n:04d}-xyz" for n in range(40)]
    threads = [threading.Thread(target=redactor.register, args=(secret,)) for secret in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(redactor.redact(secret) == MASK for secret in secrets)


def test_an_echo_at_the_end_of_a_large_text_is_found() -> None:
    matcher = SecretMatcher([KEY, BOT_TOKEN])
    text = ("lorem ipsum dolor sit amet consectetur " * 20_000) + KEY.upper()
    assert matcher.mask(text).endswith(MASK)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hailuo:pw-in-url@db.example:5432/hailuo",
        "postgres://hailuo:pw-in-url@/hailuo?host=/run/postgresql",
        "could not open postgresql://u:pw-in-url@10.0.0.5/x: refused",
    ],
)
def test_the_password_in_a_database_url_is_masked_whoever_never_registered_it(url: str) -> None:
    masked = redact_shapes(url)
    assert "pw-in-url" not in masked and f":{MASK}@" in masked


def test_a_url_without_a_password_is_left_readable() -> None:
    for text in ("postgresql://hailuo@db/hailuo", "sqlite:////data/hailuo.db", "https://example.com/a:b"):
        assert redact_shapes(text) == text
