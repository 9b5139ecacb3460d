"""What every cog is built from: the services it may call, as the composition root assembled them."""

from __future__ import annotations

from dataclasses import dataclass

from cogs.attachments import DISCORD_CDN
from cogs.buttons import ButtonRouter
from cogs.funnel import ErrorFunnel
from core.defaults import DefaultsStore
from core.history import HistoryReader
from core.reports import SpendReader
from services.admin import AdminService
from services.contests import ContestService
from services.jobs import JobService
from services.moderation import ModerationService
from services.notices import LogChannel
from services.outputs import OutputKeeper
from services.quotas import QuotaBook
from services.review import ReviewService


@dataclass(frozen=True)
class CogContext:
    jobs: JobService
    quotas: QuotaBook
    buttons: ButtonRouter
    funnel: ErrorFunnel
    admin: AdminService | None = None  # /admin (None: not offered, as in tests of other cogs)
    notices: LogChannel | None = None  # the client attaches how to post to a server's log channel
    admin_role_ids: frozenset[int] = frozenset()  # roles that may use /admin besides Manage Server
    spend: SpendReader | None = None  # the ledger as /admin spend reads it
    defaults: DefaultsStore | None = None  # members' /settings (None: not offered, the commands use built-ins)
    # After this many seconds a job's card is edited with the bot token instead of the interaction's
    # (which Discord expires at 15 minutes: docs/discord.md).
    handover_seconds: float = 840
    # Where attachments may be downloaded from (cogs.attachments.cdn_origins).
    cdn_origins: tuple[str, ...] = DISCORD_CDN
    history: HistoryReader | None = None  # /history and /show (None: not offered)
    outputs: OutputKeeper | None = None  # the kept clips /show posts again (None: none kept)
    moderation: ModerationService | None = None  # /mod and the blocklist check (None: not offered)
    review: ReviewService | None = None  # review mode (None: not offered)
    contests: ContestService | None = None  # /contest, the gallery and its votes (None: not offered)
