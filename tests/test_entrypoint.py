"""`bot.py` as an operator runs it: clear start-up errors, and `generate` from the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from media.ffmpeg import ffmpeg_path
from tests.fakes.discord_server import FakeDiscord

ROOT = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path) -> dict[str, str]:
    """This environment without the bot's secrets and endpoints, pointing at the test's config."""
    secrets = ("DISCORD_TOKEN", "WAVESPEED_API_KEY", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL")
    clean = {key: value for key, value in os.environ.items() if key not in secrets}
    clean["HAILUO_CONFIG"] = str(tmp_path / "config.toml")
    return clean


def run_bot(
    tmp_path: Path, config: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        cwd=tmp_path,  # no .env here unless the test wrote one
        env={**clean_env(tmp_path), **(env or {})},
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


def test_an_empty_token_copied_from_env_example_counts_as_not_set(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=\nWAVESPEED_API_KEY=\n", encoding="utf-8")
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n')
    assert result.returncode == 2
    assert "DISCORD_TOKEN is not set" in result.stderr and "Traceback" not in result.stderr


def test_the_env_file_beside_config_is_read_when_started_from_elsewhere(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on: reaching for it proves the token was read
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf.mkdir(), elsewhere.mkdir()
    (conf / "config.toml").write_text('[bot]\ndata_dir = "data"\n', encoding="utf-8")
    (conf / ".env").write_text(f"DISCORD_TOKEN=t\nDISCORD_API_BASE=http://127.0.0.1:{closed}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bot.py")],
        cwd=elsewhere,
        env={**clean_env(tmp_path), "HAILUO_CONFIG": str(conf / "config.toml")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Could not reach Discord" in result.stderr and "DISCORD_TOKEN is not set" not in result.stderr
    assert (conf / "data" / "hailuo.db").exists()


def test_a_wrong_token_is_one_sentence(tmp_path: Path) -> None:
    async def run() -> subprocess.CompletedProcess[str]:
        fake = FakeDiscord()  # refuses any token but its own, as Discord does (401)
        await fake.start()
        try:
            env = {"DISCORD_TOKEN": "not-the-token", "DISCORD_API_BASE": fake.base_url}
            return await run_bot_async(tmp_path, '[bot]\ndata_dir = "data"\n', env=env)
        finally:
            await fake.stop()

    result = asyncio.run(run())
    assert result.returncode == 1
    assert "Discord refused DISCORD_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_no_way_to_reach_discord_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {"DISCORD_TOKEN": "t", "DISCORD_API_BASE": f"http://127.0.0.1:{closed}"}
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n', env=env)
    assert result.returncode == 1
    assert "Could not reach Discord" in result.stderr and "Traceback" not in result.stderr


def test_generate_with_a_missing_image_file_is_one_sentence(tmp_path: Path) -> None:
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n', "generate", "--image", "missing.png")
    assert result.returncode == 1
    assert "--image: no such file: missing.png" in result.stderr and "Traceback" not in result.stderr


async def run_bot_async(
    tmp_path: Path, config: str, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`run_bot` without blocking the event loop (a stand-in in this process must keep answering)."""
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bot.py"), *args, cwd=tmp_path, env={**clean_env(tmp_path), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def test_the_ops_port_taken_is_one_sentence_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"DISCORD_TOKEN": "t", "DISCORD_API_BASE": "http://127.0.0.1:9"}
        result = run_bot(tmp_path, f'[bot]\ndata_dir = "data"\n[ops]\nport = {port}\n', env=env)
    assert result.returncode == 1
    assert f"ops.port: port {port} is already in use" in result.stderr and "Traceback" not in result.stderr


def test_json_logs_are_one_object_per_line_from_the_start(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on: the run ends after its start-up lines
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {"DISCORD_TOKEN": "t", "DISCORD_API_BASE": f"http://127.0.0.1:{closed}"}
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\nlog_format = "json"\n', env=env)
    *logged, sentence = result.stderr.splitlines()
    assert result.returncode == 1 and sentence.startswith("Could not reach Discord")
    records = [json.loads(line) for line in logged]
    assert any(record["message"].startswith("providers in use") for record in records)
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)


def test_a_worker_without_separate_workers_is_one_sentence(tmp_path: Path) -> None:
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n', "worker", env={"DISCORD_TOKEN": "abc"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "bot.py worker runs jobs handed over by gateway processes: set workers.separate = true (PostgreSQL)."
    )
    result = run_bot(tmp_path, "[workers]\nseparate = true\n", "worker", env={"DISCORD_TOKEN": "abc"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "config.toml: workers.separate: the job engine needs PostgreSQL" in result.stderr
