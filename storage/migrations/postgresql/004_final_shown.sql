-- Whether the user was shown how the job ended (sqlite/004).
ALTER TABLE jobs ADD COLUMN final_shown INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET final_shown = 1 WHERE status IN ('delivered', 'failed', 'cancelled');
