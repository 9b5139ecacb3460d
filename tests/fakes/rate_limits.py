"""Rate limits the provider stand-ins enforce, counted on a clock each stand-in is given.

The clock is `time.time` by default (so a `X-RateLimit-Reset` built from it is a Unix timestamp); a test
passes its own (see `ManualClock`) and moves time by hand instead of sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


class ManualClock:
    """A clock that only moves when told to; starts at a realistic Unix time."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TokenBucket:
    """`capacity` tokens, refilled continuously at `rate` tokens per second, full at the start."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("a token bucket needs a positive capacity and rate")
        self.capacity = capacity
        self.rate = rate
        self._tokens = float(capacity)
        self._stamp = now

    def level(self, now: float) -> float:
        """Tokens in the bucket at `now` (a clock that went backwards refills nothing)."""
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        return self._tokens

    def remaining(self, now: float) -> int:
        """Whole requests the bucket would let through now."""
        return max(0, math.floor(self.level(now)))

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0 when one is there now)."""
        return max(0.0, (1.0 - self.level(now)) / self.rate)

    def full_at(self, now: float) -> float:
        """The clock time at which the bucket is full again."""
        return now + (self.capacity - self.level(now)) / self.rate

    def take(self, now: float) -> None:
        self._tokens = self.level(now) - 1.0

    def give_back(self, now: float) -> None:
        self._tokens = min(self.capacity, self.level(now) + 1.0)


class SlidingWindow:
    """At most `limit` events in any `window` seconds: a counter of the event times still inside it."""

    def __init__(self, limit: int, window: float) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("a sliding window needs a positive limit and length")
        self.limit = limit
        self.window = window
        self._events: deque[float] = deque()

    def count(self, now: float) -> int:
        while self._events and self._events[0] <= now - self.window:
            self._events.popleft()
        return len(self._events)

    def remaining(self, now: float) -> int:
        return max(0, self.limit - self.count(now))

    def wait(self, now: float) -> float:
        """Seconds until one more event fits (0 when one fits now)."""
        if self.count(now) < self.limit:
            return 0.0
        return self._events[len(self._events) - self.limit] + self.window - now

    def add(self, now: float) -> None:
        self._events.append(now)


@dataclass(frozen=True)
class Window:
    """A limit of `requests` per `seconds`, as a provider's docs state it."""

    requests: int
    seconds: float

    def bucket(self, now: float) -> TokenBucket:
        return TokenBucket(self.requests, self.requests / self.seconds, now)

    def sliding(self) -> SlidingWindow:
        return SlidingWindow(self.requests, self.seconds)


def retry_after_text(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
