// Package dbfill fills a novanet database with allocated interfaces in
// bulk, as a busy cloud's would be, for tests and benchmarks of plans and
// speed at size.
package dbfill

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Interfaces gives count new instances one interface each, with a fixed IP
// of network (the lowest free ones), as allocate_for_instance would, in
// one statement. The instances' UUIDs are derived from the addresses'
// ids and the MACs from the same (02:00:…), so they do not collide with
// the manager's random ones (whose second byte is random) except by
// chance. It does not ANALYZE: callers that want fresh statistics run it.
func Interfaces(ctx context.Context, pool *pgxpool.Pool, network int64, project string, count int) error {
	tag, err := pool.Exec(ctx, `
		WITH f AS (
			SELECT id, network_id, md5('dbfill-' || id::text)::uuid AS inst, lpad(to_hex(id), 8, '0') AS h
			FROM fixed_ips
			WHERE network_id = $1 AND instance_uuid IS NULL AND NOT reserved AND NOT leased AND NOT allocated
			ORDER BY address LIMIT $3),
		v AS (
			INSERT INTO virtual_interfaces (address, instance_uuid, network_id, project_id)
			SELECT ('02:00:' || substr(h, 1, 2) || ':' || substr(h, 3, 2) || ':' || substr(h, 5, 2) || ':' ||
				substr(h, 7, 2))::macaddr, inst, network_id, $2
			FROM f
			RETURNING id, instance_uuid)
		UPDATE fixed_ips x SET instance_uuid = v.instance_uuid, virtual_interface_id = v.id, allocated = true,
			updated_at = now()
		FROM f JOIN v ON v.instance_uuid = f.inst
		WHERE x.id = f.id`, network, project, count)
	if err != nil {
		return fmt.Errorf("fill %d interfaces: %w", count, err)
	}
	if int(tag.RowsAffected()) != count {
		return fmt.Errorf("filled %d interfaces, want %d: too few free addresses on network %d", tag.RowsAffected(), count, network)
	}
	return nil
}
