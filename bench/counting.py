"""Counting what crossed the wire, per job, from the stand-ins' request logs."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable

from bench.stand_ins import BenchDiscord, BenchWaveSpeed, Transfer

Owner = Callable[[re.Match[str]], int | None]


def discord_requests(
    discord: BenchDiscord, job_of_token: dict[str, int], job_of_message: dict[int, int]
) -> tuple[Counter[str], dict[int, Transfer]]:
    """Requests the jobs made to Discord, by kind, and each job's clip upload. A job is found by its
    interaction token (webhook routes) or by its card's message id (bot-token routes)."""
    by_token: Owner = lambda m: job_of_token.get(m[1])  # noqa: E731
    by_message: Owner = lambda m: job_of_message.get(int(m[1]))  # noqa: E731
    kinds: list[tuple[str, re.Pattern[str], Owner, str]] = [
        ("POST", re.compile(r"/interactions/\d+/([^/]+)/callback"), by_token, "ack"),
        ("PATCH", re.compile(r"/webhooks/\d+/([^/]+)/messages/@original"), by_token, "receipt_edit"),
        ("POST", re.compile(r"/webhooks/\d+/([^/]+)"), by_token, "card_post"),
        ("PATCH", re.compile(r"/webhooks/\d+/([^/]+)/messages/\d+"), by_token, "card_edit"),
        ("PATCH", re.compile(r"/channels/\d+/messages/(\d+)"), by_message, "card_edit"),
        ("POST", re.compile(r"/channels/\d+/messages"), lambda m: -1, "card_repost"),
    ]
    counts: Counter[str] = Counter()
    for record in discord.requests:
        for method, pattern, owner, name in kinds:
            match = pattern.fullmatch(record.path)
            if match is None or record.method != method:
                continue
            if owner(match) is not None:
                counts["clip_upload" if record.files and name == "card_edit" else name] += 1
            break
    counts["total"] = sum(counts.values())
    uploads: dict[int, Transfer] = {}
    for transfer in discord.uploads:
        path = transfer.path.removeprefix("/api/v10")
        token = re.fullmatch(r"/webhooks/\d+/([^/]+)/messages/\d+", path)
        message = re.fullmatch(r"/channels/\d+/messages/(\d+)", path)
        index = job_of_token.get(token[1]) if token else job_of_message.get(int(message[1])) if message else None
        if index is not None:
            uploads[index] = transfer
    return counts, uploads


def provider_requests(fake: BenchWaveSpeed) -> Counter[str]:
    counts: Counter[str] = Counter()
    for record in fake.requests:
        if record.method == "POST" and record.path.startswith("/api/v3/minimax/"):
            counts["submit"] += 1
        elif record.method == "GET" and record.path.startswith("/api/v3/predictions/"):
            counts["poll"] += 1
        elif record.method == "GET" and record.path.startswith("/outputs/"):
            counts["download"] += 1
        else:
            counts["other"] += 1
    counts["total"] = counts["submit"] + counts["poll"] + counts["download"] + counts["other"]
    return counts


def poll_times(fake: BenchWaveSpeed) -> dict[str, list[float]]:
    """task id -> when each of its polls was answered (time.time())."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in fake.requests:
        if record.method == "GET" and record.path.startswith("/api/v3/predictions/"):
            times[record.path.split("/")[4]].append(record.at)
    return times


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best
