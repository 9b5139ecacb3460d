-- Moderation (/mod): each server's blocklist, and the strikes members collect (a prompt the blocklist
-- refused, or a provider's moderation verdict on a job). Strikes are append-only, like the audit.
CREATE TABLE block_rules (
    id       INTEGER PRIMARY KEY,
    guild_id INTEGER NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('word', 'regex')),
    pattern  TEXT    NOT NULL,
    added_by INTEGER NOT NULL,
    at       TEXT    NOT NULL,
    UNIQUE (guild_id, kind, pattern)
);

CREATE TABLE strikes (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    guild_id INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    source   TEXT    NOT NULL CHECK (source IN ('blocklist', 'provider')),
    job_id   INTEGER UNIQUE,                  -- a provider verdict is one strike per job, however often seen
    detail   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX strikes_by_member ON strikes (guild_id, user_id, at);

CREATE TRIGGER strikes_are_append_only_update BEFORE UPDATE ON strikes
BEGIN
    SELECT RAISE(ABORT, 'strikes are append-only');
END;
CREATE TRIGGER strikes_are_append_only_delete BEFORE DELETE ON strikes
BEGIN
    SELECT RAISE(ABORT, 'strikes are append-only');
END;

-- Review mode (/mod review): where it is on (channel_id 0: the whole server), where held clips go, and
-- each held clip's way from generated to approved or rejected.
CREATE TABLE review_scopes (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);

CREATE TABLE review_queues (
    guild_id   INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL
);

CREATE TABLE review_items (
    job_id            INTEGER PRIMARY KEY,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    user_id           INTEGER NOT NULL,
    state             TEXT    NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'pending', 'approved', 'rejected')),
    review_message_id INTEGER,
    decided_by        INTEGER,
    reason            TEXT    NOT NULL DEFAULT '',
    created_at        TEXT    NOT NULL,
    decided_at        TEXT
);
