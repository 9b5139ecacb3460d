"""logsafe: every record is redacted when it is made, so every handler (ours, pytest's) sees masked text."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

import logsafe
from settings import Secrets
from tests.leaks import echoes, logging_as_the_bot_does

KEY = "mmx_live_J8k2Lq9Xz4Pt7Rv3Nb6Cd1"
BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhJkLm.q7Xz0aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3"
LATE = "path-token-Qw8_Er7-Ty6Ui5"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    with logging_as_the_bot_does([KEY, BOT_TOKEN, None, ""], stream):
        yield stream


def outputs(stream: io.StringIO, caplog: pytest.LogCaptureFixture) -> list[str]:
    return [stream.getvalue(), caplog.text]


def test_arguments_are_formatted_then_masked_for_every_handler(
    captured: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("discord.gateway")
    log.debug("For Shard ID %s: WebSocket Event: %s", None, {"op": 2, "d": {"token": BOT_TOKEN}})
    log.info("provider said %r", f"bad key {KEY.upper()[:14]}")
    logging.getLogger("aiosqlite").debug("executing %s", ("SELECT 1", (KEY.lower(),)))
    for text in outputs(captured, caplog):
        assert echoes(text, KEY) == [] and echoes(text, BOT_TOKEN) == [], text
        assert "WebSocket Event" in text and "bad key ***" in text and "executing" in text
    assert all(record.args == () for record in caplog.records)


def test_tracebacks_and_stacks_are_masked(captured: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    try:
        raise RuntimeError(f"request failed: Authorization: Bearer {KEY}")
    except RuntimeError:
        logging.getLogger("services.lifecycle").exception("job 1: internal error")
    logging.getLogger("x").warning("where am I (%s)", KEY[3:12], stack_info=True)
    for text in outputs(captured, caplog):
        assert "RuntimeError: request failed" in text and "Stack (most recent call last)" in text
        assert echoes(text, KEY) == [], text
    # Only this test's records: a database thread of an earlier test may still log its last close.
    [failed] = [record for record in caplog.records if record.name == "services.lifecycle"]
    assert failed.exc_info is not None  # kept for tools that want the exception object


def test_a_secret_registered_after_start_is_masked_from_then_on(
    captured: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logsafe.register(LATE)
    logging.getLogger("aiohttp.server").info("POST /hook/%s", LATE.upper())
    assert LATE.upper() not in captured.getvalue() and "/hook/***" in captured.getvalue()


def test_a_call_whose_arguments_do_not_fit_is_logged_masked_instead_of_dumped(
    captured: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger("x").error("two %s %s", KEY)  # one argument short
    assert "do not fit the format" in captured.getvalue() and echoes(captured.getvalue(), KEY) == []
    assert echoes(capsys.readouterr().err, KEY) == []  # no "--- Logging error ---" dump with the raw arguments


def test_the_formatter_masks_records_made_outside_the_factory() -> None:
    captured = io.StringIO()
    with logging_as_the_bot_does([KEY], captured) as handler:
        record = logging.makeLogRecord({"msg": "old record with %s", "args": (KEY,), "levelno": logging.INFO})
        handler.handle(record)
        try:
            raise ValueError(KEY)
        except ValueError as exc:
            late = logging.makeLogRecord({"msg": "late traceback", "exc_info": (ValueError, exc, exc.__traceback__)})
        handler.handle(late)
    text = captured.getvalue()
    assert "old record with ***" in text and "ValueError: ***" in text and echoes(text, KEY) == []


def test_settings_list_every_secret_that_is_set() -> None:
    secrets = Secrets(
        _env_file=None,  # type: ignore[call-arg]
        discord_token=SecretStr(BOT_TOKEN),
        wavespeed_api_key=SecretStr(KEY),
        toapis_webhook_secret=SecretStr(LATE),
    )
    assert sorted(secrets.secret_values()) == sorted([BOT_TOKEN, KEY, LATE])


def test_an_uncaught_exception_is_printed_masked(captured: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError(f"startup failed with {KEY.upper()}")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "RuntimeError: startup failed with ***" in err and echoes(err, KEY) == []


def test_an_uncaught_exception_in_a_thread_is_printed_masked(
    captured: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> None:
        raise RuntimeError(f"worker failed with {KEY.lower()}")

    worker = threading.Thread(target=fail, name="db-worker")
    worker.start()
    worker.join()
    err = capsys.readouterr().err
    assert "Exception in thread db-worker" in err and "RuntimeError: worker failed with ***" in err
    assert echoes(err, KEY) == []
