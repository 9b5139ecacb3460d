-- The upload limit Discord reported for the job's interaction, so a job resumed after a restart
-- (with no interaction any more) still fits its clip to what that channel accepts.
ALTER TABLE jobs ADD COLUMN upload_limit INTEGER;
