"""bot.log_format = "json": one JSON object per line, built from the redacted record (no secret in any field)."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

from tests.leaks import echoes, logging_as_the_bot_does

KEY = "wsk_live_Zr4Tq8Lm2Xz7Pb9Rv3Nc5"
BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhJkLm.q7Xz0aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3"


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_the_job_id_when_it_is_about_a_job() -> None:
    stream = io.StringIO()
    with logging_as_the_bot_does([KEY], stream, fmt="json"):
        logging.getLogger("services.jobs").info("job %d: %s (%s)", 42, "queued", "wavespeed")
        logging.getLogger("hailuo").warning('two\nlines, "quoted", 中文')
        logging.getLogger("cogs.funnel").info("a line with its own id", extra={"job_id": 7})
    first, second, third = lines(stream)
    assert first["message"] == "job 42: queued (wavespeed)" and first["job_id"] == 42
    assert first["level"] == "INFO" and first["logger"] == "services.jobs"
    stamp = str(first["time"])
    assert stamp.endswith("Z") and datetime.fromisoformat(stamp.replace("Z", "+00:00")).utcoffset() is not None
    assert second["message"] == 'two\nlines, "quoted", 中文' and "job_id" not in second
    assert third["job_id"] == 7


def test_a_traceback_is_a_string_and_no_field_shows_a_secret_at_debug() -> None:
    stream = io.StringIO()
    with logging_as_the_bot_does([KEY, BOT_TOKEN], stream, fmt="json"):
        log = logging.getLogger("discord.gateway")
        log.debug("WebSocket Event: %s", {"op": 2, "d": {"token": BOT_TOKEN}})
        log.info("provider said %r", f'bad key "{KEY.upper()[:14]}"')  # quotes: JSON escapes them
        try:
            raise RuntimeError(f"request failed: Authorization: Bearer {KEY}")
        except RuntimeError:
            logging.getLogger("services.lifecycle").exception("job %d: internal error", 3)
        logging.getLogger("x").warning("where am I (%s)", KEY[3:12], stack_info=True)
        # A record made elsewhere (not by the factory) is redacted by the formatter itself.
        handler = logging.getLogger().handlers[-1]
        handler.handle(logging.makeLogRecord({"msg": "old record with %s", "args": (KEY,), "levelno": 20}))
    text = stream.getvalue()
    assert echoes(text, KEY) == [] and echoes(text, BOT_TOKEN) == [], text
    # Every line parses; only this test's own lines are counted (a background thread or task left by an
    # earlier test may log meanwhile: the process-wide handler is what is being tested).
    records = [r for r in lines(stream) if r["logger"] in (None, "discord.gateway", "services.lifecycle", "x")]
    assert len(records) == 5, records
    failed = records[2]
    assert failed["job_id"] == 3 and isinstance(failed["exc_info"], str)
    assert "RuntimeError: request failed" in failed["exc_info"] and "***" in failed["exc_info"]
    assert "Stack (most recent call last)" in str(records[3]["stack_info"])
    assert records[4]["message"] == "old record with ***"
