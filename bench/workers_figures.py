"""The figures of one workers level (bench/workers_level.py), from the stand-ins' records, /proc and the
database."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any

from bench import counting
from bench.level import LAG_LINE
from bench.stats import summary
from bench.workers_level import TERMINAL, LevelRun, Snapshot, kept_log

MIB_PER_KIB = 1 / 1024
STARTED_JOB = re.compile(r"Starting job hailuo\.run_job\[\d+\]\(job_id=(\d+)\)")


def collect(run: LevelRun) -> dict[str, Any]:
    n = len(run.jobs)
    delivered = [row for row in run.rows if row["status"] == "delivered"]
    tasks = list(run.wavespeed.tasks.values())
    ends = [t.completed_at for t in tasks if t.completed_at is not None]
    upload_ends = [transfer.ended for transfer in run.discord.uploads]
    last_delivered = max(upload_ends, default=run.at.finished)
    window = last_delivered - run.at.first_command
    drain = last_delivered - min(ends, default=last_delivered)
    provider = counting.provider_requests(run.wavespeed)
    spread, extra_tasks = _jobs_per_worker(run)
    with_job = {row["interaction_id"] for row in run.rows}
    refusals = Counter(_refusal(it) for it in run.sent.values() if it.id not in with_job)
    unanswered = refusals.pop(None, 0)
    return {
        "label": run.cfg.label,
        "workers": run.cfg.workers,
        "jobs": n,
        "compression": run.cfg.compression,
        "callbacks": run.cfg.callbacks,
        "outcomes": dict(Counter(row["status"] for row in run.rows)),
        "delivered": len(delivered),
        "refunded": sum(1 for row in run.rows if row["status"] in ("failed", "cancelled")),
        # Commands refused at intake (the member was told why, nothing was charged), by reply.
        "refused": sum(refusals.values()),
        "refusals": dict(refusals),
        # A command that never became a job and got no answer, or a job that never ended: both lost.
        "lost": unanswered + sum(1 for row in run.rows if row["status"] not in TERMINAL),
        "incomplete": run.incomplete,
        "peak_at_provider": counting.max_overlap(
            [(t.submitted_at, t.completed_at) for t in tasks if t.completed_at is not None]
        ),
        "submitted": len(tasks),
        "seconds": {
            "sending": round(run.at.last_command - run.at.first_command, 2),
            "to_release": round((run.at.released or run.at.finished) - run.at.first_command, 2),
            "first_command_to_last_delivered": round(window, 2),
            "first_end_to_last_delivered": round(drain, 2),
            "wall": round(run.wall_s, 1),
        },
        "jobs_per_s": len(delivered) / window if window > 0 else None,
        "drain_jobs_per_s": len(delivered) / drain if drain > 0 else None,
        "reservations_per_s": _reservation_rate(run.rows),
        "ack_ms": summary(_acks_ms(run)),
        "notice_s": summary(
            t.terminal_seen_at - t.completed_at
            for t in tasks
            if t.completed_at is not None and t.terminal_seen_at is not None
        ),
        "callbacks_answered": dict(Counter(str(d.status) for d in run.wavespeed.webhook_deliveries)),
        "provider_requests_per_job": {k: v / n for k, v in provider.items()} if n else {},
        "processes": _process_figures(run),
        "jobs_per_worker": spread,
        "extra_tasks": extra_tasks,
        "loop_lag_ms": _reported_lag(run),
        "ledger": _ledger_check(run, delivered),
        "exit_codes": run.exit_codes,
    }


def _refusal(interaction: Any) -> str | None:
    """What a command that made no job was answered (its first words), "missed the ack deadline", or None."""
    if interaction.dead:
        return "missed the 3 s ack deadline"
    texts = [_text(m) for m in (interaction.original(), *interaction.followups) if m is not None]
    texts = [text for text in texts if text]
    return texts[-1][:80] if texts else None


def _text(message: Any) -> str:
    embed = message.embeds[0] if message.embeds else {}
    return str(message.content or embed.get("description") or embed.get("title") or "")


def _acks_ms(run: LevelRun) -> list[float]:
    acked = run.discord.acked_at
    return [(acked[it.id] - it.created) * 1000 for it in run.sent.values() if it.id in acked]


def _reservation_rate(rows: list[dict[str, Any]]) -> float | None:
    """Jobs reserved per second by the gateway, first reservation to last (bounded by the commands' pace)."""
    times = sorted(datetime.fromisoformat(str(row["created_at"]).replace("Z", "+00:00")) for row in rows)
    if len(times) < 2:
        return None
    span = (times[-1] - times[0]).total_seconds()
    return (len(times) - 1) / span if span > 0 else None


def _process_figures(run: LevelRun) -> dict[str, Any]:
    """CPU seconds per role (over the load: first command to last job ended) and peak RSS per process; and
    the cores each role kept busy, over the load and over the drain (first task end to the last job ended),
    beside what every process on the machine used (other work on it included)."""
    start, drain, end = run.start, run.drain, run.end
    if start is None or end is None:
        return {}
    n = max(len(run.jobs), 1)
    per_process = {
        name: {
            "cpu_s": _delta(start, end, name, "cpu_s"),
            "ffmpeg_cpu_s": _delta(start, end, name, "children_cpu_s"),
            "peak_rss_mib": sample.peak_rss_kib * MIB_PER_KIB if sample else None,
            "rss_at_end_mib": sample.rss_kib * MIB_PER_KIB if sample else None,
        }
        for name, sample in end.procs.items()
    }
    roles = _role_cpu(start, end)
    workers = [v for k, v in per_process.items() if k.startswith("worker")]
    return {
        "per_process": per_process,
        "cpu_s_per_job": {role: (cpu / n if cpu is not None else None) for role, cpu in roles.items()},
        "bot_cpu_s_per_job": sum(roles[r] or 0.0 for r in ("gateway", "workers", "ffmpeg")) / n,
        "cores_busy": _cores(start, end),
        "drain_cores_busy": _cores(drain, end) if drain is not None else None,
        "peak_rss_worker_mib": max((w["peak_rss_mib"] or 0.0 for w in workers), default=None),
        "peak_rss_gateway_mib": per_process.get("gateway", {}).get("peak_rss_mib"),
        "active_seconds": end.at - start.at,
    }


def _role_cpu(a: Snapshot, b: Snapshot) -> dict[str, float | None]:
    """CPU seconds between two snapshots: the gateway, the workers, their ffmpeg children, PostgreSQL, this
    process (the stand-ins), and every process on the machine."""
    names = list(b.procs)
    workers = [_delta(a, b, name, "cpu_s") for name in names if name.startswith("worker")]
    return {
        "gateway": _delta(a, b, "gateway", "cpu_s"),
        "workers": sum(w or 0.0 for w in workers),
        "ffmpeg": sum(_delta(a, b, name, "children_cpu_s") or 0.0 for name in names),
        "postgresql": b.pg_cpu_s - a.pg_cpu_s if a.pg_cpu_s is not None and b.pg_cpu_s is not None else None,
        "stand-ins": b.own.cpu_s - a.own.cpu_s if a.own and b.own else None,
        "machine": b.machine_s - a.machine_s,
    }


def _cores(a: Snapshot, b: Snapshot) -> dict[str, float | None]:
    span = max(b.at - a.at, 1e-9)
    return {role: (cpu / span if cpu is not None else None) for role, cpu in _role_cpu(a, b).items()}


def _delta(a: Snapshot, b: Snapshot, name: str, figure: str) -> float | None:
    first, last = a.procs.get(name), b.procs.get(name)
    return float(getattr(last, figure) - getattr(first, figure)) if first and last else None


def _jobs_per_worker(run: LevelRun) -> tuple[dict[str, int], int]:
    """How the engine spread the jobs: the jobs each worker started a task for (procrastinate logs a line
    per task); and the tasks started for a job that had had one already (a worker's round for unfinished
    jobs without a task hands over one that ended while it looked: the copy finds it ended)."""
    counts, started = {}, []
    for worker in run.workers:
        name = worker.log_path.stem.replace("-", " ")  # worker-1.log -> "worker 1"
        ids = STARTED_JOB.findall(_log_text(run, worker.log_path.name))
        counts[name] = len(set(ids))
        started += ids
    return counts, len(started) - len(set(started))


def _reported_lag(run: LevelRun) -> dict[str, Any]:
    """Each process's own event-loop lag lines (every 5 s): the worst window's p99 and the max."""
    figures = {}
    for name, proc in run.processes.items():
        text = _log_text(run, proc.log_path.name)
        windows = [tuple(map(float, m.groups())) for m in LAG_LINE.finditer(text)]
        if windows:
            figures[name] = {"p99_worst_window": max(w[1] for w in windows), "max": max(w[2] for w in windows)}
    return figures


def _log_text(run: LevelRun, name: str) -> str:
    try:
        return kept_log(run.cfg, name).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _ledger_check(run: LevelRun, delivered: list[dict[str, Any]]) -> dict[str, Any]:
    reserved, settled = run.ledger.get("reserve", 0), run.ledger.get("settle", 0)
    refunded, released = run.ledger.get("refund", 0), run.ledger.get("release", 0)
    outstanding = reserved - settled - refunded - released
    delivered_cost = sum(int(row["cost_micros"]) for row in delivered)
    return {
        "reserved_micros": reserved,
        "settled_micros": settled,
        "refunded_micros": refunded,
        "delivered_cost_micros": delivered_cost,
        "outstanding_micros": outstanding,
        "balanced": outstanding == 0 and settled == delivered_cost,
    }
