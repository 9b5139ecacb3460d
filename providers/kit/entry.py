"""What a provider module exports so that settings and the registry can iterate providers.

Each provider module ends with one `ENTRY`: its name, its `config.toml` section (a pydantic model whose
defaults are the provider's), the environment variable of its API key (None for a free provider), any
other secret variables it reads, and a factory that builds it from its section and the `Wiring` the
composition root hands over. Adding a provider is one module with an entry, its line in
`providers.registry.ENTRIES`, and its prices in `config.toml`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Generic, TypeVar

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, StrictInt

from core.provider import Provider

# The number types of config.toml sections. TOML gives native types, so strict parsing costs an operator
# nothing and refuses `true` where a number belongs (pydantic would read it as 1) or "30" for seconds. A
# float field still takes an integer (`timeout = 30`). Infinity and NaN are refused, and every field has
# bounds besides, so a typo cannot make a job poll forever or fail at once (README "Config ranges").
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
Count = StrictInt
TypicalSeconds = Annotated[FiniteFloat, Field(ge=0.1, le=3600)]  # a generation takes up to an hour
CallTimeout = Annotated[FiniteFloat, Field(ge=1, le=600)]  # one API call: a second to ten minutes
# At least one status poll every 100 s across all jobs (1e-300 left jobs unpolled past their deadline),
# at most far above any provider's limit.
PollRate = Annotated[FiniteFloat, Field(ge=0.01, le=10_000)]


class ProviderSection(BaseModel):
    """`[providers.<name>]` in config.toml. Every provider has a typical generation time: the progress
    estimate and the polling schedule use it until there is history."""

    model_config = ConfigDict(extra="forbid")

    typical_seconds: TypicalSeconds = 75


class PaidSection(ProviderSection):
    """The section of a paid HTTP provider. Subclasses give `base_url` its default."""

    base_url: str = Field(pattern="^https?://")
    timeout: CallTimeout = 30.0  # seconds for one API call
    # Status polls of all jobs together, in every process, at most this many per second (services.poll_share).
    max_polls_per_second: PollRate = 250


@dataclass(frozen=True)
class Wiring:
    """What the composition root hands a factory besides the provider's own section."""

    api_key: str | None
    # Where callbacks reach the bot, when it has a public URL; None means callbacks cannot arrive.
    callback_url: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)  # the entry's `extra_secrets`, when set
    data_dir: Path = Path("data")
    # This process's own name in the shared data directory ("" when it is alone): for work files no other
    # process may touch.
    process_tag: str = ""


S = TypeVar("S", bound=ProviderSection)


@dataclass(frozen=True)
class ProviderEntry(Generic[S]):
    name: str
    section: type[S]
    key_variable: str | None  # e.g. "TOAPIS_API_KEY"; None: needs no key (free, local)
    factory: Callable[[S, Wiring], Provider]
    extra_secrets: tuple[str, ...] = ()  # other environment variables it reads, e.g. a webhook secret

    @property
    def paid(self) -> bool:
        return self.key_variable is not None

    def build(self, section: ProviderSection, wiring: Wiring) -> Provider:
        if not isinstance(section, self.section):
            raise TypeError(f"{self.name}: expected a {self.section.__name__}")
        return self.factory(section, wiring)
