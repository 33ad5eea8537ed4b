-- novanet schema, version 1: everything the service keeps in PostgreSQL.
-- The database enforces what it can: unique addresses and MACs,
-- non-overlapping networks, valid VLANs and ports, foreign keys.

-- Hosts that run a network-host agent.
CREATE TABLE hosts (
    name        text PRIMARY KEY
                CHECK (name ~ '^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$'),
    driver      text NOT NULL CHECK (driver IN ('flat', 'flatdhcp', 'vlan')),
    version     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE networks (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    label               text NOT NULL CHECK (length(label) BETWEEN 1 AND 255),
    cidr                cidr NOT NULL CHECK (family(cidr) = 4),
    cidr_v6             cidr CHECK (family(cidr_v6) = 6),
    netmask             inet NOT NULL,
    gateway             inet,
    gateway_v6          inet,
    broadcast           inet NOT NULL,
    dhcp_start          inet,
    dhcp_server         inet,
    dns1                inet,
    dns2                inet,
    vlan                integer UNIQUE CHECK (vlan BETWEEN 1 AND 4094),
    bridge              text CHECK (bridge ~ '^[^/:[:space:]]{1,15}$'),
    bridge_interface    text CHECK (bridge_interface ~ '^[^/:[:space:]]{1,15}$'),
    multi_host          boolean NOT NULL DEFAULT false,
    project_id          text,
    host                text REFERENCES hosts (name) ON DELETE SET NULL,
    vpn_public_address  inet,
    vpn_public_port     integer CHECK (vpn_public_port BETWEEN 1 AND 65535),
    vpn_private_address inet,
    mtu                 integer CHECK (mtu BETWEEN 68 AND 65535),
    enable_dhcp         boolean NOT NULL DEFAULT true,
    share_address       boolean NOT NULL DEFAULT false,
    priority            integer,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT networks_cidr_no_overlap EXCLUDE USING gist (cidr inet_ops WITH &&),
    CONSTRAINT networks_cidr_v6_no_overlap EXCLUDE USING gist (cidr_v6 inet_ops WITH &&),
    CONSTRAINT networks_gateway_in_cidr CHECK (gateway IS NULL OR gateway << cidr),
    CONSTRAINT networks_vlan_has_bridge CHECK (vlan IS NULL OR bridge IS NOT NULL)
);
-- A VLAN network owns its bridge.
CREATE UNIQUE INDEX networks_vlan_bridge_key ON networks (bridge) WHERE vlan IS NOT NULL;
-- VPN endpoints are unique per public address (or cloud-wide when unset).
CREATE UNIQUE INDEX networks_vpn_endpoint_key
    ON networks (coalesce(vpn_public_address, '0.0.0.0'::inet), vpn_public_port)
    WHERE vpn_public_port IS NOT NULL;
CREATE INDEX networks_project_idx ON networks (project_id);

CREATE TABLE virtual_interfaces (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    address        macaddr NOT NULL UNIQUE,
    instance_uuid  uuid NOT NULL,
    network_id     bigint NOT NULL REFERENCES networks (id) ON DELETE RESTRICT,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_uuid, network_id)
);
CREATE INDEX virtual_interfaces_instance_idx ON virtual_interfaces (instance_uuid);

CREATE TABLE fixed_ips (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address               inet NOT NULL UNIQUE CHECK (family(address) = 4 AND masklen(address) = 32),
    network_id            bigint NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    virtual_interface_id  bigint REFERENCES virtual_interfaces (id) ON DELETE RESTRICT,
    instance_uuid         uuid,
    host                  text,
    allocated             boolean NOT NULL DEFAULT false,
    leased                boolean NOT NULL DEFAULT false,
    reserved              boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fixed_ips_reserved_unused CHECK (NOT (reserved AND instance_uuid IS NOT NULL)),
    CONSTRAINT fixed_ips_vif_has_instance CHECK (virtual_interface_id IS NULL OR instance_uuid IS NOT NULL)
);
-- Free addresses of a network in address order. Allocation orders by the
-- same expression, which no other index provides, so the planner always
-- takes this index: ordering by plain address could pick the unique index
-- on address and walk every allocated address before a free one.
CREATE INDEX fixed_ips_free_idx ON fixed_ips (network_id, (address - '0.0.0.0'::inet))
    WHERE instance_uuid IS NULL AND NOT reserved AND NOT leased AND NOT allocated;
CREATE INDEX fixed_ips_instance_idx ON fixed_ips (instance_uuid) WHERE instance_uuid IS NOT NULL;
CREATE INDEX fixed_ips_vif_idx ON fixed_ips (virtual_interface_id) WHERE virtual_interface_id IS NOT NULL;

-- Ranges of floating addresses, one row per `floating create`.
CREATE TABLE floating_ranges (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cidr        cidr NOT NULL CHECK (family(cidr) = 4),
    pool        text NOT NULL CHECK (length(pool) BETWEEN 1 AND 255),
    interface   text CHECK (interface ~ '^[^/:[:space:]]{1,15}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT floating_ranges_no_overlap EXCLUDE USING gist (cidr inet_ops WITH &&)
);

CREATE TABLE floating_ips (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address        inet NOT NULL UNIQUE CHECK (family(address) = 4 AND masklen(address) = 32),
    range_id       bigint REFERENCES floating_ranges (id) ON DELETE CASCADE,
    pool           text NOT NULL,
    interface      text,
    fixed_ip_id    bigint REFERENCES fixed_ips (id) ON DELETE RESTRICT,
    project_id     text,
    host           text,
    auto_assigned  boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT floating_ips_associated_has_project CHECK (fixed_ip_id IS NULL OR project_id IS NOT NULL)
);
CREATE INDEX floating_ips_pool_free_idx ON floating_ips (pool, address) WHERE project_id IS NULL;
CREATE INDEX floating_ips_project_idx ON floating_ips (project_id) WHERE project_id IS NOT NULL;
CREATE INDEX floating_ips_fixed_idx ON floating_ips (fixed_ip_id) WHERE fixed_ip_id IS NOT NULL;

-- Per-project limits; a project without a row gets the service default.
CREATE TABLE quotas (
    project_id  text NOT NULL,
    resource    text NOT NULL CHECK (resource IN ('floating_ips', 'fixed_ips', 'networks')),
    hard_limit  integer NOT NULL CHECK (hard_limit >= -1),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, resource)
);
