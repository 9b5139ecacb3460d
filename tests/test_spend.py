"""Spend reports (/admin spend): the settled jobs a server's window holds, read from a real SQLite ledger."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from core.jobs import JobStatus, NewJob
from core.reports import SpendItem
from services.spend import (
    CHART_MAX_BARS,
    CHART_SIZE,
    GROUPINGS,
    PERIODS,
    TABLE_MAX_CHARS,
    aggregate,
    build_report,
    chart_bars,
    days,
    render_csv,
    render_png,
    render_table,
    spend_report,
    window,
)
from storage.connect import database_for
from storage.jobs import SqlJobStore
from storage.reports import SqlSpendReader

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
GUILD = 10


@dataclass
class Ledger:
    store: SqlJobStore
    reader: SqlSpendReader
    monkeypatch: pytest.MonkeyPatch

    async def job(
        self,
        at: datetime,
        *,
        user: int = 1,
        guild: int | None = GUILD,
        channel: int | None = 20,
        model: str = "hailuo-2.3",
        provider: str = "wavespeed",
        cost: int = 280_000,
        charged: int | None = None,
        outcome: str = "settle",
    ) -> int:
        """A job reserved five minutes before `at` and ended at `at` through the real store: settled
        (at `charged` when failover served it cheaper than reserved), refunded, or left in flight."""
        job = NewJob(
            user_id=user,
            guild_id=guild,
            channel_id=channel,
            interaction_id=None,
            command="video",
            mode="t2v",
            quality="standard",
            duration=6,
            optimize_prompt=True,
            model=model,
            prompt="a cat",
            input_image=None,
            provider=provider,
            cost_micros=cost,
        )
        job_id = (await self.store.reserve(job, lambda usage: None, now=at - timedelta(minutes=5))).id
        if charged is not None:
            await self.store.update(job_id, cost_micros=charged)
        # The store stamps an outcome with the current time: make that time `at`.
        self.monkeypatch.setattr("storage.jobs.utcnow", lambda: at)
        if outcome == "settle":
            assert await self.store.finish(job_id, JobStatus.DELIVERED, "settle")
        elif outcome == "refund":
            assert await self.store.finish(job_id, JobStatus.FAILED, "refund")
        return job_id

    async def settled_sum(self, guild: int, since: datetime, until: datetime) -> int:
        """What the ledger itself says was settled in the window, straight from SQL."""
        row = await self.store.db.fetchone(
            "SELECT COALESCE(SUM(amount_micros), 0) FROM ledger WHERE kind = 'settle' AND guild_id = ?"
            " AND at >= ? AND at < ?",
            (guild, since.isoformat(timespec="milliseconds"), until.isoformat(timespec="milliseconds")),
        )
        assert row is not None
        return int(row[0])


@pytest.fixture
async def ledger(db_url: str, monkeypatch: pytest.MonkeyPatch):
    async with database_for(db_url) as db:
        yield Ledger(SqlJobStore(db), SqlSpendReader(db), monkeypatch)


async def test_the_reader_returns_the_servers_jobs_settled_in_the_window(ledger: Ledger) -> None:
    since, until = NOW - timedelta(days=1), NOW
    inside = await ledger.job(NOW - timedelta(hours=2), user=2, channel=None, model="hailuo-02", provider="seaart")
    at_start = await ledger.job(since)  # the window includes its start...
    await ledger.job(until)  # ...and not its end
    await ledger.job(since - timedelta(milliseconds=1))
    await ledger.job(NOW - timedelta(hours=1), guild=11)  # another server
    await ledger.job(NOW - timedelta(hours=1), guild=None)  # a DM or the terminal
    await ledger.job(NOW - timedelta(hours=1), outcome="refund")
    await ledger.job(NOW - timedelta(hours=1), outcome="none")  # still in flight: reserved only

    items = await ledger.reader.spend(GUILD, since, until)

    assert [item.job_id for item in items] == [at_start, inside]  # oldest first
    assert items[1] == SpendItem(inside, 2, None, "hailuo-02", "seaart", NOW - timedelta(hours=2), 280_000)
    assert items[0].settled_at == since and items[0].settled_at.tzinfo is not None
    assert sum(item.settled_micros for item in items) == await ledger.settled_sum(GUILD, since, until)


async def test_a_job_counts_when_it_settles_not_when_it_was_reserved(ledger: Ledger) -> None:
    # Reserved at 23:57 the day before the window, settled at 00:02 inside it.
    midnight = NOW.replace(hour=0, minute=0)
    job_id = await ledger.job(midnight + timedelta(minutes=2))
    assert [item.job_id for item in await ledger.reader.spend(GUILD, midnight, NOW)] == [job_id]


async def test_failover_counts_the_price_charged_not_the_reservation(ledger: Ledger) -> None:
    # Reserved at the dearest provider's $0.49, served for $0.28: the settle row is the charge, and the
    # release of the $0.21 difference is not spend (nor is it subtracted again).
    job_id = await ledger.job(NOW - timedelta(hours=1), cost=490_000, charged=280_000)
    totals = await ledger.store.ledger_totals(job_id)
    assert (totals.reserved, totals.settled, totals.released) == (490_000, 280_000, 210_000)

    items = await ledger.reader.spend(GUILD, NOW - timedelta(days=1), NOW)

    assert [item.settled_micros for item in items] == [280_000]
    assert await ledger.settled_sum(GUILD, NOW - timedelta(days=1), NOW) == 280_000


async def test_the_reader_refuses_naive_bounds(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.reader.spend(GUILD, datetime(2026, 11, 1), NOW)  # naive: the point of the test


# The reports built from those items.


def item(
    job_id: int = 1,
    *,
    user: int = 1,
    channel: int | None = 20,
    model: str = "hailuo-2.3",
    provider: str = "wavespeed",
    at: datetime = NOW - timedelta(hours=1),
    micros: int = 280_000,
) -> SpendItem:
    return SpendItem(job_id, user, channel, model, provider, at, micros)


def test_window_of_each_period() -> None:
    now = datetime(2026, 11, 23, 15, 30, 12, 345_678, tzinfo=UTC)
    until = datetime(2026, 11, 23, 15, 30, 12, 345_000, tzinfo=UTC)  # the ledger's millisecond
    assert window("today", now) == (datetime(2026, 11, 23, tzinfo=UTC), until)
    assert window("7d", now) == (until - timedelta(days=7), until)
    assert window("30d", now) == (datetime(2026, 10, 24, 15, 30, 12, 345_000, tzinfo=UTC), until)
    assert window("month", now) == (datetime(2026, 11, 1, tzinfo=UTC), until)
    # Another time zone's "now" is the same instant: windows are in UTC.
    assert window("today", now.astimezone(timezone(timedelta(hours=-8)))) == window("today", now)
    with pytest.raises(ValueError, match="unknown period"):
        window("week", now)
    with pytest.raises(ValueError, match="aware"):
        window("today", datetime(2026, 11, 23))


def test_rolling_windows_touch_one_calendar_day_more_than_their_length() -> None:
    assert len(days(*window("7d", NOW))) == 8
    assert len(days(*window("30d", NOW))) == 31
    assert days(*window("today", NOW)) == [NOW.date()]
    assert days(*window("today", NOW.replace(hour=0, minute=0))) == []  # midnight: an empty window


def test_aggregation_by_each_grouping() -> None:
    items = [
        item(1, user=7, channel=20, model="hailuo-02", provider="seaart", micros=100_000),
        item(2, user=7, channel=None, model="hailuo-2.3", provider="wavespeed", micros=490_000),
        item(3, user=8, channel=20, model="hailuo-2.3", provider="seaart", micros=280_000, at=NOW - timedelta(days=2)),
    ]

    def table(by: str) -> list[tuple[object, str, int, int]]:
        return [(row.key, row.label, row.jobs, row.total_micros) for row in aggregate(items, by)]

    assert table("user") == [(7, "7", 2, 590_000), (8, "8", 1, 280_000)]
    assert table("channel") == [(None, "(no channel)", 1, 490_000), (20, "20", 2, 380_000)]
    assert table("model") == [("hailuo-2.3", "hailuo-2.3", 2, 770_000), ("hailuo-02", "hailuo-02", 1, 100_000)]
    assert table("provider") == [("wavespeed", "wavespeed", 1, 490_000), ("seaart", "seaart", 2, 380_000)]
    assert table("day") == [
        ((NOW - timedelta(days=2)).date(), "2026-11-21", 1, 280_000),
        (NOW.date(), "2026-11-23", 2, 590_000),
    ]
    with pytest.raises(ValueError, match="unknown grouping"):
        aggregate(items, "guild")


def test_ties_are_ordered_by_jobs_then_label() -> None:
    items = [
        item(1, user=3, micros=200),
        item(2, user=2, micros=100),
        item(3, user=2, micros=100),
        item(4, user=1, micros=200),
    ]
    assert [row.key for row in aggregate(items, "user")] == [2, 1, 3]


def test_by_day_lists_every_day_of_the_window_in_order() -> None:
    span = window("7d", NOW)
    rows = aggregate([item(1, at=NOW - timedelta(days=3))], "day", span=span)
    assert [row.label for row in rows] == [f"2026-11-{day}" for day in range(16, 24)]
    assert [row.total_micros for row in rows] == [0, 0, 0, 0, 280_000, 0, 0, 0]


def table_lines(table: str) -> list[str]:
    lines = table.split("\n")
    assert lines[0] == "```" and lines[-1] == "```"
    return lines[1:-1]


def usd(text: str) -> int:
    return int(Decimal(text.removeprefix("$")) * 1_000_000)


def figures(line: str) -> tuple[int, int]:
    """(jobs, micros) of a table line."""
    fields = line.split()
    return int(fields[-3]), usd(fields[-2])


def test_the_table_fits_a_message_with_500_users_and_keeps_the_total_exact() -> None:
    items = [item(n, user=1_000_000_000_000_000 + n, micros=1_000 + 37 * n) for n in range(500)]
    rows = aggregate(items, "user")
    total = sum(i.settled_micros for i in items)

    table = render_table(rows, "user")

    assert len(table) <= TABLE_MAX_CHARS
    lines = table_lines(table)
    assert lines[0].split() == ["user", "jobs", "spend", "share"]
    shown, more, last = lines[2:-2], lines[-2], lines[-1]
    assert 20 < len(shown) < 500
    assert more.startswith(f"… and {500 - len(shown)} more")
    assert last.startswith("total") and figures(last) == (500, total)
    # The lines shown, with the "more" line, add up to the total line.
    assert sum(figures(line)[0] for line in [*shown, more]) == 500
    assert sum(figures(line)[1] for line in [*shown, more]) == total
    assert len({len(line) for line in lines}) == 1  # a monospace grid


def test_a_short_table_shows_every_row_and_an_empty_one_a_zero_total() -> None:
    rows = aggregate([item(1, model="hailuo-02", micros=123_456), item(2, micros=280_000)], "model")
    lines = table_lines(render_table(rows, "model"))
    assert [line.split()[0] for line in lines[2:]] == ["hailuo-2.3", "hailuo-02", "total"]
    assert lines[2].split()[-2:] == ["$0.28", "69.4%"]
    assert lines[3].split()[-2] == "$0.123456"  # sub-cent precision kept, as /quota shows it
    assert table_lines(render_table([], "user"))[-1].split() == ["total", "0", "$0.00", "-"]


def test_names_replace_labels_and_cannot_break_the_table_or_the_csv() -> None:
    rows = aggregate([item(1, user=7), item(2, user=8)], "user", names={7: '=HYPERLINK("x")\n```evil'})
    assert {row.key: row.label for row in rows} == {7: "=HYPERLINK(\"x\") '''evil", 8: "8"}
    assert "```" not in render_table(rows, "user")[3:-3]
    cells = list(csv.reader(io.StringIO(render_csv(rows, "user").decode())))
    # A spreadsheet shows the name and never runs it.
    assert sorted(cell[:2] for cell in cells[1:]) == [["7", "'=HYPERLINK(\"x\") '''evil"], ["8", "8"]]


def test_names_that_look_like_math_are_drawn_as_text() -> None:
    # matplotlib reads "$...$" as math by default, and fails on math it cannot parse.
    rows = aggregate([item(1, user=1), item(2, user=2)], "user", names={1: "$\\frac{$ broken", 2: "$x^2$"})
    png_image(render_png(rows, "$\\sqrt{$"))


def test_chart_bars_are_capped_with_an_other_bar_except_for_days() -> None:
    rows = aggregate([item(n, user=n, micros=1_000 * n) for n in range(1, 51)], "user")
    bars = chart_bars(rows)
    assert len(bars) == CHART_MAX_BARS
    assert bars[0] == ("50", 50_000)
    assert bars[-1] == ("other (31)", sum(1_000 * n for n in range(1, 32)))
    assert sum(micros for _, micros in bars) == sum(row.total_micros for row in rows)
    days_rows = aggregate([], "day", span=window("30d", NOW))
    assert len(chart_bars(days_rows)) == 31


def png_image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == CHART_SIZE
    image.verify()
    return image


@pytest.mark.parametrize("by", GROUPINGS)
def test_every_chart_is_a_png_of_the_chosen_size(by: str) -> None:
    items = [
        item(
            n,
            user=n % 30,
            channel=n % 3 or None,
            model=f"m{n % 4}",
            provider=f"p{n % 2}",
            at=NOW - timedelta(hours=7 * n),
            micros=10_000 * n,
        )
        for n in range(100)
    ]
    png_image(render_png(aggregate(items, by, span=window("30d", NOW)), f"by {by}"))


def test_an_empty_or_all_free_chart_still_draws() -> None:
    png_image(render_png([], "nothing"))
    png_image(render_png(aggregate([item(1, micros=0)], "provider"), "free"))
    png_image(render_png(aggregate([], "day", span=window("7d", NOW)), "no days"))


def test_a_report_refuses_items_outside_its_window() -> None:
    with pytest.raises(ValueError, match="outside"):
        build_report([item(1, at=NOW - timedelta(days=8))], "7d", "user", NOW)
    with pytest.raises(ValueError, match="unknown grouping"):
        build_report([], "7d", "guild", NOW)


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("by", GROUPINGS)
async def test_the_reports_csv_total_is_the_ledgers_settled_sum(ledger: Ledger, period: str, by: str) -> None:
    now = NOW.replace(day=3)  # "month" then covers less than "7d"
    for n in range(12):
        await ledger.job(
            now - timedelta(hours=13 * n + 1),
            user=n % 4,
            channel=n % 3 or None,
            model=f"hailuo-{n % 2}",
            provider=("wavespeed", "seaart", "minimax")[n % 3],
            cost=490_000,
            charged=(280_000, 190_000, 490_000, 0)[n % 4],
        )
    await ledger.job(now - timedelta(hours=2), cost=490_000, outcome="refund")
    await ledger.job(now - timedelta(hours=2), guild=11)

    report = await spend_report(ledger.reader, GUILD, period, by, now=now)

    expected = await ledger.settled_sum(GUILD, report.since, report.until)
    assert expected > 0
    assert (report.since, report.until) == window(period, now)
    assert report.total_micros == expected
    records = list(csv.DictReader(io.StringIO(report.csv.decode("utf-8"))))
    assert sum(int(record["spend_micros"]) for record in records) == expected
    assert sum(Decimal(record["spend_usd"]) for record in records) * 1_000_000 == expected
    assert sum(int(record["jobs"]) for record in records) == report.jobs
    assert len(records) == len(report.rows)
    assert figures(table_lines(report.table)[-1]) == (report.jobs, expected)
    png_image(report.png)
    assert report.filename == f"spend-{period}-by-{by}-2026-11-03"


async def test_a_report_uses_the_names_given_for_its_keys(ledger: Ledger) -> None:
    await ledger.job(NOW - timedelta(hours=1), user=7)
    await ledger.job(NOW - timedelta(hours=1), user=8)
    asked: list[object] = []

    def name_of(key: object) -> str | None:
        asked.append(key)
        return "Alice" if key == 7 else None

    report = await spend_report(ledger.reader, GUILD, "today", "user", now=NOW, name_of=name_of)

    assert sorted(asked, key=str) == [7, 8]  # once per key
    assert {row.key: row.label for row in report.rows} == {7: "Alice", 8: "8"}


async def test_a_bad_choice_fails_before_the_database_is_read() -> None:
    class Unread:
        async def spend(self, guild_id: int, since: datetime, until: datetime) -> list[SpendItem]:
            raise AssertionError("read")

    for period, by in (("week", "user"), ("today", "guild")):
        with pytest.raises(ValueError, match="unknown"):
            await spend_report(Unread(), GUILD, period, by, now=NOW)


def test_charts_draw_headless_with_an_unwritable_home_and_no_display(tmp_path: Path) -> None:
    # matplotlib keeps its font cache under $MPLCONFIGDIR or ~/.cache; when it cannot write there it
    # falls back to a temporary folder (once per process) and warns. A HOME below a plain file cannot
    # be created, even by root. The backend named in the environment is never loaded: no pyplot.
    (tmp_path / "file").write_text("")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "DISPLAY", "WAYLAND_DISPLAY"}
    }
    env |= {"HOME": str(tmp_path / "file" / "home"), "MPLBACKEND": "TkAgg"}
    script = (
        "import sys\n"
        "from services.spend import SpendRow, render_png\n"
        "assert 'matplotlib' not in sys.modules  # imported on first use, not at the bot's start\n"
        "for n in range(2):\n"
        "    sys.stdout.buffer.write(render_png([SpendRow(1, '1', 1, 280_000)], 'x')[:8])\n"
        "assert 'tkinter' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parents[1],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"\x89PNG\r\n\x1a\n" * 2
    assert done.stderr.count(b"temporary cache directory") == 1  # the fallback, taken once for the process
