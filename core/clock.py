"""Timestamps as jobs are stored with them: ISO 8601 in UTC, to the millisecond (store and services alike)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_now() -> str:
    return iso(utcnow())


def unix(stamp: str | None) -> float | None:
    """Unix seconds of a stored timestamp (None stays None)."""
    return datetime.fromisoformat(stamp).timestamp() if stamp else None
