"""A tiny run of the benchmark (bench/run.py) so it cannot rot: every figure is produced and no money
goes astray. Speed is measured by the benchmark, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_produces_every_figure_and_never_overspends(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    args = ["--levels", "4", "--compression", "60", "--clip-scale", "0.05", "--sdk-sample", "4",
            "--webhooks-level", "0", "--bigclips-level", "0", "--ledger-users", "8", "--ledger-attempts", "10",
            "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ack latency" in done.stdout and "notice delay" in done.stdout

    results = json.loads(out.read_text())
    [level] = results["levels"]
    assert level["outcomes"] == {"delivered": 4} and level["commands_without_job"] == 0
    for figure in ("ack_ms", "notice_s", "overhead_s", "overhead_after_notice_s", "transfer_s", "loop_lag_ms"):
        assert level[figure]["p50"] is not None and level[figure]["p99"] is not None, figure
    provider = level["provider_requests_per_job"]
    assert provider["submit"] == 1 and provider["poll"] >= 1 and provider["download"] == 1
    assert level["discord_requests_per_job"]["ack"] == 1 and level["discord_requests_per_job"]["clip_upload"] == 1
    process = level["process"]
    for figure in ("rss_peak_mib", "rss_per_job_in_flight_kib", "cpu_s_per_job", "children_cpu_s_per_job"):
        assert process[figure] is not None, figure
    twin = level["sdk_twin"]
    assert twin["jobs"] == 4 and twin["provider_requests_per_job"] and twin["notice_s"]["p99"] is not None
    for scale in ("compressed", "real"):
        for who in ("bot", "sdk", "schedule"):
            assert level["projection"][scale][who]["polls_mean"] > 0, (scale, who)
    # Money: every delivered job settled at its cost, nothing left reserved; the ledger part never overspends.
    assert level["ledger"]["outstanding_micros"] == 0
    assert level["ledger"]["settled_micros"] == level["ledger"]["delivered_cost_micros"] > 0
    ledger = results["ledger"]
    assert ledger["overspend_micros"] == 0 and ledger["admitted"] > 0 and ledger["refused"] > 0
    assert ledger["attempts_per_s"] > 0
    # The replay models the bot's polling as it is (a wrong guess silently replays the old backoff).
    assert results["bot_polling"] == "schedule"
