-- Delivered clips kept under data_dir/outputs (services/outputs.py), for /show: one row per kept clip,
-- removed when the sweep deletes its files (older than storage.keep_outputs_days, or the oldest first
-- while they take more than storage.max_outputs_gib).
CREATE TABLE outputs (
    job_id    INTEGER PRIMARY KEY REFERENCES jobs(id),
    clip      TEXT    NOT NULL,                       -- file name under data_dir/outputs
    thumbnail TEXT,                                   -- its first frame as a JPEG (NULL: none could be made)
    bytes     INTEGER NOT NULL CHECK (bytes >= 0),    -- clip and thumbnail together
    stored_at TEXT    NOT NULL                        -- ISO 8601 UTC
);
CREATE INDEX outputs_by_age ON outputs(stored_at);
-- /history: a member's jobs, newest first.
CREATE INDEX jobs_by_user_id ON jobs(user_id, id);
