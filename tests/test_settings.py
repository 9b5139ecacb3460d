"""settings: absurd values refused with the key named, data_dir checked at load, the .env beside config.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import SettingsError, load_config, load_settings

ROOT = Path(__file__).resolve().parent.parent
SECRET_VARIABLES = (
    "DISCORD_TOKEN",
    "WAVESPEED_API_KEY",
    "SEAART_API_KEY",
    "MINIMAX_API_KEY",
    "TOAPIS_API_KEY",
    "DATABASE_URL",
)


def refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_config(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # The absurd values of the issue: a job polled past its deadline forever, every job failing as
        # internal, a price that overflows, `true` read as 1.
        (
            "[providers.wavespeed]\nmax_polls_per_second = 1e-300",
            "config.toml: providers.wavespeed.max_polls_per_second: Input should be greater than or equal to 0.01",
        ),
        ("[providers.wavespeed]\ntimeout = inf", "config.toml: providers.wavespeed.timeout: Input should be a finite"),
        (
            '[prices.wavespeed."hailuo-2.3"]\n"t2v-standard-6s" = "1e30"',
            "config.toml: prices.wavespeed.hailuo-2.3.t2v-standard-6s: more than $10,000 ('1e30')",
        ),
        ("[bot]\nmax_output_mib = true", "config.toml: bot.max_output_mib: Input should be a valid integer (got true)"),
        # And their relatives, in every kind of section.
        ('[quotas]\nglobal_monthly_usd = "1e30"', "config.toml: quotas.global_monthly_usd: more than $1,000,000"),
        ('[quotas.roles."42"]\nuser_daily_usd = 2e6', "config.toml: quotas.roles.42.user_daily_usd: more than $1,000"),
        ("[quotas]\nuser_max_in_flight = false", "config.toml: quotas.user_max_in_flight: Input should be a valid"),
        ("[quotas]\nmax_variants = 5", "config.toml: quotas.max_variants: Input should be less than or equal to 4"),
        ("[quotas]\nmax_variants = 0", "config.toml: quotas.max_variants: Input should be greater than or equal to 1"),
        ("[bot]\nshard_ids = [0]", "config.toml: bot.shard_ids: needs bot.shard_count"),
        ("[bot]\nshard_count = 2\nshard_ids = [2]", "config.toml: bot.shard_ids: each shard id must be 0 to 1"),
        ("[bot]\nshard_count = 2\nshard_ids = [1, 1]", "config.toml: bot.shard_ids: a shard id is listed"),
        ("[workers]\nseparate = 1", "config.toml: workers.separate: Input should be a valid boolean"),
        ("[workers]\nstalled_after_seconds = 0", "config.toml: workers.stalled_after_seconds: Input should be greater"),
        ("[bot]\nshard_count = -1", "config.toml: bot.shard_count: Input should be greater than or equal to 0"),
        ("[bot]\npoll_dense_seconds = nan", "config.toml: bot.poll_dense_seconds: Input should be a finite number"),
        ("[bot]\npoll_sparse_cap_seconds = 1e9", "config.toml: bot.poll_sparse_cap_seconds: Input should be less"),
        ("[bot]\nprogress_edits_per_second = 1e-300", "config.toml: bot.progress_edits_per_second: Input should be"),
        ("[bot]\nprogress_edit_interval = -inf", "config.toml: bot.progress_edit_interval: Input should be a finite"),
        ('[bot]\njob_deadline_seconds = "900"', 'job_deadline_seconds: Input should be a valid integer (got "900")'),
        ("[bot]\njob_deadline_seconds = 1e12", "config.toml: bot.job_deadline_seconds: Input should be a valid int"),
        ("[bot]\njob_deadline_seconds = 9999999", "config.toml: bot.job_deadline_seconds: Input should be less than"),
        ("[bot]\nhealth_log_seconds = true", "config.toml: bot.health_log_seconds: Input should be a valid number"),
        ("[bot]\ndev_guild_id = 1e3", "config.toml: bot.dev_guild_id: Input should be a valid integer"),
        ("[providers]\nfailure_threshold = true", "config.toml: providers.failure_threshold: Input should be a valid"),
        ("[providers]\ncooldown_seconds = inf", "config.toml: providers.cooldown_seconds: Input should be a finite"),
        ("[providers.toapis]\nmax_polls_per_second = 0", "config.toml: providers.toapis.max_polls_per_second: Input"),
        ("[providers.seaart]\ntypical_seconds = 1e300", "config.toml: providers.seaart.typical_seconds: Input should"),
        ("[providers.minimax]\ntimeout = 0.001", "config.toml: providers.minimax.timeout: Input should be greater"),
        ("[providers.preview]\nfps = 24.0", "config.toml: providers.preview.fps: Input should be a valid integer"),
        ("[providers.preview]\nmin_runtime_seconds = inf", "config.toml: providers.preview.min_runtime_seconds: Inp"),
        ('[guilds."0"]\nproviders = ["preview"]', "config.toml: guilds.0: not an id: Input should be greater than 0"),
        # The operator's endpoint and the log format.
        ("[ops]\nport = 70000", "config.toml: ops.port: Input should be less than or equal to 65535 (got 70000)"),
        ('[ops]\nport = "9100"', 'config.toml: ops.port: Input should be a valid integer (got "9100")'),
        ("[ops]\nlisten = 1", "config.toml: ops.listen: Extra inputs are not permitted"),
        ('[bot]\nlog_format = "xml"', "config.toml: bot.log_format: Input should be 'text' or 'json' (got \"xml\")"),
        (
            '[ops]\nport = 8080\n[webhooks]\npublic_base_url = "https://bot.example"',
            "config.toml: ops.port: 8080 is webhooks.listen_port too",
        ),
    ],
)
def test_an_absurd_value_is_refused_naming_its_key(tmp_path: Path, toml: str, expected: str) -> None:
    message = refusal(tmp_path, toml + "\n")
    assert expected in message, message
    assert "\n" not in message


def test_sane_values_still_load_and_integers_are_welcome_where_seconds_are_floats(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[bot]\npoll_dense_seconds = 2\nprogress_edit_interval = 0\nhealth_log_seconds = 0\n"
        "[providers]\ncooldown_seconds = 0\n"
        "[providers.wavespeed]\ntimeout = 30\nmax_polls_per_second = 0.01\ntypical_seconds = 0.5\n"
        '[prices.wavespeed."hailuo-2.3"]\n"t2v-standard-6s" = "10000"\n'
        '[quotas]\nglobal_monthly_usd = "1000000"\nuser_daily_usd = ""\nuser_max_in_flight = 1000000\n'
        '[guilds."123456789012345678"]\nproviders = ["preview"]\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.bot.poll_dense_seconds == 2.0 and config.providers.section("wavespeed").typical_seconds == 0.5
    assert config.prices["wavespeed"]["hailuo-2.3"]["t2v-standard-6s"] == 10_000 * 1_000_000
    assert config.quotas.user_daily_usd is None and 123456789012345678 in config.guilds


def test_the_shipped_config_loads() -> None:
    load_config(ROOT / "config.toml")


def write_config(directory: Path, data_dir: str = "data") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(f'[bot]\ndata_dir = "{data_dir}"\n', encoding="utf-8")
    return path


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in (*SECRET_VARIABLES, "HAILUO_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_a_data_dir_that_is_a_file_is_one_line_naming_the_key(tmp_path: Path, clean_environment: object) -> None:
    (tmp_path / "data").write_text("not a directory", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(write_config(tmp_path))
    assert str(info.value) == f"config.toml: bot.data_dir: {tmp_path / 'data'} is a file, not a directory"
    with pytest.raises(SettingsError) as info:
        load_settings(write_config(tmp_path, "data/db"))
    expected = f"config.toml: bot.data_dir: cannot create {tmp_path / 'data/db'}: {tmp_path / 'data'} is a file"
    assert str(info.value) == expected


def test_a_data_dir_that_does_not_exist_yet_is_fine_and_not_created_by_loading(
    tmp_path: Path, clean_environment: object
) -> None:
    settings = load_settings(write_config(tmp_path, "deep/er/data"))
    assert settings.config.bot.data_dir == tmp_path / "deep/er/data" and not (tmp_path / "deep").exists()


def test_the_env_file_beside_config_is_read_from_any_directory(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "conf")
    (tmp_path / "conf" / ".env").write_text("DISCORD_TOKEN=beside-config\nWAVESPEED_API_KEY=ws-key\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("DISCORD_TOKEN=from-the-working-directory\nSEAART_API_KEY=sa\n", encoding="utf-8")
    clean_environment.chdir(elsewhere)

    for settings in (load_settings(config), load_settings(Path("..") / "conf" / "config.toml")):
        assert settings.secrets.secret("DISCORD_TOKEN") == "beside-config"
        assert settings.api_key("wavespeed") == "ws-key" and settings.api_key("seaart") is None
        assert settings.config.bot.data_dir == tmp_path / "conf" / "data"

    clean_environment.setenv("HAILUO_CONFIG", str(config))
    clean_environment.setenv("DISCORD_TOKEN", "from-the-environment")
    settings = load_settings()
    assert settings.secrets.secret("DISCORD_TOKEN") == "from-the-environment"  # the environment wins
    assert settings.api_key("wavespeed") == "ws-key" and settings.config_path == config


def test_an_unreadable_config_is_one_line(tmp_path: Path, clean_environment: object) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(SettingsError, match=r"config.toml: cannot read it \(Is a directory\)"):
        load_settings(tmp_path / "config.toml")


def test_the_database_url_defaults_to_sqlite_in_data_dir_and_a_relative_path_follows_config(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "conf")
    assert load_settings(config).database_url == f"sqlite:///{tmp_path / 'conf' / 'data' / 'hailuo.db'}"
    config.write_text('[database]\nurl = "sqlite:///db/bot.db"\n', encoding="utf-8")
    assert load_settings(config).database_url == f"sqlite:///{tmp_path / 'conf' / 'db' / 'bot.db'}"
    config.write_text('[database]\nurl = "postgresql://hailuo@db:5432/hailuo"\n', encoding="utf-8")
    settings = load_settings(config)
    assert settings.database_url == "postgresql://hailuo@db:5432/hailuo" and settings.secret_values() == []


def test_database_url_from_the_environment_wins_and_its_password_is_a_secret(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    config.write_text('[database]\nurl = "postgresql://hailuo@db/hailuo"\n', encoding="utf-8")
    clean_environment.setenv("DATABASE_URL", "postgresql://hailuo:s3cret-pw@db/hailuo")
    settings = load_settings(config)
    assert settings.database_url == "postgresql://hailuo:s3cret-pw@db/hailuo"
    assert "s3cret-pw" in settings.secret_values()


@pytest.mark.parametrize("url", ["mysql://u:s3cret-pw@db/x", "sqlite://", "db.sqlite"])
def test_a_database_url_we_cannot_open_is_one_line_naming_the_key_without_the_url(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, url: str
) -> None:
    config = write_config(tmp_path)
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert str(info.value).startswith("config.toml: database.url: ") and "s3cret" not in str(info.value)
    config.write_text("", encoding="utf-8")
    clean_environment.setenv("DATABASE_URL", url)
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert str(info.value).startswith("environment: DATABASE_URL: ") and "s3cret" not in str(info.value)


def test_separate_workers_need_postgresql(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path)
    config.write_text("[workers]\nseparate = true\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"^config.toml: workers.separate: the job engine needs PostgreSQL"):
        load_settings(config)
    clean_environment.setenv("DATABASE_URL", "postgresql://hailuo@db/hailuo")
    assert load_settings(config).config.workers.separate is True
