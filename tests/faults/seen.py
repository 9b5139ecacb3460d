"""What users saw: job cards, posted clips and private receipts, read from the Discord stand-in."""

from __future__ import annotations

import re

from tests.fakes.discord_server import FakeInteraction, FakeMessage

_TITLE = re.compile(r"^(?P<stage>[^·]+?) · job #(?P<id>\d+)$")


def title_of(message: FakeMessage) -> tuple[str, int] | None:
    """(stage, job id) from a job card's title ("Posting the clip · job #12")."""
    match = _TITLE.match(str(message.embeds[0].get("title") or "")) if message.embeds else None
    return (match["stage"], int(match["id"])) if match else None


def card_of(message: FakeMessage) -> tuple[str, int] | None:
    """(stage, job id) of a public job card still in the channel."""
    return None if message.deleted or message.ephemeral else title_of(message)


def summary(message: FakeMessage) -> str:
    """One line for a failure report: what the message shows now."""
    title = message.embeds[0].get("title") if message.embeds else repr(message.content[:60])
    notice = " [restart notice]" if message.embeds and "restart" in str(message.embeds[0].get("description")) else ""
    files = [a["filename"] for a in message.attachments]
    state = "deleted" if message.deleted else "ephemeral" if message.ephemeral else "public"
    return f"message {message.id} ({state}, {message.edits} edits): {title}{notice}; files {files}; " \
           f"buttons {message.custom_ids()}"  # fmt: skip


def carries_clip(message: FakeMessage, job_id: int) -> bool:
    """The message holds this job's posted result: its mp4, or its Re-roll button (also on link results)."""
    if message.deleted:
        return False
    files = {attachment["filename"] for attachment in message.attachments}
    return f"hailuo-{job_id}.mp4" in files or f"hailuo:reroll:{job_id}" in message.custom_ids()


def shows_result(message: FakeMessage, job_id: int) -> bool:
    """A finished card with the clip attached or the provider's link in it."""
    card = card_of(message)
    if card != ("Done", job_id):
        return False
    has_link = "http" in str(message.embeds[0].get("description") or "")
    return any(a["filename"] == f"hailuo-{job_id}.mp4" for a in message.attachments) or has_link


def shows_failure(message: FakeMessage, job_id: int) -> bool:
    card = card_of(message)
    return card is not None and card[1] == job_id and card[0] in ("Failed", "Cancelled")


def about(message: FakeMessage, job_id: int) -> bool:
    """A card of the job (even deleted), a message with its clip, or the requester's mention."""
    title = title_of(message)
    return (
        (title is not None and title[1] == job_id)
        or carries_clip(message, job_id)
        or (f"job #{job_id})" in message.content)
    )


def told_privately(interaction: FakeInteraction | None) -> bool:
    """The user's private receipt says nothing was charged (the job ended before its card was posted, or the
    command failed on the bot's side)."""
    original = interaction.original() if interaction is not None else None
    return original is not None and "Nothing was charged" in original.content
