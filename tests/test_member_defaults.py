"""Members' defaults: the merge into a request (pure) and the SQLite store behind /settings."""

from __future__ import annotations

import pytest

from core.defaults import Chosen, MemberDefaults, check_value, merge
from core.spec import MODEL_HAILUO_02, MODEL_HAILUO_23
from storage.connect import database_for
from storage.defaults import SqlDefaultsStore
from storage.sql import ConstraintError

BOTH = (MODEL_HAILUO_02, MODEL_HAILUO_23)


def test_no_defaults_leave_the_built_ins() -> None:
    merged = merge("t2v", Chosen(), MemberDefaults(), BOTH)
    assert (merged.quality, merged.duration, merged.model, merged.optimize_prompt) == (
        "standard",
        6,
        MODEL_HAILUO_23,
        True,
    )
    assert merged.applied == () and merged.notes == () and merged.card_line == ""


def test_defaults_fill_what_was_left_out_and_explicit_options_win() -> None:
    defaults = MemberDefaults("standard", 10, MODEL_HAILUO_02, False, "dm")
    merged = merge("t2v", Chosen(), defaults, BOTH)
    assert (merged.quality, merged.duration, merged.model, merged.optimize_prompt) == (
        "standard",
        10,
        MODEL_HAILUO_02,
        False,
    )
    assert merged.card_line == "model Hailuo 02, quality standard, duration 10 s, optimize_prompt off"

    merged = merge(
        "t2v", Chosen(quality="pro", duration=6, model=MODEL_HAILUO_23, optimize_prompt=True), defaults, BOTH
    )
    assert (merged.quality, merged.duration, merged.model, merged.optimize_prompt) == ("pro", 6, MODEL_HAILUO_23, True)
    assert merged.applied == () and merged.notes == ()


@pytest.mark.parametrize(
    ("mode", "chosen", "defaults", "served", "expected", "note"),
    [
        ("t2v", Chosen(), MemberDefaults(quality="fast"), BOTH,
         ("standard", 6, MODEL_HAILUO_23), "is for /animate only"),
        ("i2v", Chosen(), MemberDefaults(quality="fast"), BOTH, ("fast", 6, MODEL_HAILUO_23), None),
        ("i2v", Chosen(model=MODEL_HAILUO_02), MemberDefaults(quality="fast"), BOTH,
         ("standard", 6, MODEL_HAILUO_02), "not offered by Hailuo 02"),
        ("t2v", Chosen(), MemberDefaults(model=MODEL_HAILUO_02), (MODEL_HAILUO_23,),
         ("standard", 6, MODEL_HAILUO_23), "model `Hailuo 02` is not offered here"),
        ("t2v", Chosen(), MemberDefaults(quality="pro", duration=10), BOTH,
         ("pro", 6, MODEL_HAILUO_23), "duration `10 s` is not made at `pro` quality"),
        ("t2v", Chosen(duration=10), MemberDefaults(quality="pro"), BOTH,
         ("standard", 10, MODEL_HAILUO_23), "cannot make 10 s clips"),
        ("t2v", Chosen(quality="pro"), MemberDefaults(duration=10), BOTH, ("pro", 6, MODEL_HAILUO_23), "`10 s`"),
    ],
)  # fmt: skip
def test_a_default_that_cannot_apply_falls_back_with_a_note(
    mode: str,
    chosen: Chosen,
    defaults: MemberDefaults,
    served: tuple[str, ...],
    expected: tuple[object, ...],
    note: str | None,
) -> None:
    merged = merge(mode, chosen, defaults, served)  # type: ignore[arg-type]
    assert (merged.quality, merged.duration, merged.model) == expected
    if note is None:
        assert merged.notes == ()
    else:
        [text] = merged.notes
        assert note in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("quality", "ultra"),
        ("duration", 8),
        ("duration", True),
        ("model", "sora"),
        ("notify", "email"),
        ("colour", "red"),
    ],
)
def test_only_values_the_commands_accept_are_valid(name: str, value: object) -> None:
    with pytest.raises(ValueError):
        check_value(name, value)


async def test_the_store_sets_clears_and_keeps_members_apart(db_url: str) -> None:
    async with database_for(db_url) as db:
        store = SqlDefaultsStore(db)
        assert await store.get(1) == MemberDefaults()
        saved = await store.update(1, {"quality": "pro", "duration": 6, "optimize_prompt": False, "notify": "channel"})
        assert saved == MemberDefaults("pro", 6, None, False, "channel") == await store.get(1)
        assert await store.get(2) == MemberDefaults()
        assert await store.update(1, {"model": MODEL_HAILUO_02}, clear=["quality", "notify"]) == MemberDefaults(
            None, 6, MODEL_HAILUO_02, False, None
        )
        with pytest.raises(ValueError):
            await store.update(1, {"quality": "ultra"})
        with pytest.raises(ValueError):
            await store.update(1, {}, clear=["user_id"])
        assert await store.get(1) == MemberDefaults(None, 6, MODEL_HAILUO_02, False, None)  # nothing half-written
        assert await store.update(1, {}, clear=["duration", "model", "optimize_prompt"]) == MemberDefaults()
        assert await db.fetchall("SELECT user_id FROM member_defaults") == []  # an empty row is not kept


async def test_the_table_refuses_invalid_values_too(db_url: str) -> None:
    async with database_for(db_url) as db:
        with pytest.raises(ConstraintError):
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO member_defaults (user_id, quality, updated_at) VALUES (1, 'ultra', 'x')"
                )
