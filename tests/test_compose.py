"""compose.yaml, read statically (no Docker here): PostgreSQL, two gateways on shards 0 and 1 of 2 and a
scalable worker service, each with a health check; named volumes; secrets only from .env; and each bot
command run as the container would run it — its flags parsed by bot.py, its config (config.compose.toml,
mounted over /app/config.toml) loaded by the real `load_settings` with a made-up environment."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import parse_args
from ops_metrics import PrometheusMetrics
from ops_server import OpsServer, Readiness
from process_flags import apply_process_flags
from settings import Secrets, Settings, load_settings
from storage.urls import dialect_of
from tests.test_docker_image import instructions

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BOTS = ("gateway-0", "gateway-1", "worker")
CONFIG_MOUNT = "./config.compose.toml:/app/config.toml:ro"
# What a made-up .env holds (the test's own values: nothing here is a real secret).
FAKE_ENV = {
    "DISCORD_TOKEN": "token-for-tests",
    "WAVESPEED_API_KEY": "ws-key-for-tests",
    "POSTGRES_PASSWORD": "pw4tests",
}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        value = env.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and unset:
            raise LookupError(f"{name}: {arg}")
        return arg if op.endswith("-") and unset else value or ""

    return VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def command_args(service: str, env: dict[str, str] | None = None) -> list[str]:
    """The service's command after `python bot.py`, interpolated as compose would."""
    command = [interpolate(word, env or {}) for word in SERVICES[service]["command"]]
    assert command[:2] == ["python", "bot.py"], command
    return command[2:]


def settings_in_container(service: str, tmp_path: Path, env: dict[str, str] | None = None) -> Settings:
    """The settings `service`'s command runs with: config.compose.toml at /app/config.toml (copied to
    tmp_path, as the mount puts it), the environment compose gives it, then its command-line flags."""
    env = {**FAKE_ENV, **(env or {})}
    container_env = {**env, **{k: interpolate(v, env) for k, v in SERVICES[service]["environment"].items()}}
    assert "HAILUO_CONFIG" not in container_env, "the default path: /app/config.toml, where the file is mounted"
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.compose.toml", config)
    with pytest.MonkeyPatch.context() as patch:
        for name in Secrets.model_fields:
            patch.delenv(name.upper(), raising=False)
        for name, value in container_env.items():
            patch.setenv(name, value)
        settings = load_settings(config, env_file=None)
    apply_process_flags(settings, parse_args(command_args(service, env)))
    return settings


def test_postgres_two_gateways_and_two_workers() -> None:
    assert set(SERVICES) == {"postgres", *BOTS}
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    for service in BOTS:
        assert SERVICES[service]["build"] == "." and (ROOT / "Dockerfile").is_file(), "built from the repo's Dockerfile"
        assert SERVICES[service]["image"] == SERVICES["worker"]["image"], "one image for every bot process"
    assert command_args("gateway-0")[0] == command_args("gateway-1")[0] == "run"
    assert command_args("worker")[0] == "worker"


def test_postgres_is_the_official_image_pinned_with_its_volume_where_the_image_keeps_data() -> None:
    postgres = SERVICES["postgres"]
    assert re.fullmatch(r"postgres:18\.\d+-\w+@sha256:[0-9a-f]{64}", postgres["image"]), postgres["image"]
    # From PostgreSQL 18 the image keeps its data in /var/lib/postgresql/18/docker (its VOLUME is the parent).
    assert postgres["volumes"] == ["pg-data:/var/lib/postgresql"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert postgres["environment"]["POSTGRES_USER"] in SERVICES["worker"]["environment"]["DATABASE_URL"]


def test_named_volumes_hold_the_database_and_the_shared_data_dir() -> None:
    assert set(COMPOSE["volumes"]) == {"pg-data", "hailuo-data"}
    for service in BOTS:
        # One data_dir for all: an /animate job's image is stored by its gateway and read by its worker.
        assert SERVICES[service]["volumes"] == [CONFIG_MOUNT, "hailuo-data:/app/data"], service


def test_the_bot_processes_wait_for_a_healthy_database_and_all_restart() -> None:
    for name, service in SERVICES.items():
        assert service["restart"] == "unless-stopped", name
        if name != "postgres":
            assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}, name


def test_the_gateways_connect_shards_0_and_1_of_2(tmp_path: Path) -> None:
    for shard in (0, 1):
        bot = settings_in_container(f"gateway-{shard}", tmp_path / str(shard)).config.bot
        assert (bot.shard_ids, bot.shard_count) == ([shard], 2)


def test_every_command_runs_separate_workers_on_the_compose_postgres(tmp_path: Path) -> None:
    workdirs = [args for keyword, args in instructions() if keyword == "WORKDIR"]
    assert workdirs[-1] == "/app", "bot.py and the default config.toml path are relative to /app"
    for service in BOTS:
        settings = settings_in_container(service, tmp_path / service)
        assert settings.config.workers.separate
        assert dialect_of(settings.database_url) == "postgresql"
        assert settings.database_url == "postgresql://hailuo:pw4tests@postgres:5432/hailuo"
        assert settings.secrets.secret("DISCORD_TOKEN") == "token-for-tests"
        assert settings.enabled_providers()[0] == "wavespeed", "provider keys reach it from .env"
        assert settings.config.bot.data_dir == (tmp_path / service / "data").resolve(), "data beside config: /app/data"
        assert (settings.config.ops.listen_host, settings.config.ops.port) == ("0.0.0.0", 9100)


def test_no_database_without_a_password() -> None:
    with pytest.raises(LookupError, match=r"POSTGRES_PASSWORD: set POSTGRES_PASSWORD in \.env"):
        interpolate(SERVICES["worker"]["environment"]["DATABASE_URL"], {"POSTGRES_PASSWORD": ""})


def test_secrets_come_only_from_env_file() -> None:
    for service in BOTS:
        assert SERVICES[service]["env_file"] == ".env"
    # The database's container gets its password, not the bot's token and keys.
    assert "env_file" not in SERVICES["postgres"]
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|TOKEN|KEY|SECRET|URL", key):
                assert "${POSTGRES_PASSWORD:?" in str(value), f"{name}: {key} must come from .env"
    literal = re.compile(r"(password|token|api_key|secret)\s*[:=]\s*[\"']?(?!\$\{)[\w-]{6,}", re.I)
    assert not literal.findall(COMPOSE_TEXT)
    config = tomllib.loads((ROOT / "config.compose.toml").read_text(encoding="utf-8"))
    assert config["database"]["url"] == "", "the URL with its password comes from the environment"


def test_the_worker_scales() -> None:
    """`docker compose up --scale worker=N`: one service with replicas, nothing that two copies would share
    exclusively (a container name, a published host port)."""
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert "--ops-port" not in command_args("worker"), "each container has its own 9100"


def test_the_edit_budget_is_shared_across_the_processes(tmp_path: Path) -> None:
    """2 gateways and 2 workers take, together, what one process would: bot.progress_edits_per_second."""
    total = tomllib.loads((ROOT / "config.compose.toml").read_text(encoding="utf-8"))["bot"][
        "progress_edits_per_second"
    ]
    shares = {service: settings_in_container(service, tmp_path / service).config.bot for service in BOTS}
    replicas = {"gateway-0": 1, "gateway-1": 1, "worker": SERVICES["worker"]["deploy"]["replicas"]}
    assert sum(shares[s].progress_edits_per_second * replicas[s] for s in BOTS) == total == 50
    four = settings_in_container("worker", tmp_path / "four", {"WORKER_EDITS_PER_SECOND": "10"})
    assert four.config.bot.progress_edits_per_second == 10, "the share follows .env"


def test_config_compose_is_config_toml_but_for_the_compose_keys() -> None:
    """Prices, quotas and every other key stay the same in both files: a change to one is made to both."""
    base = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    compose = tomllib.loads((ROOT / "config.compose.toml").read_text(encoding="utf-8"))
    base["bot"]["shard_count"] = 2
    base["ops"] |= {"listen_host": "0.0.0.0", "port": 9100}
    base["workers"]["separate"] = True
    assert compose == base


def test_env_example_lists_every_variable_with_no_value() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    listed = {line.lstrip("# ").split("=")[0] for line in lines if re.match(r"#? ?[A-Z][A-Z0-9_]*=", line)}
    interpolated = {match["name"] for match in VARIABLE.finditer(COMPOSE_TEXT)}
    read_by_the_bot = {name.upper() for name in Secrets.model_fields}
    assert interpolated <= listed, interpolated - listed
    assert read_by_the_bot <= listed, read_by_the_bot - listed
    assigned = [line for line in lines if re.match(r"[A-Z][A-Z0-9_]*=", line)]
    assert all(line.endswith("=") for line in assigned), "no values in the example"


async def test_the_bot_health_check_passes_only_while_healthz_says_ready() -> None:
    """Each bot service's own check command, run against the real endpoint (on a free port instead of 9100):
    exit 1 on 503, 0 on 200, 1 when nothing listens."""
    readiness = Readiness()
    server = OpsServer(readiness, PrometheusMetrics(), port=0)
    await server.start()
    try:
        for service in BOTS:
            check = SERVICES[service]["healthcheck"]
            assert check["test"][0] == "CMD" and "http://127.0.0.1:9100/healthz" in check["test"][-1]
            assert (check["interval"], check["retries"]) == ("15s", 3)
            argv = [sys.executable if word == "python" else word for word in check["test"][1:]]
            argv[-1] = argv[-1].replace(":9100/", f":{server.port}/")
            readiness.down("gateway", "not connected yet")
            assert await exit_code(argv) == 1
            readiness.up("database")
            readiness.up("gateway")
            assert await exit_code(argv) == 0
    finally:
        await server.stop()
    assert await exit_code(argv) == 1


async def exit_code(argv: list[str]) -> int:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), 60)
