-- A member's personal defaults (/settings): per Discord user, the same in every server. NULL: not set.
-- Only values the commands accept are stored (the cog checks them; the CHECKs hold the line here too).
CREATE TABLE member_defaults (
    user_id         INTEGER PRIMARY KEY,
    quality         TEXT    CHECK (quality IS NULL OR quality IN ('standard', 'pro', 'fast', 'fast-pro')),
    duration        INTEGER CHECK (duration IS NULL OR duration IN (6, 10)),
    model           TEXT,
    optimize_prompt INTEGER CHECK (optimize_prompt IS NULL OR optimize_prompt IN (0, 1)),
    notify          TEXT    CHECK (notify IS NULL OR notify IN ('off', 'channel', 'dm')),
    updated_at      TEXT    NOT NULL
);
