-- Allocation contention (issue 13): what every allocation touched on rows
-- or pages that all allocations of a network share.

-- The interface's foreign key to its network made each allocation lock
-- the network's row (FOR KEY SHARE: a write of the row's header, and a
-- multixact once two allocations hold it). The network of an interface is
-- its fixed IP's network, which fixed_ips' own foreign key keeps, and
-- delete_network refuses while any interface is on the network (it checks
-- again after its DELETE, which waits for any allocation holding one of
-- the network's addresses).
ALTER TABLE virtual_interfaces DROP CONSTRAINT virtual_interfaces_network_id_fkey;

-- The (instance_uuid, network_id) key serves every lookup by instance; the
-- queries order by an expression no index provides, so no plan walks the
-- primary key for the order.
DROP INDEX virtual_interfaces_instance_idx;

-- Counter rows are chosen by transaction id (mod 16): concurrent
-- transactions have neighbouring ids, so they update different rows,
-- where the connection's pid could give two of them one row (and make one
-- wait for the other's commit).
CREATE OR REPLACE FUNCTION fixed_ips_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    my_slot smallint := pg_current_xact_id()::text::bigint % 16;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO network_counts AS c (network_id, slot, total, reserved, in_use)
        SELECT network_id, my_slot, count(*), count(*) FILTER (WHERE reserved),
            count(*) FILTER (WHERE NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased))
        FROM new_rows GROUP BY network_id
        ON CONFLICT (network_id, slot) DO UPDATE SET total = c.total + EXCLUDED.total,
            reserved = c.reserved + EXCLUDED.reserved, in_use = c.in_use + EXCLUDED.in_use;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO network_counts AS c (network_id, slot, total, reserved, in_use)
        SELECT network_id, my_slot, 0, sum(r), sum(u) FROM (
            SELECT network_id, reserved::int AS r,
                (NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased))::int AS u
            FROM new_rows
            UNION ALL
            SELECT network_id, -reserved::int,
                -(NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased))::int
            FROM old_rows) d
        GROUP BY network_id HAVING sum(r) <> 0 OR sum(u) <> 0
        ON CONFLICT (network_id, slot) DO UPDATE SET reserved = c.reserved + EXCLUDED.reserved,
            in_use = c.in_use + EXCLUDED.in_use;
    ELSE
        -- Rows of a network being deleted are left to its own trigger.
        INSERT INTO network_counts AS c (network_id, slot, total, reserved, in_use)
        SELECT o.network_id, my_slot, -count(*), -count(*) FILTER (WHERE o.reserved),
            -count(*) FILTER (WHERE NOT o.reserved AND (o.instance_uuid IS NOT NULL OR o.allocated OR o.leased))
        FROM old_rows o WHERE EXISTS (SELECT 1 FROM networks n WHERE n.id = o.network_id)
        GROUP BY o.network_id
        ON CONFLICT (network_id, slot) DO UPDATE SET total = c.total + EXCLUDED.total,
            reserved = c.reserved + EXCLUDED.reserved, in_use = c.in_use + EXCLUDED.in_use;
    END IF;
    RETURN NULL;
END $$;
