ALTER TABLE networks DROP COLUMN stopped;
