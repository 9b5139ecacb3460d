-- Jobs, their status history, and the append-only money ledger.
CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY,
    created_at         TEXT    NOT NULL,              -- ISO 8601 UTC
    updated_at         TEXT    NOT NULL,
    user_id            INTEGER NOT NULL,
    guild_id           INTEGER,                       -- NULL for the terminal (CLI) and DMs
    channel_id         INTEGER,
    message_id         INTEGER,                       -- the public job card (progress, then result)
    interaction_id     INTEGER,
    command            TEXT    NOT NULL,              -- video | animate
    mode               TEXT    NOT NULL,              -- t2v | i2v
    quality            TEXT    NOT NULL,
    duration           INTEGER NOT NULL,
    optimize_prompt    INTEGER NOT NULL,
    model              TEXT    NOT NULL,
    prompt             TEXT    NOT NULL,
    input_image        TEXT,                          -- file name under data_dir/inputs (content-addressed)
    provider           TEXT    NOT NULL,
    provider_task_id   TEXT,
    status             TEXT    NOT NULL,
    cost_micros        INTEGER NOT NULL CHECK (cost_micros >= 0),
    output_url         TEXT,
    output_bytes       INTEGER,
    delivered_as       TEXT,                          -- file | reencoded | link
    error_kind         TEXT,
    error_detail       TEXT,
    submitted_at       TEXT,
    provider_done_at   TEXT,
    finished_at        TEXT,
    generation_seconds REAL,                          -- submit -> provider done, feeds progress estimates
    parent_job_id      INTEGER REFERENCES jobs(id)    -- the job this one re-rolls
);
CREATE INDEX jobs_by_status ON jobs(status);
CREATE INDEX jobs_by_user_status ON jobs(user_id, status);
CREATE INDEX jobs_for_estimates ON jobs(provider, model, quality, duration, finished_at)
    WHERE generation_seconds IS NOT NULL;

CREATE TABLE job_events (
    id     INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    at     TEXT    NOT NULL,
    status TEXT    NOT NULL,
    detail TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX job_events_by_job ON job_events(job_id);

-- Every money movement. A job is reserved once, then either settled or refunded once.
-- period_* are the UTC day/month of the reservation, so a refund gives back to the same window.
CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER NOT NULL REFERENCES jobs(id),
    at            TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('reserve', 'settle', 'refund')),
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    user_id       INTEGER NOT NULL,
    guild_id      INTEGER,
    period_day    TEXT    NOT NULL,                   -- YYYY-MM-DD
    period_month  TEXT    NOT NULL,                   -- YYYY-MM
    UNIQUE (job_id, kind)
);
CREATE INDEX ledger_user_day ON ledger(user_id, period_day);
CREATE INDEX ledger_user_month ON ledger(user_id, period_month);
CREATE INDEX ledger_guild_month ON ledger(guild_id, period_month);
CREATE INDEX ledger_month ON ledger(period_month);

CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
-- A job ends one way: never both settled and refunded.
CREATE TRIGGER ledger_one_outcome BEFORE INSERT ON ledger
WHEN NEW.kind IN ('settle', 'refund')
BEGIN
    SELECT RAISE(ABORT, 'job already settled or refunded')
    WHERE EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind IN ('settle', 'refund'));
    SELECT RAISE(ABORT, 'job has no reservation')
    WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind = 'reserve');
END;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
