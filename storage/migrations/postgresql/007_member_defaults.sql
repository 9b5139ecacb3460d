-- /history's index and members' personal defaults (sqlite/007).
CREATE INDEX jobs_by_user_id ON jobs(user_id, id);
CREATE TABLE member_defaults (
    user_id         BIGINT  PRIMARY KEY,
    quality         TEXT    CHECK (quality IS NULL OR quality IN ('standard', 'pro', 'fast', 'fast-pro')),
    duration        INTEGER CHECK (duration IS NULL OR duration IN (6, 10)),
    model           TEXT,
    optimize_prompt INTEGER CHECK (optimize_prompt IS NULL OR optimize_prompt IN (0, 1)),
    notify          TEXT    CHECK (notify IS NULL OR notify IN ('off', 'channel', 'dm')),
    updated_at      TEXT    NOT NULL
);
