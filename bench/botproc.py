"""The bot under test as its own process (`python bot.py`), so its memory and CPU are its own.

Configuration is generated into a temporary folder: the committed price tables, quotas raised so
nothing is refused, WaveSpeed pointed at the local stand-in. Memory and CPU come from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

CONFIG = """\
[bot]
data_dir = "{data_dir}"
log_level = "INFO"
job_deadline_seconds = 900
max_output_mib = 200
progress_edit_interval = 2.0
token_handover_seconds = 840
{health}
[providers]
order = ["wavespeed"]

[providers.wavespeed]
base_url = "{wavespeed_url}"
timeout = 30
typical_seconds = {typical_seconds}

{prices}
[webhooks]
public_base_url = "{webhook_base}"
listen_host = "127.0.0.1"
listen_port = {webhook_port}

# Raised so that no quota refuses a benchmark job (the ledger part tests refusals on its own).
[quotas]
user_daily_videos = 1000000
user_daily_usd = ""
user_monthly_usd = ""
guild_monthly_usd = ""
global_monthly_usd = ""
user_max_in_flight = 1000000
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    folder: Path,
    bot_dir: Path,
    *,
    wavespeed_url: str,
    typical_seconds: float,
    webhooks: bool,
    webhook_port: int | None = None,
    data_dir: Path | None = None,
    extra: str = "",
    bot_settings: tuple[str, ...] = (),
) -> Path:
    """`folder/config.toml`. Several processes of one deployment share a callback URL (`webhook_port`: the
    gateway's receiver), and may share a `data_dir`; `extra` is appended (e.g. a `[workers]` table) and
    `bot_settings` ("key = value" lines) go into `[bot]`."""
    text = (bot_dir / "config.toml").read_text(encoding="utf-8")
    prices = text[text.index("[prices.") : text.index("[webhooks]")]  # exactly what ships
    port = webhook_port or (free_port() if webhooks else 8080)
    path = folder / "config.toml"
    path.write_text(
        CONFIG.format(
            data_dir=data_dir or folder / "data",
            wavespeed_url=wavespeed_url,
            typical_seconds=round(typical_seconds, 3),
            prices=prices,
            webhook_base=f"http://127.0.0.1:{port}" if webhooks else "",
            webhook_port=port,
            # The bot logs its event-loop lag every `health_log_seconds` (where it has that setting).
            health=("health_log_seconds = 5\n" if _knows_health_log(bot_dir) else "")
            + "".join(f"{line}\n" for line in bot_settings),
        ),
        encoding="utf-8",
    )
    if extra:
        with path.open("a", encoding="utf-8") as out:
            out.write("\n" + extra)
    return path


def _knows_health_log(bot_dir: Path) -> bool:
    """Whether the tree under test has `bot.health_log_seconds` (its settings moved to config_sections.py)."""
    sources = [bot_dir / name for name in ("settings.py", "config_sections.py")]
    return any(path.is_file() and "health_log_seconds" in path.read_text(encoding="utf-8") for path in sources)


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    rss_kib: int
    peak_rss_kib: int  # VmHWM: the high-water mark since start
    cpu_s: float  # user + system of the bot itself
    children_cpu_s: float  # of its waited-for children (ffmpeg probes and encodes)
    threads: int


def read_proc(pid: int, now: float) -> ProcSample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    # /proc/<pid>/stat: the command name may hold spaces, so count fields after its closing ')'.
    ticks = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(ticks[i]) for i in (11, 12, 13, 14))
    return ProcSample(
        at=now,
        rss_kib=int(fields["VmRSS"].split()[0]),
        peak_rss_kib=int(fields["VmHWM"].split()[0]),
        cpu_s=(utime + stime) / CLOCK_TICKS,
        children_cpu_s=(cutime + cstime) / CLOCK_TICKS,
        threads=int(fields["Threads"]),
    )


class BotProcess:
    """`python bot.py [args]` (e.g. `worker`) in `folder`, logging to `folder/<log_name>`."""

    def __init__(
        self,
        bot_dir: Path,
        folder: Path,
        config: Path,
        env: dict[str, str],
        *,
        args: tuple[str, ...] = (),
        log_name: str = "bot.log",
    ) -> None:
        self.bot_dir, self.folder, self.config, self.env, self.args = bot_dir, folder, config, env, args
        self.log_path = folder / log_name
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def database(self) -> Path:
        return self.folder / "data" / "hailuo.db"

    async def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONUNBUFFERED": "1",
            "HAILUO_CONFIG": str(self.config),
            **self.env,
        }
        with self.log_path.open("wb") as log:  # a file, not a pipe: a full pipe would stall the bot
            command = [sys.executable, str(self.bot_dir / "bot.py"), *self.args]
            self.proc = await asyncio.create_subprocess_exec(*command, cwd=self.folder, env=env, stdout=log, stderr=log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sample(self, now: float) -> ProcSample | None:
        return read_proc(self.pid, now) if self.proc is not None and self.proc.returncode is None else None

    async def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (the bot stops gracefully), then SIGKILL if it has not exited after `grace` s."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            return await self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot, all cores together (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def tree_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process, of its children it has reaped, and of its live children: a
    PostgreSQL server's postmaster and its backends (which come and go with connections)."""
    own = _cpu_fields(pid)
    if own is None:
        return None
    total = own[0] + own[1] + own[2] + own[3]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = _cpu_fields(int(entry.name), parent=pid)
            if child is not None:
                total += child[0] + child[1]
    return total / CLOCK_TICKS


def _cpu_fields(pid: int, parent: int | None = None) -> tuple[int, int, int, int] | None:
    """utime, stime, cutime, cstime in ticks; None when the process is gone (or not a child of `parent`)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    if parent is not None and int(fields[1]) != parent:
        return None
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return utime, stime, cutime, cstime
