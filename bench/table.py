"""The printed table: one column per level, one row per figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, Callable[[dict[str, Any]], str]]


def get(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def num(value: Any, digits: int = 1, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:,.{digits}f}"


def pair(level: dict[str, Any], a: str, b: str, digits: int = 2, scale: float = 1.0) -> str:
    return f"{num(get(level, a), digits, scale)} / {num(get(level, b), digits, scale)}"


def ratio(a: Any, b: Any) -> str:
    return "–" if not a or not b else f"{a / b:.2f}×"


def requests(level: dict[str, Any]) -> str:
    r = level["provider_requests_per_job"]
    return f"{r.get('submit', 0):.1f}+{r.get('poll', 0):.1f}+{r.get('download', 0):.1f} = {r.get('total', 0):.1f}"


def discord_requests(level: dict[str, Any]) -> str:
    r = level["discord_requests_per_job"]
    parts = [r.get(k, 0) for k in ("ack", "receipt_edit", "card_post", "card_edit", "clip_upload")]
    return f"{r.get('total', 0):.1f} ({'+'.join(f'{p:.1f}' for p in parts)})"


def bot_polls_real(level: dict[str, Any]) -> float | None:
    """The bot's polls per job at real durations: as run at ×1 (the replay models each job alone and
    leaves out the poll budget its jobs share, which binds at 1,000 jobs), else replayed."""
    if level["compression"] == 1:
        return get(level, "provider_requests_per_job.poll")
    return get(level, "projection.real.bot.polls_mean")


def projected(level: dict[str, Any], who: str) -> str:
    if who == "bot" and level["compression"] == 1:
        polls, p50, p99 = bot_polls_real(level), get(level, "notice_s.p50"), get(level, "notice_s.p99")
        return f"{num(polls)} req · {num(p50, 2)} / {num(p99, 2)} s (as run)"
    p = get(level, f"projection.real.{who}")
    if not p:
        return "–"
    return f"{p['polls_mean']:.1f} req · {p['notice_p50']:.2f} / {p['notice_p99']:.2f} s"


def speed(level: dict[str, Any]) -> str:
    c = level["compression"]
    return f"×{c:g} ({30 / c:g}–{90 / c:g} s)"


def steps(level: dict[str, Any]) -> str:
    s = level.get("delivery_steps_s") or {}
    names = ("notice_to_download", "download", "download_to_upload", "upload")
    return " + ".join(num(get(s, f"{n}.p50"), 2) for n in names)


def ack(level: dict[str, Any]) -> str:
    return f"{pair(level, 'ack_ms.p50', 'ack_ms.p99', 0)} / {num(get(level, 'ack_ms.max'), 0)}"


def ack_tail(level: dict[str, Any]) -> str:
    return num((get(level, "ack_ms.p99") or 0) - (get(level, "ack_ms.p50") or 0), 0)


def model_check(level: dict[str, Any]) -> str:
    modelled = f"{num(get(level, 'projection.compressed.bot.polls_mean'))} / "
    modelled += num(get(level, "projection.compressed.bot.notice_p50"), 2)
    measured = f"{num(get(level, 'provider_requests_per_job.poll'))} / {num(get(level, 'notice_s.p50'), 2)}"
    return f"{modelled} (measured {measured})"


def bench_process(level: dict[str, Any]) -> str:
    return f"{num(get(level, 'bench_loop_lag_ms.p99'), 0)} / {num(get(level, 'bench_cpu_utilisation'), 2)}"


def ledger_ok(level: dict[str, Any]) -> str:
    money = level["ledger"]
    return f"{money['outstanding_micros']} / {money['settled_micros'] == money['delivered_cost_micros']}"


def sdk_ratio(level: dict[str, Any]) -> str:
    return ratio(get(level, "provider_requests_per_job.total"), get(level, "sdk_twin.provider_requests_per_job"))


def real_ratio(level: dict[str, Any]) -> str:
    return ratio(bot_polls_real(level), get(level, "projection.real.sdk.polls_mean"))


def field(path: str, digits: int = 1) -> Callable[[dict[str, Any]], str]:
    return lambda level: num(get(level, path), digits)


def fields(a: str, b: str, digits: int = 2) -> Callable[[dict[str, Any]], str]:
    return lambda level: pair(level, a, b, digits)


def level_rows() -> list[Row]:
    return [
        ("provider time (30–90 s compressed)", speed),
        ("peak jobs in flight", lambda v: f"{v['peak_in_flight']}"),
        ("outcomes", lambda v: ", ".join(f"{k} {n}" for k, n in sorted(v["outcomes"].items()))),
        ("ack latency p50 / p99 / max (ms)", ack),
        ("  first burst (≤200 in 1 s) p99 (ms)", field("ack_first_burst_ms.p99", 0)),
        ("event-loop lag p99 / max (ms, heartbeat)", fields("loop_lag_ms.p99", "loop_lag_ms.max", 0)),
        ("  ack tail p99 − p50 (ms, proxy)", ack_tail),
        (
            "  as the bot logs it: worst p99 / max (ms)",
            fields("bot_reported_loop_lag_ms.p99_worst_window", "bot_reported_loop_lag_ms.max", 0),
        ),
        ("notice delay p50 / p99, bot (s, as run)", fields("notice_s.p50", "notice_s.p99")),
        ("notice delay p50 / p99, SDK loop (s, as run)", fields("sdk_twin.notice_s.p50", "sdk_twin.notice_s.p99")),
        ("provider req/job, bot (submit+poll+dl)", requests),
        ("provider req/job, SDK loop", field("sdk_twin.provider_requests_per_job")),
        ("  bot ÷ SDK (as run)", sdk_ratio),
        ("at real durations (replayed): the bot", lambda v: projected(v, "bot")),
        ("  SDK loop", lambda v: projected(v, "sdk")),
        ("  PollSchedule", lambda v: projected(v, "schedule")),
        ("  previous backoff (1 s ×1.5 → 5 s)", lambda v: projected(v, "backoff")),
        ("  bot ÷ SDK polls", real_ratio),
        ("  model check as run: bot polls / p50", model_check),
        ("Discord req/job (ack+receipt+card+edits+clip)", discord_requests),
        ("overhead done→posted − transfer p50 / p99 (s)", fields("overhead_s.p50", "overhead_s.p99")),
        (
            "  of which after the bot noticed p50 / p99",
            fields("overhead_after_notice_s.p50", "overhead_after_notice_s.p99"),
        ),
        ("  transfer (download + upload) p50 (s)", field("transfer_s.p50", 2)),
        ("  steps p50: notice→dl + dl + dl→upload + upload", steps),
        ("  deliveries at once (max)", lambda v: f"{v.get('max_concurrent_deliveries', '–')}"),
        ("RSS idle / peak (MiB)", fields("process.rss_idle_mib", "process.rss_peak_mib", 0)),
        ("  RSS per job in flight (KiB)", field("process.rss_per_job_in_flight_kib", 0)),
        ("  RSS added by deliveries (MiB)", field("process.rss_delivery_growth_mib", 0)),
        ("CPU s/job: bot / ffmpeg children", fields("process.cpu_s_per_job", "process.children_cpu_s_per_job", 3)),
        ("  bot CPU use while active (cores)", field("process.cpu_utilisation", 2)),
        ("bench process: loop lag p99 (ms) / CPU (cores)", bench_process),
        ("ledger: outstanding µ$ / settled = delivered", ledger_ok),
        ("load average before (1/5/15 min)", lambda v: "/".join(f"{x:.1f}" for x in v["load_average_before"])),
        ("wall time (s)", field("wall_seconds")),
    ]


def grid(title: str, columns: list[dict[str, Any]], rows: list[Row]) -> str:
    header = [title, *[str(col.get("label", "")) for col in columns]]
    body = [[label, *[safe(fn, col) for col in columns]] for label, fn in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded)

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)])


def safe(fn: Callable[[dict[str, Any]], str], level: dict[str, Any]) -> str:
    try:
        return fn(level)
    except (KeyError, TypeError, ZeroDivisionError):
        return "–"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"hailuo-bot benchmark · {results['started_at']} · {m['cpus']} × {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Python {m['python']} · bot polling model: {results['bot_polling']}",
        "",
    ]
    columns = results["levels"] + results["extras"]
    if columns:
        out.append(grid("figure", columns, level_rows()))
    ledger = results.get("ledger")
    if ledger:
        out += [
            "",
            f"ledger: {ledger['attempts']} reservations by {ledger['users']} members at once on "
            f"{ledger.get('backend', 'sqlite')} ({ledger.get('writers', 1)} writer(s), "
            f"{ledger.get('locking', 'one writer')}): {ledger['attempts_per_s']:,.0f}/s "
            f"({ledger['admitted']} admitted, {ledger['refused']} refused by quota), "
            f"spent ${ledger['spent_usd']:.2f} of a ${ledger['limit_usd']:.2f} cap, "
            f"overspend {ledger['overspend_micros']} µ$",
        ]
    return "\n".join(out)
