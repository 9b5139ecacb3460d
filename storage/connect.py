"""A `Database` for a URL (storage/urls.py): SQLite by default, PostgreSQL when the URL says so."""

from __future__ import annotations

from pathlib import Path

from storage.db import SqliteDatabase
from storage.postgres import PgDatabase
from storage.sql import Database
from storage.urls import dialect_of, sqlite_path


def database_for(url: str) -> Database:
    """Not opened yet: `await database_for(url).open()`. A relative SQLite path is taken from the working
    directory (settings resolve it against config.toml first)."""
    if dialect_of(url) == "sqlite":
        return SqliteDatabase(Path(sqlite_path(url)))
    return PgDatabase(url)
