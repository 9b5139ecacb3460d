-- Variants (/video and /animate `variants:`): the jobs of one request share the public card that lists
-- them (its message id); NULL for a job made on its own. Each variant is otherwise an ordinary job.
ALTER TABLE jobs ADD COLUMN set_card_id INTEGER;
CREATE INDEX jobs_by_set_card ON jobs (set_card_id) WHERE set_card_id IS NOT NULL;
