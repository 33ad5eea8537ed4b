-- The summary of a host's last full convergence, as its agent reports it
-- (report_convergence): when, and whether the host was in sync or what the
-- agent changed or could not do ({"in_sync": bool, "changes": [...],
-- "errors": [...]}). NULL until the agent's first report.
ALTER TABLE hosts ADD COLUMN converged_at timestamptz,
    ADD COLUMN convergence jsonb CHECK (octet_length(convergence::text) <= 65536);
