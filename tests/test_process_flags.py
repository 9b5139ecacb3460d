"""Per-process flags (process_flags.py): `bot.py run --shard-ids/--shard-count/--edits-per-second/--ops-port`
and `bot.py worker --edits-per-second/--ops-port` override config.toml for one process, checked by the
same rules as the keys they override, a refusal being one sentence naming the flag."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot import parse_args
from process_flags import FlagError, apply_process_flags
from settings import Settings, load_settings
from tests.test_entrypoint import run_bot


def settings_for(tmp_path: Path, config: str = "") -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(f'[bot]\ndata_dir = "data"\n{config}', encoding="utf-8")
    return load_settings(path, env_file=None)


def apply(tmp_path: Path, argv: list[str], config: str = "") -> tuple[Settings, str]:
    settings = settings_for(tmp_path, config)
    return settings, apply_process_flags(settings, parse_args(argv))


def test_flags_override_the_config_for_this_process_only(tmp_path: Path) -> None:
    argv = ["run", "--shard-ids", "1,3", "--shard-count", "4", "--edits-per-second", "12.5", "--ops-port", "9101"]
    settings, said = apply(tmp_path, argv)
    bot = settings.config.bot
    assert (bot.shard_ids, bot.shard_count, bot.progress_edits_per_second) == ([1, 3], 4, 12.5)
    assert settings.config.ops.port == 9101
    assert said == "--shard-ids 1,3 --shard-count 4 --edits-per-second 12.5 --ops-port 9101"
    assert settings.config.bot.data_dir == (tmp_path / "data").resolve(), "the rest of [bot] is kept"
    # The file itself is untouched: the next process reads it as it is.
    assert settings_for(tmp_path).config.bot.shard_ids == []


def test_a_worker_takes_its_share_and_port(tmp_path: Path) -> None:
    settings, said = apply(tmp_path, ["worker", "--edits-per-second", "20", "--ops-port", "9102"])
    assert (settings.config.bot.progress_edits_per_second, settings.config.ops.port) == (20, 9102)
    assert said == "--edits-per-second 20 --ops-port 9102"


def test_no_flags_change_nothing(tmp_path: Path) -> None:
    for argv in ([], ["run"], ["worker"], ["sync"]):
        before = settings_for(tmp_path, "shard_count = 2\nshard_ids = [1]\n")
        after, said = apply(tmp_path, argv, "shard_count = 2\nshard_ids = [1]\n")
        assert said == "" and after.config == before.config


def test_shard_ids_are_checked_against_the_count_in_config_toml(tmp_path: Path) -> None:
    settings, _ = apply(tmp_path, ["run", "--shard-ids", "0"], "shard_count = 2\n")
    assert (settings.config.bot.shard_ids, settings.config.bot.shard_count) == ([0], 2)
    with pytest.raises(FlagError) as refused:
        apply(tmp_path, ["run", "--shard-ids", "2"], "shard_count = 2\n")
    assert str(refused.value) == "--shard-ids: each shard id must be 0 to 1 (bot.shard_count is 2)"


@pytest.mark.parametrize(
    ("argv", "config", "sentence"),
    [
        (["run", "--shard-ids", "2", "--shard-count", "2"], "",
         "--shard-ids: each shard id must be 0 to 1 (--shard-count is 2)"),
        (["run", "--shard-ids", "0"], "",
         "--shard-ids: needs --shard-count or bot.shard_count (how many shards there are in all)"),
        (["run", "--shard-ids", "0,0", "--shard-count", "2"], "", "--shard-ids: a shard id is listed twice (got 0,0)"),
        (["run", "--shard-count", "1"], "shard_count = 2\nshard_ids = [1]\n",
         "config.toml: bot.shard_ids: each shard id must be 0 to 0 (--shard-count is 1)"),
        (["run", "--shard-count", "-1"], "", "--shard-count: Input should be greater than or equal to 0 (got -1)"),
        (["run", "--shard-count", "70000"], "",
         "--shard-count: Input should be less than or equal to 65536 (got 70000)"),
        (["run", "--edits-per-second", "0"], "",
         "--edits-per-second: Input should be greater than or equal to 0.1 (got 0)"),
        (["worker", "--edits-per-second", "5000"], "",
         "--edits-per-second: Input should be less than or equal to 1000 (got 5000)"),
        (["worker", "--edits-per-second", "nan"], "", "--edits-per-second: Input should be a finite number (got nan)"),
        (["worker", "--ops-port", "70000"], "", "--ops-port: Input should be less than or equal to 65535 (got 70000)"),
        (["run", "--ops-port", "8080"], '[webhooks]\npublic_base_url = "https://bot.example"\n',
         "--ops-port: 8080 is webhooks.listen_port too; give the endpoint a port of its own"),
    ],
)  # fmt: skip
def test_a_value_the_keys_rules_refuse_is_one_sentence_naming_the_flag(
    tmp_path: Path, argv: list[str], config: str, sentence: str
) -> None:
    with pytest.raises(FlagError) as refused:
        apply(tmp_path, argv, config)
    assert str(refused.value) == sentence


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["run", "--shard-ids", "x"], "argument --shard-ids: shard ids are numbers separated by commas (e.g. 0,1)"),
        (["run", "--shard-ids", "0,"], "argument --shard-ids: shard ids are numbers separated by commas"),
        (["run", "--shard-count", "two"], "argument --shard-count: a whole number, not 'two'"),
        (["worker", "--ops-port", "91.5"], "argument --ops-port: a whole number, not '91.5'"),
        (["worker", "--edits-per-second", "fast"], "argument --edits-per-second: a number, not 'fast'"),
        (["worker", "--shard-ids", "0"], "unrecognized arguments: --shard-ids 0"),  # a worker has no gateway
        (["sync", "--ops-port", "9100"], "unrecognized arguments: --ops-port 9100"),
    ],
)
def test_a_malformed_value_is_refused_by_argparse(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err


def test_bot_py_says_the_sentence_and_exits_2(tmp_path: Path) -> None:
    result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n', "run", "--shard-ids", "2", "--shard-count", "2")
    assert result.returncode == 2
    assert result.stderr.strip() == "--shard-ids: each shard id must be 0 to 1 (--shard-count is 2)"


def test_an_ops_port_taken_names_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"DISCORD_TOKEN": "t", "DISCORD_API_BASE": "http://127.0.0.1:9"}
        result = run_bot(tmp_path, '[bot]\ndata_dir = "data"\n', "run", "--ops-port", str(port), env=env)
    assert result.returncode == 1
    assert f"--ops-port: port {port} is already in use" in result.stderr and "Traceback" not in result.stderr
    assert f"this process: --ops-port {port}" in result.stderr, "the start-up log says what the flags set"
