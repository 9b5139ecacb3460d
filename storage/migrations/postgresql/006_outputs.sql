-- Delivered clips kept under data_dir/outputs (sqlite/006).
CREATE TABLE outputs (
    job_id    BIGINT PRIMARY KEY REFERENCES jobs(id),
    clip      TEXT   NOT NULL,
    thumbnail TEXT,
    bytes     BIGINT NOT NULL CHECK (bytes >= 0),
    stored_at TEXT   NOT NULL
);
CREATE INDEX outputs_by_age ON outputs(stored_at);
