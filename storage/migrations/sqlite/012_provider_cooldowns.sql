-- Provider cool-downs shared by every process of a deployment (storage/cooldowns.py): a provider taken out of
-- rotation after repeated outage failures stays out until `out_until` for every gateway and worker, and
-- across a restart. One row per provider; a cool-down ended early (the provider answered well) is deleted, one
-- that ran out is simply in the past.
CREATE TABLE provider_cooldowns (
    provider  TEXT PRIMARY KEY,
    out_until TEXT NOT NULL,                          -- ISO 8601 UTC, wall clock
    reason    TEXT NOT NULL,                          -- e.g. "1 failure(s), last: auth"
    taken_at  TEXT NOT NULL                           -- when it was taken out (ISO 8601 UTC)
);
