"""Timestamps as jobs store them: ISO 8601 in UTC, to the millisecond."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def iso_now() -> str:
    return iso(datetime.now(UTC))


def unix(stamp: str | None) -> float | None:
    """Unix seconds of a stored timestamp (None stays None)."""
    return datetime.fromisoformat(stamp).timestamp() if stamp else None
