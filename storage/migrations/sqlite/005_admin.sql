-- What server admins change at runtime (/admin). config.toml holds the defaults; these rows override them.
CREATE TABLE limit_overrides (
    guild_id  INTEGER NOT NULL,
    scope     TEXT    NOT NULL CHECK (scope IN ('server', 'role', 'user')),
    target_id INTEGER NOT NULL,                      -- the server itself, a role, or a member
    key       TEXT    NOT NULL,
    value     INTEGER CHECK (value IS NULL OR value >= 0),  -- NULL: no limit
    PRIMARY KEY (guild_id, scope, target_id, key)
);

CREATE TABLE frozen_members (
    guild_id INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    reason   TEXT    NOT NULL DEFAULT '',
    at       TEXT    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

CREATE TABLE server_controls (
    guild_id               INTEGER PRIMARY KEY,
    paused                 INTEGER NOT NULL DEFAULT 0,
    pause_reason           TEXT    NOT NULL DEFAULT '',
    quote_threshold_micros INTEGER CHECK (quote_threshold_micros IS NULL OR quote_threshold_micros >= 0),
    log_channel_id         INTEGER
);

CREATE TABLE pools (
    id            INTEGER PRIMARY KEY,
    guild_id      INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    amount_micros INTEGER NOT NULL CHECK (amount_micros > 0),
    period        TEXT    NOT NULL CHECK (period IN ('day', 'week', 'month')),
    channel_id    INTEGER,
    role_id       INTEGER,
    on_empty      TEXT    NOT NULL CHECK (on_empty IN ('personal', 'refuse')),
    created_at    TEXT    NOT NULL,
    deleted_at    TEXT
);
CREATE UNIQUE INDEX pools_live_name ON pools(guild_id, name) WHERE deleted_at IS NULL;

-- Which threshold alerts went out, so each goes once per pool period.
CREATE TABLE pool_alerts (
    pool_id    INTEGER NOT NULL REFERENCES pools(id),
    period_key TEXT    NOT NULL,
    percent    INTEGER NOT NULL,
    at         TEXT    NOT NULL,
    PRIMARY KEY (pool_id, period_key, percent)
);

CREATE TABLE grants (
    id            INTEGER PRIMARY KEY,
    at            TEXT    NOT NULL,
    guild_id      INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    actor_id      INTEGER NOT NULL,
    amount_micros INTEGER NOT NULL CHECK (amount_micros > 0),
    reason        TEXT    NOT NULL DEFAULT ''
);

-- Every admin change, append-only like the ledger.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    guild_id INTEGER NOT NULL,
    actor_id INTEGER NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    before   TEXT    NOT NULL DEFAULT '',
    after    TEXT    NOT NULL DEFAULT '',
    reason   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_guild ON audit(guild_id, id);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER grants_are_append_only_update BEFORE UPDATE ON grants
BEGIN
    SELECT RAISE(ABORT, 'grants are append-only');
END;
CREATE TRIGGER grants_are_append_only_delete BEFORE DELETE ON grants
BEGIN
    SELECT RAISE(ABORT, 'grants are append-only');
END;

-- The ledger gains grants (a row tied to its grant, no job) and pool draws (a job's rows carry the pool
-- and the pool's period they count against). SQLite cannot change a table's constraints in place.
CREATE TABLE ledger_new (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER REFERENCES jobs(id),
    at            TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('reserve', 'settle', 'refund', 'release', 'grant')),
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    user_id       INTEGER NOT NULL,
    guild_id      INTEGER,
    period_day    TEXT    NOT NULL,
    period_month  TEXT    NOT NULL,
    grant_id      INTEGER REFERENCES grants(id),
    pool_id       INTEGER REFERENCES pools(id),
    pool_period   TEXT,
    CHECK ((kind = 'grant') = (grant_id IS NOT NULL)),
    CHECK ((kind = 'grant') = (job_id IS NULL)),
    CHECK ((pool_id IS NULL) = (pool_period IS NULL)),
    UNIQUE (job_id, kind)
);
INSERT INTO ledger_new (id, job_id, at, kind, amount_micros, user_id, guild_id, period_day, period_month)
    SELECT id, job_id, at, kind, amount_micros, user_id, guild_id, period_day, period_month FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;
CREATE INDEX ledger_user_day ON ledger(user_id, period_day);
CREATE INDEX ledger_user_month ON ledger(user_id, period_month);
CREATE INDEX ledger_guild_month ON ledger(guild_id, period_month);
CREATE INDEX ledger_month ON ledger(period_month);
CREATE INDEX ledger_pool ON ledger(pool_id, pool_period) WHERE pool_id IS NOT NULL;

CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
CREATE TRIGGER ledger_one_outcome BEFORE INSERT ON ledger
WHEN NEW.kind IN ('settle', 'refund')
BEGIN
    SELECT RAISE(ABORT, 'job already settled or refunded')
    WHERE EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind IN ('settle', 'refund'));
    SELECT RAISE(ABORT, 'job has no reservation')
    WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind = 'reserve');
END;
CREATE TRIGGER ledger_release_follows_settle BEFORE INSERT ON ledger
WHEN NEW.kind = 'release'
BEGIN
    SELECT RAISE(ABORT, 'release without settle')
    WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind = 'settle');
    SELECT RAISE(ABORT, 'release larger than the reservation')
    WHERE NEW.amount_micros + (SELECT amount_micros FROM ledger WHERE job_id = NEW.job_id AND kind = 'settle')
          > (SELECT amount_micros FROM ledger WHERE job_id = NEW.job_id AND kind = 'reserve');
END;
