"""`bot.py` as an operator runs it: clear start-up errors, and `generate` from the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from media.ffmpeg import ffmpeg_path

ROOT = Path(__file__).resolve().parent.parent


def run_bot(
    tmp_path: Path, config: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DISCORD_TOKEN", "WAVESPEED_API_KEY", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL")
    }
    clean["HAILUO_CONFIG"] = str(tmp_path / "config.toml")
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        cwd=tmp_path,  # no .env here
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_token_exits_with_instructions(tmp_path: Path) -> None:
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n')
    assert result.returncode == 2
    assert "DISCORD_TOKEN is not set" in result.stderr
    assert "discord.com/developers/applications" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_names_the_key(tmp_path: Path) -> None:
    result = run_bot(tmp_path, '[quotas]\nuser_daily_usd = "two"\n')
    assert result.returncode == 2
    assert "config.toml: quotas.user_daily_usd: not a dollar amount ('two')" in result.stderr


def test_unknown_key_and_unpriced_provider_are_refused(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "[bot]\nlog_levle = 'INFO'\n")
    assert result.returncode == 2 and "bot.log_levle" in result.stderr
    result = run_bot(
        tmp_path, '[providers]\norder = ["wavespeed"]\n', env={"WAVESPEED_API_KEY": "k", "DISCORD_TOKEN": "t"}
    )
    assert result.returncode == 2 and "prices.wavespeed.hailuo-02: missing i2v-pro-6s" in result.stderr


def test_generate_from_the_terminal_writes_a_clip(tmp_path: Path) -> None:
    config = '[bot]\ndata_dir = "data"\n[providers.preview]\nfps = 8\n'
    out = tmp_path / "clip.mp4"
    result = run_bot(tmp_path, config, "generate", "--prompt", "a paper boat [Truck left]", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "job #1: preview, $0.00" in result.stderr
    assert out.read_bytes()[4:8] == b"ftyp"
    probe = subprocess.run([ffmpeg_path(), "-hide_banner", "-i", str(out)], capture_output=True, text=True)
    assert "Duration: 00:00:06" in probe.stderr and "1366x768" in probe.stderr


def test_generate_refuses_bad_input_without_a_job(tmp_path: Path) -> None:
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n', "generate", "--prompt", "x", "--quality", "pro",
                     "--duration", "10")  # fmt: skip
    assert result.returncode == 1
    assert "768P" in result.stderr and "Traceback" not in result.stderr
