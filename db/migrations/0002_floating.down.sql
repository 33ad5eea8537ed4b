DROP INDEX IF EXISTS floating_ips_range_idx;
ALTER TABLE virtual_interfaces DROP COLUMN IF EXISTS project_id;
