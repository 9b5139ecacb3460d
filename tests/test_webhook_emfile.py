"""Out of file descriptors: asyncio fails every accept() on the webhook port and logs each failure with a
traceback. In a child process (its own descriptor limit) the receiver must log that once, then a count,
and serve again once descriptors are back."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

CHILD = r"""
import asyncio, asyncio.constants, errno, json, logging, resource, socket, sys

# asyncio retries a failed accept() after ACCEPT_RETRY_DELAY (1 s), logging each failure; a short delay
# turns a minute of trouble into a fraction of a second here.
asyncio.constants.ACCEPT_RETRY_DELAY = 0.01

from webhook_guard import ConnectionLimits
from webhooks import WebhookReceiver


failed_accepts = 0
_accept = socket.socket.accept


def counting_accept(sock):  # counts what asyncio meets, whatever the receiver makes of it
    global failed_accepts
    try:
        return _accept(sock)
    except OSError as exc:
        failed_accepts += exc.errno == errno.EMFILE
        raise


socket.socket.accept = counting_accept


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append([record.name, record.levelname, record.getMessage().splitlines()[0]])


async def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    lines = Lines()
    logging.getLogger().addHandler(lines)
    logging.getLogger().setLevel(logging.INFO)

    async def on_signal(provider, task_id):
        return True

    limits = ConnectionLimits(max_connections=16)
    rx = WebhookReceiver({}, on_signal, path_token="t" * 20, host="127.0.0.1", port=0, limits=limits)
    await rx.start()
    hog = []  # the rest of the bot, holding every descriptor left
    try:
        while True:
            hog.append(open("/dev/null"))
    except OSError:
        pass
    print(json.dumps({"port": rx.port}), flush=True)
    async with asyncio.timeout(60):
        while failed_accepts < 100:  # the parent's connection waits in the backlog meanwhile
            await asyncio.sleep(0.01)
    for f in hog:
        f.close()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the parent got its answer
    await rx.stop()
    stats = vars(rx.connection_stats())
    print(json.dumps({"failed_accepts": failed_accepts, "stats": stats, "lines": lines.lines}), flush=True)


asyncio.run(main())
"""


async def test_out_of_descriptors_the_accept_errors_are_logged_once_then_counted(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        async with asyncio.timeout(120):
            port = json.loads(await child.stdout.readline())["port"]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()  # served once the child has descriptors again
            writer.close()
            child.stdin.write(b"done\n")
            report = json.loads(await child.stdout.readline())
            assert await child.wait() == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
    accept_lines = [line for line in report["lines"] if "accept" in line[2]]
    assert len(accept_lines) == 2, accept_lines  # asyncio's first error, then one line with the count
    assert accept_lines[0][:2] == ["asyncio", "ERROR"]
    assert accept_lines[1][1] == "ERROR" and accept_lines[1][2].startswith(
        f"{report['stats']['accept_errors'] - 1} more failed accepts"
    )
    assert len(report["lines"]) <= 8, report["lines"]  # bounded: a few start-up and stop lines, not one per accept
    assert report["failed_accepts"] >= 100 and report["stats"]["admitted"] == 1
    assert report["stats"]["accept_errors"] == report["failed_accepts"]
