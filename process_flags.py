"""What differs between the processes of one deployment, from the command line.

One config.toml serves every process (compose.yaml, or several processes on one machine), so the few
settings that must differ per process are flags that override it for this process only:

    bot.py run --shard-ids 0,1 [--shard-count 4]   the shards this gateway connects (bot.shard_ids/_count)
    bot.py run|worker --edits-per-second 10         this process's share of bot.progress_edits_per_second
    bot.py run|worker --ops-port 9101               its own operator's endpoint (ops.port)

A flag's value is checked by the same rules as the key it overrides (config_sections.py): a bad one ends
the process with one sentence naming the flag (argparse's exit code 2 for a malformed value, and 2 for a
value the rules refuse).
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel, ValidationError

from config_sections import BotSection, OpsSection
from settings import Settings

# flag -> (section, key) it overrides, in the order they are reported.
FLAGS = {
    "--shard-ids": ("bot", "shard_ids"),
    "--shard-count": ("bot", "shard_count"),
    "--edits-per-second": ("bot", "progress_edits_per_second"),
    "--ops-port": ("ops", "port"),
}
SECTIONS: dict[str, type[BaseModel]] = {"bot": BotSection, "ops": OpsSection}


class FlagError(Exception):
    """A flag the rules of its key refuse; the message is the one sentence the operator sees."""


def _shard_ids(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"shard ids are numbers separated by commas (e.g. 0,1), not {text!r}")
    return [int(part) for part in parts]


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, not {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number, not {text!r}") from None


def add_process_flags(parser: argparse.ArgumentParser, *, shards: bool) -> None:
    """The per-process flags of `run` (`shards`: the gateway's shards too) or `worker`."""
    if shards:
        parser.add_argument(
            "--shard-ids", type=_shard_ids, metavar="ID[,ID...]", help="connect only these shards (bot.shard_ids)"
        )
        parser.add_argument(
            "--shard-count", type=_whole, metavar="N", help="how many shards there are in all (bot.shard_count)"
        )
    parser.add_argument(
        "--edits-per-second",
        type=_number,
        metavar="X",
        help="this process's share of the progress-edit budget (bot.progress_edits_per_second)",
    )
    parser.add_argument("--ops-port", type=_whole, metavar="PORT", help="this process's /healthz and /metrics port")


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The per-process flags on this command line: flag -> value."""
    found = {flag: getattr(args, flag.removeprefix("--").replace("-", "_"), None) for flag in FLAGS}
    return {flag: value for flag, value in found.items() if value is not None}


def apply_process_flags(settings: Settings, args: argparse.Namespace) -> str:
    """Override the settings with this command line's flags, checked as config.toml's keys are; returns
    them as written ("" when there were none), for the start-up log. Raises FlagError."""
    given = given_flags(args)
    config = settings.config
    for name, model in SECTIONS.items():
        changes = {key: given[flag] for flag, (section, key) in FLAGS.items() if section == name and flag in given}
        if changes:
            current = getattr(config, name)
            try:
                setattr(config, name, model.model_validate({**current.model_dump(), **changes}))
            except ValidationError as exc:
                raise FlagError(_sentence(exc.errors()[0], name, given, settings)) from None
    _check_ports(settings, given)
    return " ".join(f"{flag} {_written(value)}" for flag, value in given.items())


def _sentence(error: Any, section: str, given: dict[str, Any], settings: Settings) -> str:
    """`--shard-ids: each shard id must be 0 to 1 (--shard-count is 2)`: the flag, or the config key when
    a flag made a key of config.toml wrong, and each key the message names as the flag that set it."""
    key = str(error["loc"][0])
    flag = next((f for f, place in FLAGS.items() if place == (section, key) and f in given), None)
    message = str(error["msg"]).removeprefix("Value error, ")
    if "--shard-count" in given:
        message = message.replace("bot.shard_count", "--shard-count")
    else:
        message = message.replace("needs bot.shard_count", "needs --shard-count or bot.shard_count")
    if flag is None:
        return f"{settings.config_path.name}: {section}.{key}: {message}"
    if "(" not in message:
        message = f"{message} (got {_written(given[flag])})"
    return f"{flag}: {message}"


def _check_ports(settings: Settings, given: dict[str, Any]) -> None:
    # As config.toml's own check (settings.Config): both servers would bind the port.
    ops, hooks = settings.config.ops, settings.config.webhooks
    if "--ops-port" in given and ops.port and hooks.public_base_url and ops.port == hooks.listen_port:
        raise FlagError(f"--ops-port: {ops.port} is webhooks.listen_port too; give the endpoint a port of its own")


def _written(value: object) -> str:
    """A flag's value as it is written on the command line: `0,1`, `12.5`, `9101`."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
