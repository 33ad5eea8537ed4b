-- A stopped network (netadm network stop) keeps its addresses, interfaces
-- and host, but no host is told to have it: get_host_state leaves it out,
-- so every agent tears it down, until network start.
ALTER TABLE networks ADD COLUMN stopped boolean NOT NULL DEFAULT false;
