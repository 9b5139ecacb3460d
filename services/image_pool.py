"""Image checks in worker processes, so a hostile file costs one worker a bounded slice and never the
event loop, other members' commands or the clip writes (which share the loop's default thread pool).

`services.images` bounds the work by the file's structure; this module adds hard limits that hold even
if that budget is wrong, or if Pillow or a codec has a slow path nobody has found yet:
- CPU: RLIMIT_CPU of CPU_SECONDS per check; the kernel kills the worker at the limit, even inside C.
- Memory: RLIMIT_AS of MEMORY_BYTES above what a fresh worker has mapped; an allocation past it fails,
  which Python reports as MemoryError and libjpeg/libwebp as a broken stream: both are refused as
  "too complex" (services.images tells the second from damage).
- Wall clock: TIMEOUT_SECONDS per check, after which pebble kills the worker (a starved or stuck one).
Each worker checks ONE image and exits (pebble's max_tasks=1): nothing a hostile file did to a worker's
heap, CPU account or peak memory is inherited by the next member's check, and the per-check CPU limit
is simply the process's. Workers are forked from multiprocessing's fork server, which has already
imported Pillow, and do not re-import the bot's main module: a worker costs a fork (~5 ms of CPU, ~20 MB),
not an interpreter start.

Concurrency: WORKERS checks run at once; at most MAX_PENDING are admitted (running or queued), each
holding its file (≤ 20 MiB) until it is checked; one more is refused at once as busy. So a flood of
bombs from one member costs at most MAX_PENDING × 20 MiB of queued bytes and WORKERS workers' limits.

The pool starts on the first check (tests start many bots that never check an image), from a thread so
the fork server's start does not block the loop. `close()` kills the workers, in-flight checks
included: a shutdown never waits for a bomb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import spawn
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool
from pebble.pool.process import WORKERS_NAME

from core.errors import UserError
from core.spec import ImageInput
from core.text import N_, tr
from services.image_structure import Budget
from services.images import DEFAULT_BUDGET, TOO_COMPLEX, inspect_image

log = logging.getLogger(__name__)

WORKERS = 2
MAX_PENDING = 8
CPU_SECONDS = 2
MEMORY_BYTES = 512 * 1024 * 1024  # a 16 MP WebP decode peaks near 310 MB; nothing hostile near it
TIMEOUT_SECONDS = 15.0
CLOSE_SECONDS = 3.0  # how long close() waits for pebble to reap the killed workers (~0.2 s in practice)

BUSY = N_("Many images are being checked right now. Please try again in a minute.")
UNAVAILABLE = N_("I could not check your image just now. Please try again in a minute.")

# The fork server: workers are forked from a small process that has imported what they need (the
# Pillow plugins too, or each worker would import all of them on its first open), instead of forking
# the bot itself (threads, sockets, caches) or starting a new interpreter for every check.
_CONTEXT = multiprocessing.get_context("forkserver")
_PRELOAD = ["services.image_pool", "PIL.JpegImagePlugin", "PIL.PngImagePlugin", "PIL.WebPImagePlugin"]
_real_preparation_data = spawn.get_preparation_data


def worker_context() -> multiprocessing.context.BaseContext:
    """The fork server context, set up for image workers (also used by bench/images.py)."""
    _CONTEXT.set_forkserver_preload(_PRELOAD)  # read when the fork server starts (once per process)
    spawn.get_preparation_data = _preparation_data
    return _CONTEXT


def _preparation_data(name: str) -> dict[str, Any]:
    """multiprocessing makes every child re-import the parent's main module before it runs: for
    `python bot.py` that is all of discord.py, ~0.4 s of CPU and ~40 MB in every worker, i.e. for every
    check. The fork server's remedy (preloading "__main__") does nothing on Python 3.11 (it reads a key
    that the preparation data does not have). Nothing a worker unpickles lives in the main module, so our
    workers (pebble names them all alike) are prepared without it; any other process is left alone."""
    data = _real_preparation_data(name)
    if name == WORKERS_NAME:
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


Result = TypeVar("Result")


@dataclass(frozen=True)
class Verdict:
    """What a worker sends back: the description, or the refusal. Never the bytes (they stay here)."""

    mime: str = ""
    width: int = 0
    height: int = 0
    refusal: str | None = None  # a core.text.Text: it pickles with its template, so it can be translated


@dataclass(frozen=True)
class Usage:
    """A worker's own resource use for one check (its process checked only that image)."""

    cpu_seconds: float
    peak_rss_bytes: int


# ----- in the worker ------------------------------------------------------------------------------------


def _mapped_bytes() -> int:
    """The address space this process has mapped now (what RLIMIT_AS counts)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def limit_worker(cpu_seconds: int, memory_bytes: int) -> None:
    """pebble's initializer: runs in each new worker before its task."""
    # pebble's SIGTERM handler is Python code, which only runs between bytecodes: a worker inside a
    # long libjpeg call would not die. The default action kills at once (a worker holds nothing).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU's default action would dump core
    limit = _mapped_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = max(1, round(usage.ru_utime + usage.ru_stime + cpu_seconds))
    # SIGXCPU at the soft limit (its default action terminates), SIGKILL one second later.
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))


def check_in_worker(data: bytes, budget: Budget) -> Verdict:
    try:
        image = inspect_image(data, budget)
    except UserError as exc:
        return Verdict(refusal=exc.message)
    return Verdict(image.mime, image.width, image.height)


def measure_in_worker(data: bytes, budget: Budget) -> tuple[Verdict, Usage]:
    verdict = check_in_worker(data, budget)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return verdict, Usage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)  # ru_maxrss is in KiB


# ----- in the bot -----------------------------------------------------------------------------------------


class ImageChecker:
    """`check(data)` runs `inspect_image` in a worker under hard limits; every outcome is an ImageInput
    or a UserError. Owned by the attachment fetcher; `close()` before the loop ends."""

    def __init__(
        self,
        *,
        workers: int = WORKERS,
        max_pending: int = MAX_PENDING,
        cpu_seconds: int = CPU_SECONDS,
        memory_bytes: int = MEMORY_BYTES,
        timeout: float = TIMEOUT_SECONDS,
        budget: Budget = DEFAULT_BUDGET,
    ) -> None:
        self._workers = workers
        self._max_pending = max_pending
        self._limits = (cpu_seconds, memory_bytes)
        self._timeout = timeout
        self._budget = budget
        self._pool: ProcessPool | None = None
        self._starting = asyncio.Lock()
        self._admitted = 0
        self._futures: set[Future[Any]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Checks admitted and not finished (queued or running)."""
        return self._admitted

    @property
    def running(self) -> int:
        """Checks a worker is executing right now."""
        return sum(1 for future in self._futures if future.running())

    async def check(self, data: bytes) -> ImageInput:
        verdict = await self._run(check_in_worker, data)
        return self._image(data, verdict)

    async def measure(self, data: bytes) -> tuple[ImageInput | UserError, Usage | None]:
        """The same check, with the worker's CPU time and peak RSS (None when the worker was killed).
        For tests and `bench/images.py`: they prove the bound per file."""
        try:
            verdict, usage = await self._run(measure_in_worker, data)
        except UserError as exc:
            return exc, None
        try:
            return self._image(data, verdict), usage
        except UserError as exc:
            return exc, usage

    async def close(self) -> None:
        """Kill the workers now, in-flight checks included; their callers get UNAVAILABLE."""
        self._closed = True
        pool, self._pool = self._pool, None
        for future in list(self._futures):
            future.cancel()
        if pool is None:
            return
        pool.stop()
        # pebble's join terminates the workers and reaps its threads; it blocks, so it runs on a daemon
        # thread (not the loop's executor, which the loop's own shutdown would wait for).
        loop = asyncio.get_running_loop()
        joined = asyncio.Event()

        def join() -> None:
            pool.join()
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                loop.call_soon_threadsafe(joined.set)

        threading.Thread(target=join, name="image-pool-close", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_SECONDS):
                await joined.wait()

    # ----- internals -------------------------------------------------------------------------------------

    @staticmethod
    def _image(data: bytes, verdict: Verdict) -> ImageInput:
        if verdict.refusal is not None:
            raise UserError(verdict.refusal)
        return ImageInput(data=data, mime=verdict.mime, width=verdict.width, height=verdict.height)

    async def _run(self, function: Callable[[bytes, Budget], Result], data: bytes) -> Result:
        if self._closed:
            raise UserError(tr(UNAVAILABLE))
        if self._admitted >= self._max_pending:
            raise UserError(tr(BUSY))
        self._admitted += 1
        try:
            pool = await self._started()
            future = pool.schedule(function, args=(data, self._budget), timeout=self._timeout)
            self._futures.add(future)
            try:
                # pebble times the check out itself; this is the backstop should a task ever be lost.
                async with asyncio.timeout(self._timeout * 2 + 5):
                    return await asyncio.wrap_future(future)
            finally:
                self._futures.discard(future)
        except TimeoutError:
            log.warning("image check stopped: over its %.0f s timeout; its worker was killed", self._timeout)
            raise UserError(tr(TOO_COMPLEX)) from None
        except ProcessExpired as exc:
            # Killed by RLIMIT_CPU (SIGXCPU, then SIGKILL) or crashed in a codec: the file is refused.
            log.warning("image check stopped: its worker died (%s)", _exit_reason(exc.exitcode))
            raise UserError(tr(TOO_COMPLEX)) from None
        except (asyncio.CancelledError, FutureCancelled):
            task = asyncio.current_task()
            if self._closed and (task is None or not task.cancelling()):
                raise UserError(tr(UNAVAILABLE)) from None  # close() killed the check, not our caller
            raise
        except UserError:
            raise
        except Exception:
            log.exception("image check failed")
            await self._discard_pool()
            raise UserError(tr(UNAVAILABLE)) from None
        finally:
            self._admitted -= 1

    async def _started(self) -> ProcessPool:
        async with self._starting:
            if self._pool is None or not self._pool.active:  # never started, or pebble gave up on it
                await self._discard_pool()
                pool = await asyncio.to_thread(self._new_pool)
                if self._closed:  # close() ran while the pool was starting
                    self._pool = pool
                    await self._discard_pool()
                    raise UserError(tr(UNAVAILABLE))
                self._pool = pool
            return self._pool

    def _new_pool(self) -> ProcessPool:
        pool = ProcessPool(
            max_workers=self._workers,
            max_tasks=1,
            initializer=limit_worker,
            initargs=self._limits,
            context=worker_context(),
        )
        _ = pool.active  # starts the pool (and the fork server, the first time): blocking, hence a thread
        return pool

    async def _discard_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            threading.Thread(target=pool.join, name="image-pool-discard", daemon=True).start()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"
