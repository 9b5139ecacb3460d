-- Provider cool-downs shared by every process of a deployment (sqlite/012). Each change is announced with
-- NOTIFY hailuo_cooldown (storage/cooldowns.py).
CREATE TABLE provider_cooldowns (
    provider  TEXT PRIMARY KEY,
    out_until TEXT NOT NULL,
    reason    TEXT NOT NULL,
    taken_at  TEXT NOT NULL
);
