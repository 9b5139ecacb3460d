"""The workers benchmark's printed tables (markdown): one row per level, throughput ratios, the ledger."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.table import get, num

Column = tuple[str, Callable[[dict[str, Any]], str]]


def level_name(level: dict[str, Any]) -> str:
    mode = "callbacks" if level["callbacks"] else "polling"
    return f"{level['workers']} × {level['jobs']:,} ({mode})"


def cpu(level: dict[str, Any]) -> str:
    per_job = get(level, "processes.cpu_s_per_job") or {}
    bot = " + ".join(num(per_job.get(role), 3) for role in ("gateway", "workers", "ffmpeg"))
    rest = f"PostgreSQL {num(per_job.get('postgresql'), 3)}, stand-ins {num(per_job.get('stand-ins'), 3)}"
    return f"{num(get(level, 'processes.bot_cpu_s_per_job'), 3)} = {bot}; {rest}"


def cores(level: dict[str, Any], window: str = "cores_busy") -> str:
    busy = get(level, f"processes.{window}") or {}
    ours = sum(v for role, v in busy.items() if v is not None and role != "machine")
    parts = [num(busy.get(role), 2) for role in ("gateway", "workers", "ffmpeg", "postgresql", "stand-ins")]
    return f"{ours:.2f} ({' / '.join(parts)}) of {num(busy.get('machine'), 2)}"


def outcome(level: dict[str, Any]) -> str:
    return f"{level['delivered']:,} / {level['refunded']} / {level['lost']}"


def rss(level: dict[str, Any]) -> str:
    worker, gateway = get(level, "processes.peak_rss_worker_mib"), get(level, "processes.peak_rss_gateway_mib")
    return f"{num(worker, 0)} / {num(gateway, 0)}"


def notice(level: dict[str, Any]) -> str:
    return f"{num(get(level, 'notice_s.p50'), 2)} / {num(get(level, 'notice_s.p99'), 2)}"


def ack(level: dict[str, Any]) -> str:
    return f"{num(get(level, 'ack_ms.p50'), 0)} / {num(get(level, 'ack_ms.p99'), 0)}"


def rates(level: dict[str, Any]) -> str:
    return f"{num(level.get('jobs_per_s'))} / {num(level.get('drain_jobs_per_s'))}"


def ledger(level: dict[str, Any]) -> str:
    money = level["ledger"]
    return "yes" if money["balanced"] else f"NO (outstanding {money['outstanding_micros']} µ$)"


def load(level: dict[str, Any]) -> str:
    return "/".join(f"{x:.1f}" for x in level["load_average_before"])


COLUMNS: list[Column] = [
    ("level: workers × jobs", level_name),
    ("at the provider at once", lambda v: f"{v['peak_at_provider']:,}"),
    ("delivered / refunded / lost", outcome),
    ("jobs/s: first command → last delivered / first end → last delivered", rates),
    ("notice p50 / p99 (s)", notice),
    ("ack p50 / p99 (ms)", ack),
    ("CPU s/job: bot = gateway + workers + ffmpeg; beside it", cpu),
    ("cores busy, whole level: ours (gateway / workers / ffmpeg / PostgreSQL / stand-ins) of the machine's", cores),
    ("cores busy while delivering (first end → last)", lambda v: cores(v, "drain_cores_busy")),
    ("peak RSS (MiB): per worker / gateway", rss),
    ("reservations/s (gateway, as commands came)", lambda v: num(v.get("reservations_per_s"), 0)),
    ("ledger balanced", ledger),
    ("load before (1/5/15 min)", load),
]


def markdown(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def safe(fn: Callable[[dict[str, Any]], str], level: dict[str, Any]) -> str:
    try:
        return fn(level)
    except (KeyError, TypeError, ZeroDivisionError):
        return "–"


def ratios(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput with 2 and 4 workers over 1 worker, per job count (callbacks levels only)."""
    by_key = {(v["workers"], v["jobs"]): v for v in levels if v["callbacks"]}
    out = []
    for jobs in sorted({n for _, n in by_key}):
        one = by_key.get((1, jobs))
        if one is None:
            continue
        row: dict[str, Any] = {"jobs": jobs}
        for workers in (2, 4):
            other = by_key.get((workers, jobs))
            for figure in ("jobs_per_s", "drain_jobs_per_s"):
                a, b = (other or {}).get(figure), one.get(figure)
                row[f"{workers}w/1w {figure}"] = a / b if a and b else None
        out.append(row)
    return out


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"hailuo-bot workers benchmark · {results['started_at']} · {m['cpus']} × {m['cpu_model']}, "
        f"{m['memory_gib']} GiB, Python {m['python']} · PostgreSQL from {results['postgresql']} · "
        f"provider time 30–90 s ÷ {results['compression']:g} after the release · clips {results['clip_bytes']:,} B",
        "",
        markdown([[safe(fn, v) for _, fn in COLUMNS] for v in results["levels"]], [name for name, _ in COLUMNS]),
    ]
    if results.get("ratios"):
        header = ["jobs", "2w/1w jobs/s", "4w/1w jobs/s", "2w/1w drain", "4w/1w drain"]
        keys = ["2w/1w jobs_per_s", "4w/1w jobs_per_s", "2w/1w drain_jobs_per_s", "4w/1w drain_jobs_per_s"]
        rows = [[f"{r['jobs']:,}", *(f"{r[k]:.2f}×" if r.get(k) else "–" for k in keys)] for r in results["ratios"]]
        out += ["", markdown(rows, header)]
    if results.get("ledger"):
        header = ["ledger backend", "writers", "reservations/s", "admitted", "refused", "overspend (µ$)"]
        rows = [
            [r["backend"], str(r["writers"]), f"{r['attempts_per_s']:,.0f}", f"{r['admitted']:,}",
             f"{r['refused']:,}", str(r["overspend_micros"])]
            for r in results["ledger"]
        ]  # fmt: skip
        out += ["", markdown(rows, header)]
    return "\n".join(out)
