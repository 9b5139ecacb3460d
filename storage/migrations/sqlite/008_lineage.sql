-- How a job relates to its parent (parent_job_id): made again as it was (reroll), with an edited prompt
-- (remix), from the parent's last frame (continue), or again after the parent failed (retry).
-- Until now a parent was only ever set by a re-roll, so those rows are re-rolls.
ALTER TABLE jobs ADD COLUMN parent_kind TEXT
    CHECK (parent_kind IS NULL OR parent_kind IN ('reroll', 'remix', 'continue', 'retry'));
UPDATE jobs SET parent_kind = 'reroll' WHERE parent_job_id IS NOT NULL;
