"""Spend reports for `/admin spend`: a period's window, totals per user, channel, model, provider or
day, and three renderings of them: a text table for the message, a CSV and a PNG bar chart.

Spend is what the ledger's settle rows say (see core.reports), placed by the settle row's time in UTC.
Money stays in integer micro-dollars from the ledger to the CSV, whose micro-dollar column therefore
sums to exactly the settled total of the window; its dollar column is written from those integers,
never through a float. Only the chart's bar lengths are floats.

Drawing the chart is CPU work (tens of milliseconds, about a second more for matplotlib's first import
in a process): call `spend_report`, which renders in a worker thread, or run `build_report` through
`asyncio.to_thread`; never call `build_report` or `render_png` on the event loop.

Language: the title and the table are for the admin who asked, in their language: `say` (given by the
Discord layer) renders each `Text`, and the table pads by display width, so Chinese headings keep the
grid. The CSV stays English (a machine-readable header), and so does the chart: matplotlib ships no CJK
font, so Chinese there would be boxes.
"""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate

from core.clock import utcnow
from core.reports import SpendItem, SpendReader
from core.text import N_, Text, tr
from services.pricing import format_usd

PERIODS = ("today", "7d", "30d", "month")
GROUPINGS = ("user", "channel", "model", "provider", "day")
PERIOD_WORDS = {
    "today": N_("today"),
    "7d": N_("the last 7 days"),
    "30d": N_("the last 30 days"),
    "month": N_("this month"),
}
BY_WORDS = {
    "user": N_("user"),
    "channel": N_("channel"),
    "model": N_("model"),
    "provider": N_("provider"),
    "day": N_("day"),
}
NO_CHANNEL = N_("(no channel)")
Say = Callable[[str], str]  # renders a Text in the reader's language (str: English)

# What a row totals: a user id, a channel id (None: jobs started outside a channel), a model, a
# provider, or a UTC date.
SpendKey = int | str | date | None

TABLE_MAX_CHARS = 1900  # a Discord message holds 2,000: room for a heading line above the table
LABEL_MAX_CHARS = 24  # wider labels are cut in the table (the CSV keeps them whole)
CHART_SIZE = (1000, 500)  # pixels
CHART_DPI = 100
CHART_MAX_BARS = 20  # past this, the smallest are one "other" bar (not for days: a time axis keeps every day)


@dataclass(frozen=True)
class SpendRow:
    key: SpendKey
    label: str  # plain text, one line: the key as text, or the name the caller gave for it
    jobs: int
    total_micros: int


@dataclass(frozen=True)
class SpendReport:
    period: str
    by: str
    since: datetime
    until: datetime  # exclusive
    title: Text  # e.g. "Spend by user, the last 7 days (2026-11-16 15:30 to 2026-11-23 15:30 UTC): $12.34"
    total_micros: int  # the settle rows' sum over [since, until)
    jobs: int
    rows: list[SpendRow]  # every key, not only those the table or chart shows
    table: str  # a ``` block of at most TABLE_MAX_CHARS characters, in the language `say` gave
    csv: bytes  # UTF-8
    png: bytes
    filename: str  # a stem for the attachments, e.g. "spend-7d-by-user-2026-11-23"


def window(period: str, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) of a period ending at `now` (aware), in UTC, to the millisecond like the ledger.

    today: since 00:00 UTC today. 7d, 30d: the 7 or 30 days (168 or 720 hours) up to now, so they reach
    into an eighth or 31st calendar day. month: since 00:00 UTC on the 1st of this month."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    until = now.astimezone(UTC)
    # The ledger stores milliseconds: a finer bound would exclude a row stamped in its own millisecond.
    until = until.replace(microsecond=until.microsecond - until.microsecond % 1000)
    midnight = until.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "today":
        since = midnight
    elif period == "7d":
        since = until - timedelta(days=7)
    elif period == "30d":
        since = until - timedelta(days=30)
    elif period == "month":
        since = midnight.replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}: one of {', '.join(PERIODS)}")
    return since, until


def days(since: datetime, until: datetime) -> list[date]:
    """Every UTC date that [since, until) touches, in order."""
    if until <= since:
        return []
    first, last = since.astimezone(UTC).date(), (until - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def check(period: str, by: str) -> None:
    """ValueError naming the choices, for a period or grouping that is not one."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}: one of {', '.join(PERIODS)}")
    _check_grouping(by)


def _check_grouping(by: str) -> None:
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")


def key_of(item: SpendItem, by: str) -> SpendKey:
    if by == "user":
        return item.user_id
    if by == "channel":
        return item.channel_id
    if by == "model":
        return item.model
    if by == "provider":
        return item.provider
    if by == "day":
        return item.settled_at.astimezone(UTC).date()
    _check_grouping(by)
    raise AssertionError("unreachable")


def aggregate(
    items: Iterable[SpendItem],
    by: str,
    *,
    span: tuple[datetime, datetime] | None = None,
    names: Mapping[SpendKey, str] | None = None,
) -> list[SpendRow]:
    """One row per key, the largest total first (then most jobs, then by label).

    By day, the rows are in date order instead, and with `span` every day of the window is there, at
    zero when nothing was settled that day: a gap in spending shows as a gap. `names` replaces the
    labels of the keys it has (member or channel names the caller resolved)."""
    _check_grouping(by)
    jobs: dict[SpendKey, int] = {}
    totals: dict[SpendKey, int] = {}
    if by == "day" and span is not None:
        for day in days(*span):
            jobs[day], totals[day] = 0, 0
    for item in items:
        key = key_of(item, by)
        jobs[key] = jobs.get(key, 0) + 1
        totals[key] = totals.get(key, 0) + item.settled_micros
    rows = [SpendRow(key, _label(key, names), jobs[key], totals[key]) for key in jobs]
    if by == "day":
        return sorted(rows, key=lambda row: row.key.toordinal() if isinstance(row.key, date) else 0)
    return sorted(rows, key=lambda row: (-row.total_micros, -row.jobs, row.label))


def _label(key: SpendKey, names: Mapping[SpendKey, str] | None) -> str:
    if names and key in names:
        # A display name is the member's text: one line, and no backtick that could close the table's block.
        return " ".join(names[key].split()).replace("`", "'") or str(key)
    if key is None:
        return NO_CHANNEL
    return key.isoformat() if isinstance(key, date) else str(key)


def cells(text: str) -> int:
    """How many monospace cells `text` takes: CJK (wide) characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _cut(text: str, width: int) -> str:
    """`text` within `width` cells, ending in "…" when cut."""
    if cells(text) <= width:
        return text
    while text and cells(text) > width - 1:
        text = text[:-1]
    return text + "…"


def _pad(text: str, width: int, right: bool = False) -> str:
    space = " " * max(width - cells(text), 0)
    return space + text if right else text + space


def render_table(rows: Sequence[SpendRow], by: str, *, max_chars: int = TABLE_MAX_CHARS, say: Say = str) -> str:
    """A monospace table in a ``` block of at most `max_chars` characters, its words in the language of
    `say` (English by default), padded by display width.

    Rows that do not fit are summed into one "… and N more" line, so the shown lines still add up to
    the total line, which is always exact."""
    total_jobs, total_micros = sum(row.jobs for row in rows), sum(row.total_micros for row in rows)
    heading, total_word = say(tr(BY_WORDS[by])) if by in BY_WORDS else by, say(tr("total"))
    jobs_word, spend_word, share_word = say(tr("jobs")), say(tr("spend")), say(tr("share"))

    def share(micros: int) -> str:
        return f"{100 * micros / total_micros:.1f}%" if total_micros else "-"

    def more(count: int) -> str:
        return say(tr("… and {count} more", count=count))

    def label_of(row: SpendRow) -> str:
        if row.key is None and row.label == NO_CHANNEL:  # ours to translate; a name is the member's
            return say(tr(NO_CHANNEL))
        return row.label

    more_label = more(len(rows))  # the longest a "more" line's label can be: never cut
    widest = max([cells(heading), cells(total_word)] + [cells(label_of(row)) for row in rows])
    width = max(min(widest, LABEL_MAX_CHARS), cells(more_label))
    jobs_width = max(cells(jobs_word), len(str(total_jobs)))
    # Sub-cent amounts print longer ("$0.123456"), so a smaller sum can be wider than the total: size
    # the column for every row and every sum a "more" line could show.
    rest_sums = list(accumulate(row.total_micros for row in reversed(rows)))
    usd_width = max(len(format_usd(micros)) for micros in [*rest_sums, *(row.total_micros for row in rows), 0])
    usd_width = max(usd_width, cells(spend_word))
    share_width = max(6, cells(share_word))

    def line(label: str, jobs: str, spend: str, part: str) -> str:
        label = _pad(_cut(label, width), width)
        figures = (_pad(jobs, jobs_width, True), _pad(spend, usd_width, True), _pad(part, share_width, True))
        return "  ".join((label, *figures))

    def entry(label: str, jobs: int, micros: int) -> str:
        return line(label, str(jobs), format_usd(micros), share(micros))

    head = [line(heading, jobs_word, spend_word, share_word), "-" * len(line("", "", "", ""))]
    foot = [entry(total_word, total_jobs, total_micros)]

    def assemble(shown: int) -> str:
        body = [entry(label_of(row), row.jobs, row.total_micros) for row in rows[:shown]]
        rest = rows[shown:]
        if rest:
            label = more(len(rest))
            body.append(entry(label, sum(row.jobs for row in rest), sum(row.total_micros for row in rest)))
        return "```\n" + "\n".join(head + body + foot) + "\n```"

    table = assemble(len(rows))
    if len(table) <= max_chars:
        return table
    # Every line has the same width, so how many rows fit beside the "more" line is a division; the
    # loop only guards that (it never runs for tables of this layout).
    shown = max((max_chars - len(assemble(0))) // (len(head[1]) + 1), 0)
    while shown > 0 and len(assemble(shown)) > max_chars:
        shown -= 1
    return assemble(shown)


def render_csv(rows: Sequence[SpendRow], by: str) -> bytes:
    """One line per key under a header: the key, its label, jobs, spend in micro-dollars (these sum to
    the ledger's settled total) and in dollars with six decimals, written from the integers. No total
    line: summing a column gives it, and a total line would count everything twice."""
    _check_grouping(by)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_KEY_COLUMNS[by], "label", "jobs", "spend_micros", "spend_usd"])
    for row in rows:
        key = "" if row.key is None else row.key.isoformat() if isinstance(row.key, date) else str(row.key)
        writer.writerow([_cell(key), _cell(row.label), row.jobs, row.total_micros, _dollars(row.total_micros)])
    return out.getvalue().encode("utf-8")


_KEY_COLUMNS = {"user": "user_id", "channel": "channel_id", "model": "model", "provider": "provider", "day": "day"}


def _dollars(micros: int) -> str:
    """Exact: 280000 -> '0.280000'."""
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    return f"{sign}{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _cell(text: str) -> str:
    # A spreadsheet runs a cell that starts like a formula; a member's display name could be one.
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def chart_bars(rows: Sequence[SpendRow]) -> list[tuple[str, int]]:
    """(label, micros) of each bar: every day of a day series, else the largest CHART_MAX_BARS - 1 keys
    and one "other" bar for the rest (rows come largest first from `aggregate`)."""
    bars = [(row.label, row.total_micros) for row in rows]
    if _is_series(rows) or len(bars) <= CHART_MAX_BARS:
        return bars
    keep, rest = bars[: CHART_MAX_BARS - 1], bars[CHART_MAX_BARS - 1 :]
    return [*keep, (f"other ({len(rest)})", sum(micros for _, micros in rest))]


def _is_series(rows: Sequence[SpendRow]) -> bool:
    return bool(rows) and all(isinstance(row.key, date) for row in rows)


# matplotlib promises only that separate figures in separate threads "generally" work, and its font
# cache and text engine are shared: reports are rare, so drawing one at a time costs nothing.
_DRAWING = threading.Lock()


def render_png(rows: Sequence[SpendRow], title: str) -> bytes:
    """A CHART_SIZE bar chart as PNG bytes: horizontal bars, largest on top, or one column per day for
    a day series. Headless: the object-oriented Figure with the Agg canvas, no pyplot and no global
    backend. CPU work: run it in a worker thread."""
    # Imported here, not at the top: matplotlib's import (and its font cache, built on first use in a
    # process) would otherwise slow every start of the bot, which may never draw a chart.
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    bars = chart_bars(rows)
    labels = [_short(label, 28) for label, _ in bars]
    dollars = [micros / 1_000_000 for _, micros in bars]  # floats only to size the bars
    top = max(dollars, default=0) or 1.0  # all zero: an axis of $0 to $1 rather than a degenerate one
    places = 2 if top >= 0.1 else 6  # sub-cent totals (tests, free tiers) would show ticks of $0.00
    money = FuncFormatter(lambda value, _: f"${value:,.{places}f}")
    # Labels are members' text: matplotlib would read "$...$" in one as math (and fail on bad math).
    # rc_context changes matplotlib's global settings for the drawing, which the lock keeps to itself.
    with _DRAWING, rc_context({"text.parse_math": False, "text.usetex": False}):
        figure = Figure(figsize=(CHART_SIZE[0] / CHART_DPI, CHART_SIZE[1] / CHART_DPI), dpi=CHART_DPI)
        figure.set_layout_engine("constrained")
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.set_title(title, fontsize=11)
        if not bars:
            axes.set_axis_off()
            axes.text(0.5, 0.5, "No settled spend in this period", ha="center", va="center", fontsize=14)
        elif _is_series(rows):
            positions = list(range(len(bars)))
            columns = axes.bar(positions, dollars, color="#5865f2")
            ticks = [row.key.strftime("%m-%d") if isinstance(row.key, date) else row.label for row in rows]
            axes.set_xticks(positions, ticks, fontsize=8, rotation=45 if len(bars) > 10 else 0)
            axes.set_ylim(0, top * 1.15)
            axes.yaxis.set_major_formatter(money)
            if len(bars) <= 10:  # more labels would overlap
                axes.bar_label(columns, [format_usd(micros) for _, micros in bars], padding=2, fontsize=8)
        else:
            positions = list(range(len(bars)))
            columns = axes.barh(positions, dollars, color="#5865f2")
            axes.set_yticks(positions, labels, fontsize=8 if len(bars) > 12 else 10)
            axes.invert_yaxis()  # the largest on top
            axes.set_xlim(0, top * 1.2)  # room for the amounts past the longest bar
            axes.xaxis.set_major_formatter(money)
            axes.bar_label(columns, [format_usd(micros) for _, micros in bars], padding=3, fontsize=8)
        out = io.BytesIO()
        canvas.print_png(out)
    return out.getvalue()


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_report(
    items: Iterable[SpendItem],
    period: str,
    by: str,
    now: datetime,
    *,
    names: Mapping[SpendKey, str] | None = None,
    say: Say = str,
) -> SpendReport:
    """Everything `/admin spend` shows, from the items a `SpendReader` returned for `window(period,
    now)`. An item outside that window is a reader's bug and raises ValueError rather than being
    dropped or counted. CPU work (the chart): run it in a worker thread, as `spend_report` does."""
    check(period, by)
    since, until = window(period, now)
    items = list(items)
    stray = [item.job_id for item in items if not since <= item.settled_at < until]
    if stray:
        raise ValueError(f"jobs settled outside {since.isoformat()} .. {until.isoformat()}: {stray[:10]}")
    rows = aggregate(items, by, span=(since, until), names=names)
    total = sum(item.settled_micros for item in items)
    stamp = "%Y-%m-%d %H:%M"
    title = tr(
        "Spend by {by}, {period} ({since} to {until} UTC): {total}",
        by=tr(BY_WORDS[by]),
        period=tr(PERIOD_WORDS[period]),
        since=since.strftime(stamp),
        until=until.strftime(stamp),
        total=format_usd(total),
    )
    return SpendReport(
        period=period,
        by=by,
        since=since,
        until=until,
        title=title,
        total_micros=total,
        jobs=len(items),
        rows=rows,
        table=render_table(rows, by, say=say),
        csv=render_csv(rows, by),
        png=render_png(rows, str(title)),  # English: no CJK font for the chart
        filename=f"spend-{period}-by-{by}-{until.date().isoformat()}",
    )


async def spend_report(
    reader: SpendReader,
    guild_id: int,
    period: str,
    by: str,
    *,
    now: datetime | None = None,
    name_of: Callable[[SpendKey], str | None] | None = None,
    say: Say = str,
) -> SpendReport:
    """The report of one server: reads its settled jobs, then renders in a worker thread.

    `name_of` (optional) gives a key's display name, e.g. a member's or a channel's from the client's
    cache; it is called here, on the event loop, once per key, and None keeps the key's plain label.
    `say` renders the title's and the table's words in the admin's language (called in the worker thread:
    it must only read the message catalogue)."""
    check(period, by)  # before the database is read
    now = now or utcnow()
    since, until = window(period, now)
    items = await reader.spend(guild_id, since, until)
    names: dict[SpendKey, str] = {}
    if name_of is not None:
        for key in {key_of(item, by) for item in items}:
            name = name_of(key)
            if name:
                names[key] = name
    return await asyncio.to_thread(build_report, items, period, by, now, names=names, say=say)
