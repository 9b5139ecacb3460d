"""Rendering a `JobCard` (and the card listing a request's variants) as a Discord embed, in the server's
language. Pure: no I/O. Every piece is a catalogue message rendered with `locale`; the card's own texts
(message, notice, lineage, defaults) may be `Text` values from services and are rendered the same way."""

from __future__ import annotations

import discord

from core.spec import MODEL_LABELS
from core.text import N_, tr
from services.i18n import localise
from services.pricing import format_usd
from services.progress import JobCard
from services.prompts import display_safe
from services.variants import Mark, SetCard

ENGLISH = "en-US"
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
    "validating": N_("Checking your request…"),
    "queued": N_("Queued"),
    "generating": N_("Generating"),
    "downloading": N_("Downloading the clip"),
    "posting": N_("Posting the clip"),
    "done": N_("Done"),
    "failed": N_("Failed"),
    "cancelled": N_("Cancelled"),
}
TITLE = N_("{stage} · job #{job_id}")
NO_PROMPT = N_("*(no prompt)*")
PREVIEW_FOOTER = N_("Preview: a free local render to try the bot out, not a real generation.")
MARKS: dict[Mark, str] = {
    "waiting": N_("#{job_id} ⏳"),
    "running": N_("#{job_id} 🎬"),
    "done": N_("#{job_id} ✅"),
    "failed": N_("#{job_id} ❌ refunded"),
    "cancelled": N_("#{job_id} ✖️ refunded"),
}


def progress_bar(percent: int) -> str:
    filled = max(0, min(percent // 10, 10))
    return "▰" * filled + "▱" * (10 - filled)


def status_line(card: JobCard, locale: str = ENGLISH) -> str:
    def say(text: str) -> str:
        return localise(text, locale)

    if card.stage == "queued":
        if card.queue_position:
            return say(tr("Waiting in the provider's queue (position {position}).", position=card.queue_position))
        return say(tr("Waiting for the video service to start."))
    if card.stage == "generating":
        when = f"<t:{int(card.started_at)}:R>" if card.started_at else ""
        parts = [say(tr("Started {when}", when=when))] if when else []
        if card.percent is not None:
            parts.append(f"{progress_bar(card.percent)} ~{card.percent}%")
        if card.eta_seconds:
            parts.append(say(tr("about {seconds} s left", seconds=card.eta_seconds)))
        return " · ".join(parts) or say(tr("Generating…"))
    if card.stage == "done":
        if card.took_seconds is not None:
            return say(tr("Finished in {seconds} s.", seconds=card.took_seconds))
        return say(tr("Finished."))
    if card.stage in ("failed", "cancelled"):
        return say(card.message)
    return ""


def settings_line(card: JobCard, locale: str = ENGLISH) -> str:
    model = MODEL_LABELS.get(card.model, card.model)
    kind = tr("text → video") if card.command == "video" else tr("image → video")
    return localise(
        tr(
            "{model} · {kind} · {quality} {resolution} · {duration} s",
            model=model,
            kind=kind,
            quality=card.quality,
            resolution=card.resolution,
            duration=card.duration,
        ),
        locale,
    )


def render(card: JobCard, locale: str = ENGLISH) -> discord.Embed:
    def say(text: str) -> str:
        return localise(text, locale)

    title = say(tr(TITLE, stage=tr(TITLES[card.stage]), job_id=card.job_id))
    embed = discord.Embed(title=title, colour=COLOURS[card.stage])
    prompt = display_safe(card.prompt, 1000) if card.prompt else say(tr(NO_PROMPT))
    lines = [f"> {prompt}", "", status_line(card, locale)]
    if card.lineage:
        lines += ["", f"↪ {say(card.lineage)}"]
    if card.link:
        lines += ["", f"{say(card.message)}\n{card.link}"]
    if card.notice:
        lines += ["", f"*{say(card.notice)}*"]
    embed.description = "\n".join(line for line in lines if line is not None).strip()
    embed.add_field(name=say(tr("Settings")), value=settings_line(card, locale), inline=False)
    if card.defaults:
        embed.add_field(name=say(tr("Your defaults")), value=say(card.defaults), inline=False)
    cost = tr("free") if card.cost_micros == 0 else format_usd(card.cost_micros)
    if card.stage in ("failed", "cancelled"):
        cost = tr("{cost} (refunded)", cost=cost)
    embed.add_field(name=say(tr("Cost")), value=say(cost))
    embed.add_field(name=say(tr("Requested by")), value=f"<@{card.requester_id}>")
    if card.free:
        embed.set_footer(text=say(tr(PREVIEW_FOOTER)))
    else:
        embed.set_footer(text=say(tr("via {provider}", provider=card.provider)))
    return embed


def render_set(summary: SetCard, locale: str = ENGLISH) -> discord.Embed:
    """The card listing one request's variants: each one's state, and the settings they share."""

    def say(text: str) -> str:
        return localise(text, locale)

    first, ids = summary.first, [job_id for job_id, _ in summary.marks]
    title = say(tr("{n} variants · jobs #{first}–#{last}", n=summary.count, first=ids[0], last=ids[-1]))
    if not summary.final:
        colour = COLOURS["generating"]
    else:
        colour = COLOURS["done"] if summary.tally("done") else COLOURS["failed"]
    embed = discord.Embed(title=title, colour=colour)
    prompt = display_safe(first.prompt, 1000) if first.prompt else say(tr(NO_PROMPT))
    states = " · ".join(say(tr(MARKS[mark], job_id=job_id)) for job_id, mark in summary.marks)
    lines = [f"> {prompt}", "", states]
    if summary.final:
        done = summary.tally("done")
        lines += ["", say(tr("All finished: {done} of {n} ready.", done=done, n=summary.count))]
    else:
        lines += ["", say(tr("Each clip is posted below as it finishes."))]
    embed.description = "\n".join(lines)
    embed.add_field(name=say(tr("Settings")), value=settings_line(first, locale), inline=False)
    each = tr("free") if first.cost_micros == 0 else format_usd(first.cost_micros)
    embed.add_field(name=say(tr("Cost")), value=say(tr("{cost} each; failed ones are refunded", cost=each)))
    embed.add_field(name=say(tr("Requested by")), value=f"<@{first.requester_id}>")
    return embed
