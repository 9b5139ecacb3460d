"""The bot's database as the fault-injection runs read it: the same queries on SQLite and on PostgreSQL.

The queries are written once, in the spelling both accept (`?` placeholders, which the PostgreSQL view
turns into `%s`; CASE instead of SQLite's summed booleans; sums cast to BIGINT, where PostgreSQL would
return NUMERIC), and every row comes back as a dict, so the checks cannot tell the backends apart.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]
TERMINAL = ("delivered", "failed", "cancelled")


def _count(kind: str) -> str:
    return f"SUM(CASE WHEN l.kind = '{kind}' THEN 1 ELSE 0 END) AS {kind}s"


def _total(kind: str, name: str) -> str:
    return f"CAST(COALESCE(SUM(CASE WHEN l.kind = '{kind}' THEN l.amount_micros END), 0) AS BIGINT) AS {name}"


UNFINISHED = f"SELECT id, status, message_id, interaction_id FROM jobs WHERE status NOT IN {TERMINAL} ORDER BY id"
NEWEST_JOB = "SELECT COALESCE(MAX(id), 0) AS newest FROM jobs"
ANY_IN = "SELECT 1 AS found FROM jobs WHERE status = ? LIMIT 1"
# Every job with its ledger rows counted and summed by kind.
JOBS = f"""
    SELECT j.id, j.status, j.cost_micros, j.provider, j.provider_task_id, j.delivered_as, j.error_kind,
           j.interaction_id,
           {_count("reserve")}, {_count("settle")}, {_count("refund")},
           {_total("reserve", "reserved")}, {_total("settle", "settled")}, {_total("refund", "refunded")},
           {_total("release", "released")},
           EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id AND e.status = 'submitting') AS tried_submit
    FROM jobs j LEFT JOIN ledger l ON l.job_id = j.id
    GROUP BY j.id ORDER BY j.id"""


class DatabaseView:
    """Read-only questions about the jobs; `rows` is the backend's."""

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to close by default."""

    def unfinished(self) -> list[Row]:
        return self.rows(UNFINISHED)

    def statuses(self) -> dict[int, str]:
        """Unfinished jobs and their states."""
        return {int(row["id"]): str(row["status"]) for row in self.unfinished()}

    def newest_job(self) -> int:
        rows = self.rows(NEWEST_JOB)
        return int(rows[0]["newest"]) if rows else 0

    def any_in(self, status: str) -> bool:
        return bool(self.rows(ANY_IN, (status,)))

    def jobs(self) -> list[Row]:
        return self.rows(JOBS)


class SqliteView(DatabaseView):
    """The bot's SQLite file opened read-only for each query: WAL lets us read while the bot writes, and
    a short-lived connection never holds a snapshot that would block the bot's checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()


class PostgresView(DatabaseView):
    """The run's PostgreSQL database through one autocommit connection: each query sees what is committed
    when it runs, and holds no snapshot or lock between queries. Synchronous: a query takes a millisecond
    or two, and the stand-ins in the same event loop can wait that long."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Row] | None = None

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        return self._conn.execute(sql.replace("?", "%s"), params).fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
