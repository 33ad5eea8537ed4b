-- Version 3's counter function (slot by backend pid).
CREATE OR REPLACE FUNCTION fixed_ips_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO network_counts AS c (network_id, slot, total, reserved, in_use)
        SELECT network_id, pg_backend_pid() % 16, count(*), count(*) FILTER (WHERE reserved),
            count(*) FILTER (WHERE NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased))
        FROM new_rows GROUP BY network_id
        ON CONFLICT (network_id, slot) DO UPDATE SET total = c.total + EXCLUDED.total,
            reserved = c.reserved + EXCLUDED.reserved, in_use = c.in_use + EXCLUDED.in_use;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO network_counts AS c (network_id, slot, total, reserved, in_use)
        SELECT network_id, pg_backend_pid() % 16, sum(t), sum(r), sum(u) FROM (
            SELECT network_id, 1 AS t, reserved::int AS r,
                (NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased))::int AS u
            FROM new_rows
            UNION ALL
            SELECT network_id, -1, -reserved::int,
                -(NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased))::int
            FROM old_rows) d
        GROUP BY network_id HAVING sum(t) <> 0 OR sum(r) <> 0 OR sum(u) <> 0
        ON CONFLICT (network_id, slot) DO UPDATE SET total = c.total + EXCLUDED.total,
            reserved = c.reserved + EXCLUDED.reserved, in_use = c.in_use + EXCLUDED.in_use;
    ELSE
        INSERT INTO network_counts AS c (network_id, slot, total, reserved, in_use)
        SELECT o.network_id, pg_backend_pid() % 16, -count(*), -count(*) FILTER (WHERE o.reserved),
            -count(*) FILTER (WHERE NOT o.reserved AND (o.instance_uuid IS NOT NULL OR o.allocated OR o.leased))
        FROM old_rows o WHERE EXISTS (SELECT 1 FROM networks n WHERE n.id = o.network_id)
        GROUP BY o.network_id
        ON CONFLICT (network_id, slot) DO UPDATE SET total = c.total + EXCLUDED.total,
            reserved = c.reserved + EXCLUDED.reserved, in_use = c.in_use + EXCLUDED.in_use;
    END IF;
    RETURN NULL;
END $$;
CREATE INDEX virtual_interfaces_instance_idx ON virtual_interfaces (instance_uuid, id);
DELETE FROM virtual_interfaces v WHERE NOT EXISTS (SELECT 1 FROM networks n WHERE n.id = v.network_id);
ALTER TABLE virtual_interfaces ADD CONSTRAINT virtual_interfaces_network_id_fkey
    FOREIGN KEY (network_id) REFERENCES networks (id) ON DELETE RESTRICT;
