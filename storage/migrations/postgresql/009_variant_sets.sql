-- The variants card a job is listed on (sqlite/009).
ALTER TABLE jobs ADD COLUMN set_card_id BIGINT;
CREATE INDEX jobs_by_set_card ON jobs (set_card_id) WHERE set_card_id IS NOT NULL;
