"""Moderation before anything is public: a server's blocklist checked on the cleaned prompt before anything
is reserved, and strikes — a blocked prompt, or a provider's moderation verdict — that can freeze a member.

Prompts are cleaned before matching (Unicode NFKC folds full-width letters, zero-width and other format
characters are dropped, case is folded, runs of spaces become one), so "ＢＡＤ", "b\u200bad" and "Bad"
are the same word. Admins' regular expressions run on RE2, which matches in time linear in the prompt's
length whatever the pattern: no catastrophic backtracking, however the pattern was written. A pattern RE2
cannot run (backreferences, lookarounds) is refused when it is added, with the reason.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import re2

from core.admin import AdminStore, AuditLine
from core.clock import utcnow
from core.errors import UserError
from core.moderation import BlockRule, ModerationStore, RuleKind, Strike
from core.text import N_, tr
from services.notices import LogChannel

log = logging.getLogger(__name__)

MAX_RULES = 200  # per server
MAX_WORD = 100
MAX_REGEX = 200
STRIKE_WINDOW = timedelta(hours=24)
_WORD_CHARS = re.compile(r"^\w+$", re.ASCII)
_SPACES = re.compile(r"\s+")

BLOCKED = N_("Your prompt contains a blocked term: `{term}`. Nothing was charged; change the wording and try again.")
FROZEN_REASON = "moderation: {count} blocks within 24 hours"
Regex = Any  # re2._Regexp: google-re2 ships no type hints


def clean(prompt: str) -> str:
    """The form a prompt is matched in: NFKC, no format characters (zero-width and the like), case
    folded, whitespace runs as one space."""
    folded = unicodedata.normalize("NFKC", prompt)
    visible = "".join(char for char in folded if unicodedata.category(char) != "Cf")
    return _SPACES.sub(" ", visible.casefold()).strip()


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the admin's mistake, answered to them, not a log line
    options.max_mem = 8 << 20  # RE2 falls back to a slower, still linear, engine past this
    options.case_sensitive = False
    return options


def compile_rule(kind: RuleKind, pattern: str) -> Regex:
    """A rule as RE2 runs it. A word is matched whole when it is made of letters and digits in ASCII
    ("ass" does not block "class"); otherwise (Chinese, symbols) as it appears."""
    if kind == "regex":
        return re2.compile(pattern, _options())
    escaped = re2.escape(pattern)
    return re2.compile(rf"\b{escaped}\b" if _WORD_CHARS.match(pattern) else escaped, _options())


@dataclass(frozen=True)
class _Compiled:
    key: tuple[tuple[str, str], ...]
    rules: tuple[Regex, ...]


class Blocklists:
    """Each server's rules compiled once, and again only when they change."""

    def __init__(self) -> None:
        self._compiled: dict[int, _Compiled] = {}

    def first_match(self, guild_id: int, rules: Sequence[BlockRule], prompt: str) -> str | None:
        key = tuple((rule.kind, rule.pattern) for rule in rules)
        compiled = self._compiled.get(guild_id)
        if compiled is None or compiled.key != key:
            built = []
            for kind, pattern in key:
                try:
                    built.append(compile_rule(kind, pattern))
                except re2.error:  # stored before a library change made it invalid: skip, say so
                    log.warning("guild %d: block rule %r no longer compiles; skipped", guild_id, pattern)
            compiled = self._compiled[guild_id] = _Compiled(key, tuple(built))
        text = clean(prompt)
        for regex in compiled.rules:
            found = regex.search(text)
            if found is not None:
                return found.group(0) or text[:40]
        return None


class ModerationService:
    def __init__(
        self,
        store: ModerationStore,
        admin: AdminStore | None = None,
        notices: LogChannel | None = None,
        *,
        strikes_to_freeze: int = 0,
    ) -> None:
        self.store = store
        self.admin = admin
        self.notices = notices or LogChannel()
        self.strikes_to_freeze = strikes_to_freeze
        self.blocklists = Blocklists()

    # ----- the check every new job passes ---------------------------------------------------------------

    async def check_prompt(self, prompt: str, guild_id: int | None, user_id: int) -> None:
        """Refuse (UserError) a prompt the server's blocklist matches, and count the strike."""
        if guild_id is None or not prompt:
            return
        rules = await self.store.block_rules(guild_id)
        if not rules:
            return
        term = self.blocklists.first_match(guild_id, rules, prompt)
        if term is None:
            return
        shown = term[:40]
        line = AuditLine(guild_id, user_id, "prompt blocked", f"<@{user_id}>", "", shown)
        await self._strike(Strike(guild_id, user_id, "blocklist", None, shown), line)
        raise UserError(tr(BLOCKED, term=shown.replace("`", "ˋ")))

    async def provider_verdict(self, guild_id: int | None, user_id: int, job_id: int, detail: str = "") -> None:
        """A provider's content filter blocked job `job_id`: one strike (once per job)."""
        if guild_id is None:
            return
        line = AuditLine(guild_id, user_id, "provider blocked", f"job #{job_id} by <@{user_id}>", "", detail[:100])
        await self._strike(Strike(guild_id, user_id, "provider", job_id, detail), line)

    async def _strike(self, strike: Strike, line: AuditLine) -> None:
        now = utcnow()
        if not await self.store.add_strike(strike, now, line):
            return
        await self._announce(strike.guild_id, line)
        if self.strikes_to_freeze <= 0 or self.admin is None:
            return
        count = await self.store.strikes_since(strike.guild_id, strike.user_id, now - STRIKE_WINDOW)
        if count < self.strikes_to_freeze:
            return
        state = await self.admin.server_state(strike.guild_id, strike.user_id)
        if state.frozen_reason is not None:
            return
        reason = FROZEN_REASON.format(count=count)
        freeze = AuditLine(strike.guild_id, strike.user_id, "freeze", f"user {strike.user_id}", "", "frozen", reason)
        await self.admin.freeze(strike.guild_id, strike.user_id, reason, freeze)
        log.info("guild %d: froze user %d after %d strikes in 24 h", strike.guild_id, strike.user_id, count)
        await self._announce(strike.guild_id, freeze)

    async def _announce(self, guild_id: int, line: AuditLine) -> None:
        if self.admin is None:
            return
        controls = await self.admin.controls(guild_id)
        why = f" ({line.reason})" if line.reason else ""
        after = f": {line.after}" if line.after else ""
        await self.notices.post(controls.log_channel_id, f"**{line.action}** {line.target}{after}{why}")

    # ----- what moderators change -----------------------------------------------------------------------

    async def rules(self, guild_id: int) -> list[BlockRule]:
        return await self.store.block_rules(guild_id)

    async def add_rule(self, guild_id: int, actor_id: int, kind: RuleKind, pattern: str) -> str:
        stored = _validated(kind, pattern)
        if len(await self.store.block_rules(guild_id)) >= MAX_RULES:
            raise UserError(tr("This server has {count} blocklist rules, the most it can have.", count=MAX_RULES))
        line = AuditLine(guild_id, actor_id, "block add", f"{kind} `{stored}`", "", "blocked")
        if not await self.store.add_block_rule(guild_id, kind, stored, line):
            return tr("`{pattern}` is on the blocklist already.", pattern=stored)
        await self._announce(guild_id, line)
        return tr("Prompts matching `{pattern}` are now refused.", pattern=stored)

    async def remove_rule(self, guild_id: int, actor_id: int, kind: RuleKind, pattern: str) -> str:
        stored = clean(pattern) if kind == "word" else pattern.strip()
        line = AuditLine(guild_id, actor_id, "block remove", f"{kind} `{stored}`", "blocked", "")
        if not await self.store.remove_block_rule(guild_id, kind, stored, line):
            return tr("`{pattern}` is not on the blocklist.", pattern=stored)
        await self._announce(guild_id, line)
        return tr("`{pattern}` is no longer blocked.", pattern=stored)


def _validated(kind: RuleKind, pattern: str) -> str:
    if kind == "word":
        word = clean(pattern)
        if not 1 <= len(word) <= MAX_WORD:
            raise UserError(tr("A blocked word needs 1 to {limit} characters.", limit=MAX_WORD))
        return word
    regex = pattern.strip()
    if not 1 <= len(regex) <= MAX_REGEX:
        raise UserError(tr("A blocked pattern needs 1 to {limit} characters.", limit=MAX_REGEX))
    try:
        compile_rule("regex", regex)
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UserError(
            tr(
                "`{pattern}` is not a pattern the bot can use ({why}). Patterns use RE2 syntax: no backreferences "
                "or lookarounds.",
                pattern=regex[:60],
                why=why[:80],
            )
        ) from None
    if compile_rule("regex", regex).search("") is not None:
        raise UserError(tr("`{pattern}` matches every prompt (it matches empty text).", pattern=regex[:60]))
    return regex
