"""The metrics port: the few things services report for an operator's dashboard, and a no-op default.

Services call these; the composition root passes in an adapter (`ops_metrics.py`, backed by
prometheus-client) when `[ops] port` is set, and `NO_METRICS` otherwise. Keeping the port here means no
service imports a metrics library, and a test can pass a recorder of its own.
"""

from __future__ import annotations

from typing import Literal, Protocol

from core.jobs import JobStatus

# What a provider call was: the four operations every provider has ("create" is `Provider.submit`).
Operation = Literal["create", "poll", "download", "cancel"]
# How the end of a task was noticed: a poll (the figure is an upper bound: the time since the previous
# poll that saw it unfinished) or a callback (the time from the callback waking the job to the poll
# that confirmed the end).
NoticeBasis = Literal["poll", "callback"]


class Metrics(Protocol):
    def job_moved(self, previous: JobStatus | None, status: JobStatus) -> None:
        """A job of this process changed state (`previous` None: it is new here, reserved or resumed)."""
        ...

    def reserved(self, micros: int) -> None:
        """A job's cost was reserved."""
        ...

    def refunded(self, micros: int) -> None:
        """A job ended refunded: its whole reservation went back."""
        ...

    def settled(self, charged_micros: int, released_micros: int) -> None:
        """A job ended delivered: its price charged, the rest of its reservation released."""
        ...

    def provider_call(self, provider: str, operation: Operation, seconds: float, error: str | None) -> None:
        """One provider request ended after `seconds`; `error` is the failure kind when it failed."""
        ...

    def notice_delay(self, provider: str, basis: NoticeBasis, seconds: float) -> None:
        """How long after a task ended the bot noticed (see `NoticeBasis`)."""
        ...

    def loop_lag(self, seconds: float) -> None:
        """One event-loop lag sample (services.loopwatch)."""
        ...

    def cooldown(self, provider: str, until: float | None) -> None:
        """The provider is out of rotation until `until` (Unix seconds), for the whole deployment; None: back in."""
        ...

    def poll_budget(self, provider: str, per_second: float) -> None:
        """This process's share of the provider's poll budget changed (services.polling.PollPacer)."""
        ...


class NoMetrics:
    """Reports nowhere: what services use when no operator endpoint is configured (and in most tests)."""

    def job_moved(self, previous: JobStatus | None, status: JobStatus) -> None:
        pass

    def reserved(self, micros: int) -> None:
        pass

    def refunded(self, micros: int) -> None:
        pass

    def settled(self, charged_micros: int, released_micros: int) -> None:
        pass

    def provider_call(self, provider: str, operation: Operation, seconds: float, error: str | None) -> None:
        pass

    def notice_delay(self, provider: str, basis: NoticeBasis, seconds: float) -> None:
        pass

    def loop_lag(self, seconds: float) -> None:
        pass

    def cooldown(self, provider: str, until: float | None) -> None:
        pass

    def poll_budget(self, provider: str, per_second: float) -> None:
        pass


NO_METRICS: Metrics = NoMetrics()
