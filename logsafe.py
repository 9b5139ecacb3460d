"""Secrets never reach a log line, at any level, through any handler.

`install` puts a log record factory (`logging.setLogRecordFactory`) in front of the standard one, so every
record is redacted the moment it is created (core.redaction: known secrets in any case or cut short,
Discord tokens by shape). The message is formatted with its %-arguments first and the arguments dropped,
so a secret passed as an argument is masked too; an exception's traceback and a stack are formatted
into `exc_text` and `stack_info` and redacted there (formatters use `exc_text` as it is).

Why at creation and not as a filter on our handlers: records also reach handlers we never installed
(pytest's capture, a handler a library or an operator adds later), which a filter on ours would not
cover. Only records that pass their logger's level are created at all, so DEBUG chatter costs nothing
at INFO. `RedactingFormatter`, on the handler `bot.configure_logging` installs, redacts what is
formatted later (a traceback formatted again, a record whose message was replaced after it was made).
An exception nothing caught (in the main thread or another) is printed by Python itself, not logged:
`install` redacts that too.

Secrets learned after start (the callback path token, read from the database) are added with `register`.

`JsonFormatter` (`bot.log_format = "json"`) writes the same redacted record as one JSON object per line;
its fields are redacted before they are encoded, so JSON escaping cannot hide a secret from the rule.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from core.redaction import Redactor

REDACTOR = Redactor()
# The message the factory left on a record: while it is still the record's message, the formatter need
# not redact it again (makeLogRecord, for one, goes through the factory and then overwrites the message).
_MARK = "_hailuo_redacted_msg"
_TRACEBACKS = logging.Formatter()
_previous_factory: Callable[..., logging.LogRecord] | None = None
_previous_excepthook = sys.excepthook
_previous_thread_hook = threading.excepthook

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def install(secrets: Iterable[str | None] = ()) -> Redactor:
    """Redact every log record from now on, and the traceback of an exception nothing caught in any thread
    (Python prints it to stderr itself); `secrets` are the values known at start (None or "" skipped)."""
    global _previous_factory, _previous_excepthook, _previous_thread_hook
    for secret in secrets:
        REDACTOR.register(secret)
    if _previous_factory is None:
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_make_record)
        _previous_excepthook, _previous_thread_hook = sys.excepthook, threading.excepthook
        sys.excepthook, threading.excepthook = _print_redacted, _print_thread_redacted
    return REDACTOR


def uninstall() -> None:
    """Put the record factory and the exception hook back as they were (for tests: both are process-wide)."""
    global _previous_factory
    if _previous_factory is not None:
        logging.setLogRecordFactory(_previous_factory)
        sys.excepthook, threading.excepthook = _previous_excepthook, _previous_thread_hook
        _previous_factory = None


def _print_redacted(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(REDACTOR.redact("".join(traceback.format_exception(kind, value, tb))))


def _print_thread_redacted(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as the default hook: a thread's SystemExit is silent
        return
    name = args.thread.name if args.thread is not None else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(REDACTOR.redact(f"Exception in thread {name}:\n{text}"))


def register(secret: str | None) -> None:
    """A secret learned after start: masked in every record created from now on."""
    REDACTOR.register(secret)


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous_factory is not None
    record = _previous_factory(*args, **kwargs)
    redact_record(record, REDACTOR)
    return record


def redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:
        # Arguments that do not fit the format: logging would print both, unredacted, to stderr at emit.
        message = f"{record.msg!s} % {record.args!r} (the arguments do not fit the format)"
    record.msg, record.args = redactor.redact(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redactor.redact(_TRACEBACKS.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)
    setattr(record, _MARK, record.msg)


class RedactingFormatter(logging.Formatter):
    """A Formatter whose output is redacted: whole for a record whose message the factory did not leave
    (made elsewhere, or changed since), and any traceback or stack it formats itself."""

    def __init__(self, fmt: str | None = None, *, redactor: Redactor = REDACTOR) -> None:
        super().__init__(fmt)
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        redacted = getattr(record, _MARK, None) is record.msg and not record.args
        return text if redacted else self._redactor.redact(text)

    def formatException(self, ei: ExcInfo) -> str:
        return self._redactor.redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._redactor.redact(super().formatStack(stack_info))


# Lines about a job start "job <id>:" (services log every state change so); the JSON line carries the id too.
_JOB_LINE = re.compile(r"^job (\d+)\b")


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: time (ISO-8601, UTC), level, logger, message, job_id when the record is
    about a job (an int `job_id` attribute, or a message starting "job <id>"), and exc_info / stack_info as
    text. Built from the record as the factory redacted it; anything else is redacted here."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not (getattr(record, _MARK, None) is record.msg and not record.args):
            message = self._redactor.redact(message)
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        job_id = getattr(record, "job_id", None)
        if not isinstance(job_id, int) and (found := _JOB_LINE.match(message)):
            job_id = int(found.group(1))
        if isinstance(job_id, int):
            entry["job_id"] = job_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        # Tracebacks and stacks are rare: redacted again whatever made them.
        if record.exc_text:
            entry["exc_info"] = self._redactor.redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = self._redactor.redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)
