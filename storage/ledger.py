"""Reading the ledger: what counts against a member's limits, and the totals of reservations,
settlements, refunds and releases. Usage for a window is reservations minus refunds and releases,
counted in the UTC day and month of the reservation."""

from __future__ import annotations

from core.admin import PoolDraw
from core.jobs import TERMINAL_STATUSES, LedgerTotals, Usage
from storage.sql import Reader, Row

_SPENT = (
    "COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount_micros WHEN 'refund' THEN -amount_micros"
    " WHEN 'release' THEN -amount_micros END), 0)"
)
_COUNTED = "COALESCE(SUM(CASE kind WHEN 'reserve' THEN 1 WHEN 'refund' THEN -1 END), 0)"
# The terminal statuses as an SQL list, for `status NOT IN (...)`.
TERMINAL_SQL = ",".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))
# Every figure a quota check needs, in one statement (one round trip to the database).
# A member's own dollar limits count only what their own allowance paid (not pool draws); the video
# count, the server's and the bot's budgets count everything.
_USAGE_SQL = f"""SELECT
    (SELECT COUNT(*) FROM jobs WHERE user_id = :user AND status NOT IN ({TERMINAL_SQL})),
    (SELECT {_COUNTED} FROM ledger WHERE user_id = :user AND period_day = :day),
    (SELECT {_SPENT} FROM ledger WHERE user_id = :user AND period_day = :day AND pool_id IS NULL),
    (SELECT {_SPENT} FROM ledger WHERE user_id = :user AND period_month = :month AND pool_id IS NULL),
    (SELECT {_SPENT} FROM ledger WHERE guild_id = :guild AND period_month = :month),
    (SELECT {_SPENT} FROM ledger WHERE period_month = :month),
    (SELECT COALESCE(SUM(amount_micros), 0) FROM ledger
     WHERE kind = 'grant' AND user_id = :user AND guild_id = :guild AND period_month = :month),
    (SELECT {_SPENT} FROM ledger WHERE pool_id = :pool AND pool_period = :pool_period)"""
# What a pool has spent in one of its periods.
POOL_SPENT_SQL = f"SELECT {_SPENT} FROM ledger WHERE pool_id = ? AND pool_period = ?"
_TOTALS_SQL = """SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount_micros END), 0),
                        COALESCE(SUM(CASE kind WHEN 'settle' THEN amount_micros END), 0),
                        COALESCE(SUM(CASE kind WHEN 'refund' THEN amount_micros END), 0),
                        COALESCE(SUM(CASE kind WHEN 'release' THEN amount_micros END), 0)
                 FROM ledger"""


async def read_usage(
    reader: Reader, user_id: int, guild_id: int | None, day: str, month: str, pool: PoolDraw | None = None
) -> Usage:
    params = {
        "user": user_id,
        "guild": guild_id,
        "day": day,
        "month": month,
        "pool": pool.pool_id if pool else None,
        "pool_period": pool.period_key if pool else None,
    }
    row = await reader.fetchone(_USAGE_SQL, params)
    assert row is not None
    figures = [int(value or 0) for value in row]
    return Usage(*figures)


def totals_query(job_id: int | None) -> tuple[str, tuple[object, ...]]:
    """The SQL and parameters of the ledger totals, of one job or of everything."""
    if job_id is None:
        return _TOTALS_SQL, ()
    return f"{_TOTALS_SQL} WHERE job_id = ?", (job_id,)


def totals_from_row(row: Row | None) -> LedgerTotals:
    assert row is not None
    return LedgerTotals(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
