-- Contests (/contest): a theme, a deadline for entries, a voting window, a gallery that hides authors, and
-- results. A contest's budget is a pool whose one period is the contest itself ('contest': it never starts
-- again), so pools.period gains that value. SQLite cannot change a CHECK in place: the table is rebuilt
-- (the migration runs with foreign keys off and checks them before it commits: storage/db.py).
CREATE TABLE pools_new (
    id            INTEGER PRIMARY KEY,
    guild_id      INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    amount_micros INTEGER NOT NULL CHECK (amount_micros > 0),
    period        TEXT    NOT NULL CHECK (period IN ('day', 'week', 'month', 'contest')),
    channel_id    INTEGER,
    role_id       INTEGER,
    on_empty      TEXT    NOT NULL CHECK (on_empty IN ('personal', 'refuse')),
    created_at    TEXT    NOT NULL,
    deleted_at    TEXT
);
INSERT INTO pools_new SELECT id, guild_id, name, amount_micros, period, channel_id, role_id, on_empty, created_at,
    deleted_at FROM pools;
DROP TABLE pools;
ALTER TABLE pools_new RENAME TO pools;
CREATE UNIQUE INDEX pools_live_name ON pools(guild_id, name) WHERE deleted_at IS NULL;

-- Phases move one way, each move a compare-and-set (UPDATE ... WHERE phase = ?):
-- open (entries) -> voting -> closed (votes counted, results not yet posted) -> done (results posted).
CREATE TABLE contests (
    id                  INTEGER PRIMARY KEY,
    guild_id            INTEGER NOT NULL,
    channel_id          INTEGER NOT NULL,
    theme               TEXT    NOT NULL,
    creator_id          INTEGER NOT NULL,
    created_at          TEXT    NOT NULL,
    deadline            TEXT    NOT NULL,               -- entries close, voting opens
    voting_ends         TEXT    NOT NULL,
    entries_per_member  INTEGER NOT NULL CHECK (entries_per_member >= 1),
    votes_per_member    INTEGER NOT NULL CHECK (votes_per_member >= 1),
    pool_id             INTEGER REFERENCES pools(id),   -- the budget that pays for entries, if any
    review              INTEGER NOT NULL DEFAULT 0,
    min_member_days     INTEGER NOT NULL DEFAULT 0 CHECK (min_member_days >= 0),
    winner_role_id      INTEGER,
    phase               TEXT    NOT NULL DEFAULT 'open' CHECK (phase IN ('open', 'voting', 'closed', 'done')),
    ended_early_by      INTEGER,                        -- /contest end
    announcement_id     INTEGER,
    voting_message_id   INTEGER,
    results_intent_at   TEXT,                           -- set before the results are posted (once)
    results_message_id  INTEGER,
    CHECK (voting_ends > deadline)
);
-- One running contest per channel: entries made there belong to it.
CREATE UNIQUE INDEX contests_live_channel ON contests(channel_id) WHERE phase IN ('open', 'voting');
CREATE INDEX contests_by_phase ON contests(phase);

-- An entry is a slot first (claimed, its job not yet made), then a job, then a gallery post. A slot whose
-- job fails is released and stops counting against the member's entries.
CREATE TABLE contest_entries (
    id          INTEGER PRIMARY KEY,
    contest_id  INTEGER NOT NULL REFERENCES contests(id),
    user_id     INTEGER NOT NULL,
    job_id      INTEGER UNIQUE,
    number      INTEGER,                                -- "Entry #n", given when posted to the gallery
    state       TEXT    NOT NULL DEFAULT 'claimed' CHECK (state IN ('claimed', 'posted', 'released')),
    gallery_message_id INTEGER,
    entered_at  TEXT    NOT NULL,
    UNIQUE (contest_id, number)
);
CREATE INDEX contest_entries_by_member ON contest_entries(contest_id, user_id, state);

CREATE TABLE contest_votes (
    entry_id   INTEGER NOT NULL REFERENCES contest_entries(id),
    voter_id   INTEGER NOT NULL,
    contest_id INTEGER NOT NULL REFERENCES contests(id),
    at         TEXT    NOT NULL,
    PRIMARY KEY (entry_id, voter_id)
);
CREATE INDEX contest_votes_by_voter ON contest_votes(contest_id, voter_id);
