-- How a job relates to its parent (sqlite/008).
ALTER TABLE jobs ADD COLUMN parent_kind TEXT
    CHECK (parent_kind IS NULL OR parent_kind IN ('reroll', 'remix', 'continue', 'retry'));
UPDATE jobs SET parent_kind = 'reroll' WHERE parent_job_id IS NOT NULL;
