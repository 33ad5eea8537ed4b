-- Allocation at fleet scale (issue 13): indexes for every foreign key and
-- filter, network counts kept without scanning fixed_ips, and the project
-- of an instance whose last interface was removed.

-- Foreign keys and filters. fixed_ips (network_id, address) serves
-- deletes' in-use check, list_fixed_ips by network in address order and
-- the ON DELETE CASCADE from networks.
CREATE INDEX fixed_ips_network_idx ON fixed_ips (network_id, address);
CREATE INDEX virtual_interfaces_network_idx ON virtual_interfaces (network_id);
-- An instance's interfaces in id order (nw_info reads them so): one index
-- gives both the filter and the order, so no plan walks the primary key.
-- It replaces the plain instance index, which it covers.
DROP INDEX virtual_interfaces_instance_idx;
CREATE INDEX virtual_interfaces_instance_idx ON virtual_interfaces (instance_uuid, id);
CREATE INDEX networks_host_idx ON networks (host) WHERE host IS NOT NULL;

-- Network counts. Each row holds part of a network's counts; a network's
-- counts are the sum of its rows. The triggers below keep them in the
-- statement that changes fixed_ips, in a row chosen by the connection
-- (slot = backend pid mod 16), so concurrent allocations on one network
-- do not queue for one counter row. No foreign key: it would lock the
-- network row; the networks trigger removes a deleted network's rows.
CREATE TABLE network_counts (
    network_id  bigint NOT NULL,
    slot        smallint NOT NULL,
    total       bigint NOT NULL DEFAULT 0,
    reserved    bigint NOT NULL DEFAULT 0,
    in_use      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (network_id, slot)
);

-- in_use as get_all_networks defines it: held by an instance, allocated or
-- leased, and not reserved.
CREATE FUNCTION fixed_ips_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
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
        -- Rows of a network being deleted are left to its own trigger.
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

CREATE TRIGGER fixed_ips_count_insert AFTER INSERT ON fixed_ips
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fixed_ips_count_rows();
CREATE TRIGGER fixed_ips_count_update AFTER UPDATE ON fixed_ips
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fixed_ips_count_rows();
CREATE TRIGGER fixed_ips_count_delete AFTER DELETE ON fixed_ips
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION fixed_ips_count_rows();

CREATE FUNCTION networks_drop_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM network_counts c USING old_rows o WHERE c.network_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER networks_count_delete AFTER DELETE ON networks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION networks_drop_counts();

-- Existing networks' counts, in one row each.
INSERT INTO network_counts (network_id, slot, total, reserved, in_use)
SELECT network_id, 0, count(*), count(*) FILTER (WHERE reserved),
    count(*) FILTER (WHERE NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased))
FROM fixed_ips GROUP BY network_id;

-- The project of an instance that has no interface left (its last one was
-- removed with remove_fixed_ip_from_instance), so that an interface added
-- back, or a retried allocation, keeps it. deallocate_for_instance removes
-- the row: the instance is gone.
CREATE TABLE instance_projects (
    instance_uuid  uuid PRIMARY KEY,
    project_id     text NOT NULL CHECK (length(project_id) BETWEEN 1 AND 255)
);

-- Raises an error with SQLSTATE code and message msg: lets one statement
-- of a batch fail the batch (and the COMMIT queued after it) when it could
-- not do its work. Used with the codes NV001 (no free address) and NV002
-- (MAC taken) by the allocation path.
CREATE FUNCTION novanet_raise(code text, msg text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = msg;
END $$;
