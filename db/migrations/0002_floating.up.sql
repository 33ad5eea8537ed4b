-- Floating IPs (issue 6): an instance's interface records the project it
-- was allocated for, so that a floating IP is only associated with an
-- address of an instance of the project that owns it.
ALTER TABLE virtual_interfaces
    ADD COLUMN project_id text CHECK (length(project_id) BETWEEN 1 AND 255);
-- Interfaces made before this migration: the network's project, when the
-- network has one; the others stay unknown (NULL).
UPDATE virtual_interfaces v SET project_id = n.project_id
    FROM networks n WHERE n.id = v.network_id AND n.project_id IS NOT NULL;

-- delete_floating_ips finds a range's addresses by range_id.
CREATE INDEX floating_ips_range_idx ON floating_ips (range_id);
