-- Whether the user was shown how the job ended (the clip, or why it failed and that nothing was
-- charged). A stop between a job's end and that last edit leaves it 0, and the next start shows it.
-- Jobs that ended before this column existed count as shown.
ALTER TABLE jobs ADD COLUMN final_shown INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET final_shown = 1 WHERE status IN ('delivered', 'failed', 'cancelled');
