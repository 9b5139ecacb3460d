"""Rendering a `JobCard` as a Discord embed (and its buttons). Pure: no I/O."""

from __future__ import annotations

import discord

from core.spec import MODEL_LABELS
from services.pricing import format_usd
from services.progress import JobCard
from services.prompts import display_safe

COLOURS = {
    "validating": 0x95A5A6,
    "queued": 0x95A5A6,
    "generating": 0x3498DB,
    "downloading": 0x3498DB,
    "posting": 0x3498DB,
    "done": 0x2ECC71,
    "failed": 0xE74C3C,
    "cancelled": 0x95A5A6,
}
TITLES = {
    "validating": "Checking your request…",
    "queued": "Queued",
    "generating": "Generating",
    "downloading": "Downloading the clip",
    "posting": "Posting the clip",
    "done": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


def progress_bar(percent: int) -> str:
    filled = max(0, min(percent // 10, 10))
    return "▰" * filled + "▱" * (10 - filled)


def status_line(card: JobCard) -> str:
    if card.stage == "queued":
        return (
            f"Waiting in the provider's queue (position {card.queue_position})."
            if card.queue_position
            else ("Waiting for the video service to start.")
        )
    if card.stage == "generating":
        parts = [f"Started <t:{int(card.started_at)}:R>"] if card.started_at else []
        if card.percent is not None:
            parts.append(f"{progress_bar(card.percent)} ~{card.percent}%")
        if card.eta_seconds:
            parts.append(f"about {card.eta_seconds} s left")
        return " · ".join(parts) or "Generating…"
    if card.stage == "done":
        took = f" in {card.took_seconds} s" if card.took_seconds is not None else ""
        return f"Finished{took}."
    if card.stage in ("failed", "cancelled"):
        return card.message
    return ""


def settings_line(card: JobCard) -> str:
    model = MODEL_LABELS.get(card.model, card.model)
    kind = "text → video" if card.command == "video" else "image → video"
    return f"{model} · {kind} · {card.quality} {card.resolution} · {card.duration} s"


def render(card: JobCard) -> discord.Embed:
    title = f"{TITLES[card.stage]} · job #{card.job_id}"
    embed = discord.Embed(title=title, colour=COLOURS[card.stage])
    prompt = display_safe(card.prompt, 1000) if card.prompt else "*(no prompt)*"
    lines = [f"> {prompt}", "", status_line(card)]
    if card.lineage:
        lines += ["", f"↪ {card.lineage}"]
    if card.link:
        lines += ["", f"{card.message}\n{card.link}"]
    if card.notice:
        lines += ["", f"*{card.notice}*"]
    embed.description = "\n".join(line for line in lines if line is not None).strip()
    embed.add_field(name="Settings", value=settings_line(card), inline=False)
    if card.defaults:
        embed.add_field(name="Your defaults", value=card.defaults, inline=False)
    cost = "free" if card.cost_micros == 0 else format_usd(card.cost_micros)
    charged = " (refunded)" if card.stage in ("failed", "cancelled") else ""
    embed.add_field(name="Cost", value=f"{cost}{charged}")
    embed.add_field(name="Requested by", value=f"<@{card.requester_id}>")
    if card.free:
        embed.set_footer(text="Preview: a free local render to try the bot out, not a real generation.")
    else:
        embed.set_footer(text=f"via {card.provider}")
    return embed
