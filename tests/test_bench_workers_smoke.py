"""A tiny run of the workers benchmark (bench/workers.py) so it cannot rot: PostgreSQL, a gateway and one, then
two `bot.py worker` processes carry six jobs each; every figure is produced and no money goes astray. Speed is
measured by the benchmark, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg_server import find_binaries

ROOT = Path(__file__).resolve().parents[1]


def test_the_workers_benchmark_produces_every_figure_and_loses_nothing(tmp_path: Path) -> None:
    bindir, source = find_binaries()
    if bindir is None:
        pytest.skip(f"no PostgreSQL: {source}")
    out = tmp_path / "workers.json"
    args = ["--workers", "1,2", "--jobs", "6", "--polling", "", "--compression", "30", "--clip-kib", "64",
            "--ledger-users", "20", "--ledger-attempts", "10", "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bench.workers", *args], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| level: workers × jobs |" in done.stdout and "reservations/s" in done.stdout

    results = json.loads(out.read_text())
    assert [(level["workers"], level["jobs"]) for level in results["levels"]] == [(1, 6), (2, 6)]
    for level in results["levels"]:
        assert level["outcomes"] == {"delivered": 6} and level["lost"] == 0 and not level["incomplete"]
        assert level["peak_at_provider"] == 6, "all jobs at the provider at once"
        assert level["ledger"]["balanced"] and level["ledger"]["settled_micros"] > 0
        assert sum(level["jobs_per_worker"].values()) >= 6 and len(level["jobs_per_worker"]) == level["workers"]
        for figure in ("jobs_per_s", "drain_jobs_per_s", "reservations_per_s"):
            assert level[figure] is not None and level[figure] > 0, figure
        assert level["notice_s"]["p50"] is not None and level["notice_s"]["p99"] is not None
        processes = level["processes"]
        assert processes["peak_rss_worker_mib"] > 0 and processes["peak_rss_gateway_mib"] > 0
        for role in ("gateway", "workers", "postgresql", "stand-ins"):
            assert processes["cpu_s_per_job"][role] is not None, role
            assert processes["drain_cores_busy"][role] is not None, role
        assert processes["cores_busy"]["machine"] > 0 and level["ack_ms"]["p99"] is not None
        assert level["extra_tasks"] >= 0 and level["refused"] == 0
        assert all(code == 0 for code in level["exit_codes"].values()), level["exit_codes"]
    [ratio] = results["ratios"]
    assert ratio["2w/1w jobs_per_s"] is not None
    ledgers = results["ledger"]
    assert {(r["backend"], r["writers"]) for r in ledgers} == {("sqlite", 1), ("postgresql", 1), ("postgresql", 4)}
    for ledger in ledgers:
        assert ledger["overspend_micros"] == 0 and ledger["admitted"] > 0 and ledger["refused"] > 0
