"""What bench/images.py runs in its worker processes (a module of its own: functions defined in the
script `python -m bench.images` runs as __main__ could not be found by the workers)."""

from __future__ import annotations

import resource
import threading

from bench import old_images
from core.errors import UserError


def outcome(result: object) -> str:
    if isinstance(result, UserError):
        text = result.message
        for key in ("too complex", "damaged", "megapixels", "short side", "Animated"):
            if key in text:
                return f"refused: {key}"
        return "refused: " + text[:30]
    return f"accepted {getattr(result, 'width', '?')}×{getattr(result, 'height', '?')}"


def old_check_in_a_thread(data: bytes) -> tuple[str, float, int]:
    """In a fresh worker process: the old check in a thread, as the bot ran it; then this process's use."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(old_images.inspect_image(data))
        except UserError as exc:
            box.append(exc)
        except Exception as exc:  # the old check could let other exceptions out: show them
            box.append(UserError(f"{type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return outcome(box[0]), usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
