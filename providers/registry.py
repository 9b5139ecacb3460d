"""Builds the enabled providers from settings, in the configured order of preference."""

from __future__ import annotations

from collections.abc import Callable

from providers.base import Provider
from settings import PAID_PROVIDERS, Settings


def _wavespeed(settings: Settings, key: str, webhook_url: str | None) -> Provider:
    from providers.wavespeed import WaveSpeedProvider

    section = settings.config.providers.wavespeed
    return WaveSpeedProvider(key, section.base_url, timeout=section.timeout, webhook_url=webhook_url)


def _seaart(settings: Settings, key: str, webhook_url: str | None) -> Provider:
    from providers.seaart import SeaArtProvider

    section = settings.config.providers.seaart
    return SeaArtProvider(key, section.base_url, timeout=section.timeout)  # SeaArt has no callbacks


def _minimax(settings: Settings, key: str, webhook_url: str | None) -> Provider:
    from providers.minimax import MiniMaxProvider

    section = settings.config.providers.minimax
    return MiniMaxProvider(key, section.base_url, timeout=section.timeout, webhook_url=webhook_url)


def _toapis(settings: Settings, key: str, webhook_url: str | None) -> Provider:
    from providers.toapis import ToApisProvider

    section = settings.config.providers.toapis
    secret = settings.secrets.toapis_webhook_secret
    # ToAPIs refuses a callback_url unless the token has a signing secret configured (§4.5).
    return ToApisProvider(
        key,
        section.base_url,
        timeout=section.timeout,
        webhook_url=webhook_url if secret else None,
        webhook_secret=secret.get_secret_value() if secret else None,
    )


BUILDERS: dict[str, Callable[[Settings, str, str | None], Provider]] = {
    "wavespeed": _wavespeed,
    "seaart": _seaart,
    "minimax": _minimax,
    "toapis": _toapis,
}
assert set(BUILDERS) == set(PAID_PROVIDERS)


def build_providers(settings: Settings, webhook_url_for: Callable[[str], str] | None = None) -> dict[str, Provider]:
    """The enabled providers, in order. `webhook_url_for(name)` gives a provider its callback URL."""
    from providers.preview import PreviewProvider

    built: dict[str, Provider] = {}
    for name in settings.enabled_providers():
        if name == "preview":
            preview = settings.config.providers.preview
            built[name] = PreviewProvider(
                settings.config.bot.data_dir / "preview", fps=preview.fps, min_runtime_s=preview.min_runtime_seconds
            )
            continue
        key = settings.api_key(name)
        assert key is not None
        built[name] = BUILDERS[name](settings, key, webhook_url_for(name) if webhook_url_for else None)
    return built
