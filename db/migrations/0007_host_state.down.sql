DROP INDEX fixed_ips_allocated_idx;
DROP INDEX fixed_ips_host_idx;
