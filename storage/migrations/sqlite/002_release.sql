-- A job may be reserved at the highest price among the providers that could serve it (failover), and
-- settled at the price of the one that did: the difference is given back as a 'release' row.
CREATE TABLE ledger_new (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER NOT NULL REFERENCES jobs(id),
    at            TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('reserve', 'settle', 'refund', 'release')),
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    user_id       INTEGER NOT NULL,
    guild_id      INTEGER,
    period_day    TEXT    NOT NULL,
    period_month  TEXT    NOT NULL,
    UNIQUE (job_id, kind)
);
INSERT INTO ledger_new SELECT * FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;
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
CREATE TRIGGER ledger_one_outcome BEFORE INSERT ON ledger
WHEN NEW.kind IN ('settle', 'refund')
BEGIN
    SELECT RAISE(ABORT, 'job already settled or refunded')
    WHERE EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind IN ('settle', 'refund'));
    SELECT RAISE(ABORT, 'job has no reservation')
    WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind = 'reserve');
END;
-- A release only accompanies a settle, and never gives back more than was reserved.
CREATE TRIGGER ledger_release_follows_settle BEFORE INSERT ON ledger
WHEN NEW.kind = 'release'
BEGIN
    SELECT RAISE(ABORT, 'release without settle')
    WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = NEW.job_id AND kind = 'settle');
    SELECT RAISE(ABORT, 'release larger than the reservation')
    WHERE NEW.amount_micros + (SELECT amount_micros FROM ledger WHERE job_id = NEW.job_id AND kind = 'settle')
          > (SELECT amount_micros FROM ledger WHERE job_id = NEW.job_id AND kind = 'reserve');
END;

-- The last frame of a first-and-last-frame job (Hailuo 02), stored like input_image.
ALTER TABLE jobs ADD COLUMN end_image TEXT;
