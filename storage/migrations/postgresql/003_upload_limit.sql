-- The last frame of a first-and-last-frame job, and the upload limit of the job's interaction (sqlite/003).
ALTER TABLE jobs ADD COLUMN end_image TEXT;
ALTER TABLE jobs ADD COLUMN upload_limit BIGINT;
