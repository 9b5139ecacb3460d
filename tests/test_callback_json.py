"""Callback bodies are parsed only after a structure check: deep nesting is a refusal, never a RecursionError."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from core.provider import WebhookRejected
from providers.kit.json_limits import MAX_DEPTH, JsonTooComplex, check_structure, loads
from providers.minimax import MiniMaxProvider
from providers.toapis_callbacks import verify_delivery

NOW = 1_800_000_000.0
SECRET = "whsec-current-0123456789abcdef0123456789"
DEEP = b"[" * 200_000 + b"]" * 200_000  # 400 KB: well under any body cap
DEEP_OBJECTS = b'{"a":' * 200_000 + b"1" + b"}" * 200_000


def nested(depth: int) -> bytes:
    return b'{"x":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


# ----- the helper ---------------------------------------------------------------------------------------


def test_up_to_the_depth_limit_parses_and_one_more_level_is_refused() -> None:
    assert loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    with pytest.raises(JsonTooComplex, match="deeper than 64"):
        loads(nested(MAX_DEPTH + 1))


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECTS, b"[" * 200_000], ids=["arrays", "objects", "unclosed"])
def test_very_deep_bodies_are_refused_before_the_parser_sees_them(body: bytes) -> None:
    with pytest.raises(JsonTooComplex):
        loads(body)


def test_too_many_items_are_refused_even_when_shallow() -> None:
    with pytest.raises(JsonTooComplex, match="more than 10 "):
        check_structure(json.dumps([[]] * 11).encode(), max_items=10)
    check_structure(json.dumps([[]] * 4).encode(), max_items=10)


@pytest.mark.parametrize(
    "text",
    [
        '{"prompt": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        '{"a\\\\": "[[[", "b": "\\"[[[", "c": "\\\\\\"[[["}',
        '{"ü": "{{{{", "url": "https:\\/\\/cdn.example\\/o.mp4"}',
    ],
)
def test_brackets_inside_strings_and_after_escapes_do_not_count(text: str) -> None:
    assert loads(text.encode()) == json.loads(text)
    check_structure(text.encode(), max_depth=2)  # no error: the only real containers nest 1 deep


def test_a_stray_closer_does_not_hide_the_depth_that_follows() -> None:
    with pytest.raises(JsonTooComplex):
        check_structure(b"]" * 100 + b"[" * 70 + b"]" * 70)


def test_a_bom_is_tolerated_and_other_encodings_are_malformed() -> None:
    assert loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError):
        loads('{"a": 1}'.encode("utf-16"))


# ----- the providers' callback parsers -------------------------------------------------------------------


def test_minimax_refuses_a_deep_callback_without_recursing() -> None:
    hooks = MiniMaxProvider("mm-key")
    for body in (DEEP, DEEP_OBJECTS, b'{"task_id": "1", "status": "success", "x": ' + DEEP + b"}"):
        with pytest.raises(WebhookRejected, match="too complex"):
            hooks.verify_webhook({}, body, NOW)
    ok = hooks.verify_webhook({}, b'{"task_id": "7", "status": "success"}', NOW)
    assert ok.task_id == "7"


def signed(body: bytes, event_id: str = "evt_1") -> dict[str, str]:
    stamp = str(int(NOW))
    digest = hmac.new(SECRET.encode(), f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-ToAPIs-Webhook-Id": event_id,
        "X-ToAPIs-Webhook-Timestamp": stamp,
        "X-ToAPIs-Webhook-Signature": f"v1={digest}",
    }


def test_toapis_refuses_a_deep_signed_callback_without_recursing() -> None:
    for body in (DEEP, DEEP_OBJECTS):
        with pytest.raises(WebhookRejected, match="too complex"):
            verify_delivery((SECRET,), signed(body), body, NOW)
    good = json.dumps({"id": "evt_1", "type": "generation.completed", "data": {"task_id": "vid_1"}}).encode()
    assert verify_delivery((SECRET,), signed(good), good, NOW).task_id == "vid_1"
