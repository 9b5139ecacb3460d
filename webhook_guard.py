"""The webhook receiver's defences at the connection level, where aiohttp's server sets no bounds.

aiohttp keeps a connection that sends nothing for `keepalive_timeout` (an hour by default) and accepts as
many connections as the process has file descriptors. On a port open to the internet that once let 230
idle connections hold 230 of the bot's 256 descriptors: jobs stalled because the bot could not open
sockets to its providers or to Discord. Here, for the receiver's listening socket only:

- At most `max_connections` are open. One more closes the connection that has waited longest for a request
  (a client that connects and sends nothing loses nothing it had started); when every one is busy with a
  request, the newcomer gets a 503 and is closed at once, before aiohttp ever sees it.
- A new connection must send a complete request head within `header_timeout`: a head dribbled a byte at a
  time (slow-loris) counts as none. After an answer, aiohttp's keep-alive timer (`idle_timeout`, armed
  from the end of each response and not reset by partial data) bounds the wait for the next head.
- Each kind of event is logged through a `LogThrottle`: one line at once, then at most one line per minute
  with a count. So is asyncio's own "socket.accept() out of system resource" error, which it repeats every
  second while the process is out of descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

log = logging.getLogger("hailuo.webhooks")

LOG_INTERVAL_S = 60.0
ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's message (base_events, selector_events)
# A complete answer for a connection refused before any request was read: a sender that retries on 5xx
# (they all do) comes back later instead of seeing a reset.
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nRetry-After: 5\r\n\r\nbusy\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections, and how long each may take (settings: `[webhooks]`)."""

    max_connections: int = 64
    header_timeout: float = 5.0  # first complete request head after connecting
    # Next request head after an answer on a kept-alive connection. aiohttp also arms it at connect, so the
    # first head must in fact arrive within the shorter of the two.
    idle_timeout: float = 15.0
    body_timeout: float = 30.0  # the whole request body, once its head has arrived


@dataclass
class ConnectionStats:
    """Counters since start (a snapshot): what the guard did, for tests, benchmarks and the curious."""

    open: int = 0
    admitted: int = 0
    evicted: int = 0  # closed, while waiting for a request, to make room for a newer connection
    refused: int = 0  # turned away with a 503: every slot was busy with a request
    header_timeouts: int = 0
    accept_errors: int = 0  # asyncio's failed accept() calls (out of file descriptors), seen in its log


@dataclass
class _Window:
    level: int
    more: str
    handle: asyncio.TimerHandle
    count: int = 0


class LogThrottle:
    """At most one log line per `interval` for each kind of event: the first at once, then at the end of
    any interval that had more, one line with their count. A flood costs a line a minute, not a line per
    event (a flood of per-connection errors once wrote 113 MB of log in a minute)."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_S) -> None:
        self.logger = logger
        self.interval = interval
        self._windows: dict[str, _Window] = {}

    def first(self, key: str, level: int, more: str) -> bool:
        """True when an event of kind `key` may be logged now; otherwise it is counted, and reported as
        "<count> more <more>" when the interval ends. Must run on the event loop."""
        window = self._windows.get(key)
        if window is not None:
            window.count += 1
            return False
        self._open(key, level, more)
        return True

    def log(self, key: str, level: int, msg: str, *args: object, more: str, exc_info: bool = False) -> None:
        if self.first(key, level, more):
            self.logger.log(level, msg, *args, exc_info=exc_info)

    def close(self) -> None:
        """Report what is still counted and stop the timers (at shutdown)."""
        windows, self._windows = self._windows, {}
        for window in windows.values():
            window.handle.cancel()
            self._report(window)

    def _open(self, key: str, level: int, more: str) -> None:
        handle = asyncio.get_running_loop().call_later(self.interval, self._end, key)
        self._windows[key] = _Window(level, more, handle)

    def _end(self, key: str) -> None:
        window = self._windows.pop(key)
        if window.count:
            self._report(window)
            self._open(key, window.level, window.more)  # keep summarising while it lasts

    def _report(self, window: _Window) -> None:
        if window.count:
            self.logger.log(window.level, "%d more %s in the last %g s", window.count, window.more, self.interval)


class _AcceptErrorFilter(logging.Filter):
    """Thins out asyncio's accept error (logged with a traceback every second while the process has no
    descriptor left) to the receiver's throttle: one at once, then a count per interval."""

    def __init__(self, guard: ConnectionGuard) -> None:
        super().__init__()
        self._guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(ACCEPT_ERROR):
            return True
        self._guard.stats.accept_errors += 1
        return self._guard.throttle.first(
            "accept", logging.ERROR, "failed accepts on the webhook port (the process is out of file descriptors)"
        )


class _Connection(asyncio.Protocol):
    """One accepted socket: asks the guard for a slot, then passes everything to aiohttp's protocol."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._guard.admit(self):
            transport.write(BUSY_RESPONSE)
            transport.close()  # the descriptor goes back at once; aiohttp never sees this connection
            return
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._guard.limits.header_timeout, self._head_overdue)
        self._inner = self._guard.make_protocol()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._guard.release(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def request_started(self) -> None:
        self._stop_head_timer()
        self._guard.busy(self)

    def request_finished(self) -> None:
        self._guard.waiting(self)

    def close(self) -> None:
        self._stop_head_timer()
        if self.transport is not None:
            self.transport.close()

    def _head_overdue(self) -> None:
        self._head_timer = None
        self._guard.stats.header_timeouts += 1
        self._guard.throttle.log(
            "header timeout",
            logging.INFO,
            "closed a webhook connection that sent no request within %.1f s",
            self._guard.limits.header_timeout,
            more="webhook connections closed for sending no request in time",
        )
        self.close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


@dataclass
class ConnectionGuard:
    """Admits, evicts and times out the receiver's connections. `protocol_factory` goes to
    `loop.create_server`; `make_protocol` builds aiohttp's protocol for an admitted connection (the
    runner's `server`); the app reports each request's start and end through `request_started` and
    `request_finished` (a middleware), which tells busy connections from waiting ones."""

    limits: ConnectionLimits
    make_protocol: Callable[[], asyncio.Protocol]
    throttle: LogThrottle  # shared with the receiver's handlers; its owner closes it
    stats: ConnectionStats = field(default_factory=ConnectionStats)

    def __post_init__(self) -> None:
        self._open: set[_Connection] = set()
        # Admitted and not in a request, longest waiting first: the ones to close when a newcomer needs room.
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()
        self._accept_filter = _AcceptErrorFilter(self)

    def protocol_factory(self) -> asyncio.Protocol:
        return _Connection(self)

    def snapshot(self) -> ConnectionStats:
        return replace(self.stats, open=len(self._open))

    def install(self) -> None:
        logging.getLogger("asyncio").addFilter(self._accept_filter)
        warning = descriptor_warning(self.limits.max_connections)
        if warning:
            log.warning("%s", warning)

    def close(self) -> None:
        """Close what is still open (after the listener and aiohttp have stopped) and unhook."""
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._waiting.clear()
        logging.getLogger("asyncio").removeFilter(self._accept_filter)

    # ----- called by the connections -------------------------------------------------------------------

    def admit(self, connection: _Connection) -> bool:
        if len(self._open) >= self.limits.max_connections:
            if not self._waiting:
                self.stats.refused += 1
                self.throttle.log(
                    "refused",
                    logging.WARNING,
                    "refused a webhook connection: all %d are busy with requests (webhooks.max_connections)",
                    self.limits.max_connections,
                    more="webhook connections refused, all busy",
                )
                return False
            oldest, _ = self._waiting.popitem(last=False)
            self._open.discard(oldest)
            oldest.close()
            self.stats.evicted += 1
            self.throttle.log(
                "evicted",
                logging.WARNING,
                "%d webhook connections open (webhooks.max_connections): closing the longest idle for each new one",
                self.limits.max_connections,
                more="idle webhook connections closed to make room",
            )
        self._open.add(connection)
        self._waiting[connection] = None
        self.stats.admitted += 1
        return True

    def busy(self, connection: _Connection) -> None:
        self._waiting.pop(connection, None)

    def waiting(self, connection: _Connection) -> None:
        if connection in self._open:
            self._waiting[connection] = None
            self._waiting.move_to_end(connection)

    def release(self, connection: _Connection) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)

    # ----- called by the app, per request --------------------------------------------------------------

    @staticmethod
    def request_started(transport: asyncio.BaseTransport | None) -> _Connection | None:
        connection = transport.get_protocol() if transport is not None else None
        if not isinstance(connection, _Connection):
            return None
        connection.request_started()
        return connection


def descriptor_warning(max_connections: int) -> str | None:
    """A warning when the receiver may hold more than a quarter of the process's file descriptors: the
    rest are the bot's sockets to Discord and the providers, its database and its downloads."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or max_connections * 4 <= soft:
        return None
    return (
        f"webhooks.max_connections is {max_connections} but the process may open only {soft} files: raise the "
        "limit (ulimit -n, LimitNOFILE=) or lower max_connections, or the bot may run out of sockets"
    )
