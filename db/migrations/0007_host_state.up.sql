-- Host state at fleet scale (issue 17): get_host_state reads only the
-- rows of what the host serves, whatever the size of the cloud.

-- An instance address by its host: the networks a host has an instance
-- on, and a multi-host network's addresses on one host (DHCP hosts,
-- floating IPs). Allocation sets instance_uuid with allocated, so every
-- allocated address is in it.
CREATE INDEX fixed_ips_host_idx ON fixed_ips (host, network_id, address) WHERE instance_uuid IS NOT NULL;

-- A network's allocated addresses in address order: a single-host
-- network's DHCP hosts and floating IPs, without walking its free ones.
CREATE INDEX fixed_ips_allocated_idx ON fixed_ips (network_id, address) WHERE allocated;
