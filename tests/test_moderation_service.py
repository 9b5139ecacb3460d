"""Moderation below Discord: the blocklist matches the cleaned prompt (case, full-width and zero-width
tricks do not get through), admin patterns run in linear time, strikes are counted once and freeze a
member at the configured count, and strikes are append-only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from core.errors import UserError
from services.moderation import ModerationService, clean
from services.notices import LogChannel
from storage.admin import SqlAdminStore
from storage.connect import database_for
from storage.moderation import SqlModerationStore
from storage.sql import ConstraintError, Database

GUILD, MOD, MEMBER = 10, 99, 1001


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[tuple[ModerationService, Database]]:
    async with database_for(db_url) as db:
        service = ModerationService(SqlModerationStore(db), SqlAdminStore(db), LogChannel(), strikes_to_freeze=3)
        yield service, db


def test_cleaning_folds_case_width_and_invisible_characters() -> None:
    assert clean("  ＢＡＤ\u200bword\u2060s  ") == "badwords"
    assert clean("Ｓｐｏｏｋｙ   Cat") == "spooky cat"


@pytest.mark.parametrize(
    "prompt", ["a GORE scene", "a ｇｏｒｅ scene", "a go\u200bre scene", "gore", "a cat, gore!", "A Gore-fest"]
)
async def test_a_blocked_word_is_refused_whatever_its_disguise(
    rig: tuple[ModerationService, Database], prompt: str
) -> None:
    service, _ = rig
    await service.add_rule(GUILD, MOD, "word", "Gore")
    with pytest.raises(UserError, match="blocked term: `gore`"):
        await service.check_prompt(prompt, GUILD, MEMBER)


async def test_a_word_is_matched_whole_and_other_servers_are_not_affected(
    rig: tuple[ModerationService, Database],
) -> None:
    service, _ = rig
    await service.add_rule(GUILD, MOD, "word", "ass")
    await service.check_prompt("a class of students", GUILD, MEMBER)  # not a whole word
    await service.check_prompt("an ass in a field", GUILD + 1, MEMBER)  # another server's blocklist is empty
    await service.add_rule(GUILD, MOD, "word", "血腥")
    with pytest.raises(UserError):
        await service.check_prompt("一个血腥的场景", GUILD, MEMBER)  # no word boundaries in Chinese


async def test_a_regex_is_matched_and_a_catastrophic_one_runs_in_linear_time(
    rig: tuple[ModerationService, Database],
) -> None:
    service, _ = rig
    await service.add_rule(GUILD, MOD, "regex", r"(a+)+$|n[s5]fw")
    with pytest.raises(UserError, match="`n5fw`"):
        await service.check_prompt("make it N5FW please", GUILD, MEMBER)
    # Exponential on a backtracking engine; RE2 answers at once. The benchmark is the assertion's absence
    # of a timeout: this finishes, where Python's re would not within the test's lifetime.
    started = time.process_time()
    with pytest.raises(UserError):
        await service.check_prompt("a" * 1999 + "!" + "a" * 5, GUILD, MEMBER)
    assert time.process_time() - started < 5


@pytest.mark.parametrize(
    ("pattern", "why"),
    [(r"(a)\1", "backreferences"), ("(?=x)y", "lookarounds"), ("x*", "matches every prompt"), ("(", "RE2")],
)
async def test_a_pattern_the_engine_cannot_run_is_refused_when_added(
    rig: tuple[ModerationService, Database], pattern: str, why: str
) -> None:
    service, _ = rig
    with pytest.raises(UserError, match=why):
        await service.add_rule(GUILD, MOD, "regex", pattern)
    assert await service.rules(GUILD) == []


async def test_rules_are_added_once_removed_and_audited(rig: tuple[ModerationService, Database]) -> None:
    service, db = rig
    assert "now refused" in await service.add_rule(GUILD, MOD, "word", "Gore")
    assert "already" in await service.add_rule(GUILD, MOD, "word", "GORE")
    assert [rule.pattern for rule in await service.rules(GUILD)] == ["gore"]
    assert "no longer blocked" in await service.remove_rule(GUILD, MOD, "word", "gore")
    assert "not on the blocklist" in await service.remove_rule(GUILD, MOD, "word", "gore")
    actions = [row[0] for row in await db.fetchall("SELECT action FROM audit ORDER BY id")]
    assert actions == ["block add", "block remove"]


async def test_strikes_freeze_a_member_at_the_configured_count_once(rig: tuple[ModerationService, Database]) -> None:
    service, db = rig
    await service.add_rule(GUILD, MOD, "word", "gore")
    for _ in range(2):
        with pytest.raises(UserError):
            await service.check_prompt("gore", GUILD, MEMBER)
    await service.provider_verdict(GUILD, MEMBER, job_id=7, detail="moderation")
    await service.provider_verdict(GUILD, MEMBER, job_id=7, detail="moderation")  # the same verdict again: no strike
    assert (await db.fetchone("SELECT COUNT(*) FROM strikes"))[0] == 3  # type: ignore[index]
    frozen = await db.fetchone("SELECT reason FROM frozen_members WHERE guild_id = ? AND user_id = ?", (GUILD, MEMBER))
    assert frozen is not None and "3 blocks" in frozen[0]
    with pytest.raises(UserError):
        await service.check_prompt("gore", GUILD, MEMBER)
    freezes = await db.fetchall("SELECT actor_id FROM audit WHERE action = 'freeze'")
    assert len(freezes) == 1  # frozen once, not again at the fourth strike
    for statement in ("DELETE FROM strikes", "UPDATE strikes SET detail = ''"):
        with pytest.raises(ConstraintError, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute(statement)
