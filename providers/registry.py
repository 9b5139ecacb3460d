"""Every provider the bot knows, in the default order of preference, and building the enabled ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from core.provider import Provider
from providers import minimax, preview, seaart, toapis, wavespeed
from providers.kit.entry import ProviderEntry, ProviderSection, Wiring

# Paid providers first: the free preview stands in only when none is configured (services.routing).
ENTRIES: tuple[ProviderEntry[Any], ...] = (wavespeed.ENTRY, seaart.ENTRY, minimax.ENTRY, toapis.ENTRY, preview.ENTRY)
BY_NAME: Mapping[str, ProviderEntry[Any]] = {entry.name: entry for entry in ENTRIES}


def build_providers(
    names: Iterable[str],
    sections: Mapping[str, ProviderSection],
    secret: Callable[[str], str | None],
    *,
    data_dir: Path,
    process_tag: str = "",
    callback_url_for: Callable[[str], str] | None = None,
) -> dict[str, Provider]:
    """The providers `names` (already filtered to those that can run), in that order.

    `secret(variable)` reads an environment secret; `callback_url_for(name)` is given when the bot has a
    public URL for callbacks."""
    built: dict[str, Provider] = {}
    for name in names:
        entry = BY_NAME[name]
        extra = {variable: value for variable in entry.extra_secrets if (value := secret(variable))}
        wiring = Wiring(
            api_key=secret(entry.key_variable) if entry.key_variable else None,
            callback_url=callback_url_for(name) if callback_url_for else None,
            secrets=extra,
            data_dir=data_dir,
            process_tag=process_tag,
        )
        built[name] = entry.build(sections[name], wiring)
    return built
