-- novanet_analyze lets the manager's runtime role refresh the planner's
-- statistics of its tables after a bulk write (create_networks). Before
-- PostgreSQL 17 only a table's owner may ANALYZE it; the runtime role owns
-- nothing (docs/decisions/012-runtime-role.md), so it calls this function,
-- which runs as the schema's owner and analyzes nothing but the owner's
-- tables of this schema.
CREATE FUNCTION novanet_analyze(VARIADIC tables text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_tables
                       WHERE schemaname = current_schema() AND tablename = t AND tableowner = current_user) THEN
            RAISE EXCEPTION 'novanet_analyze: % is not a table of schema %', t, current_schema()
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        EXECUTE format('ANALYZE %I.%I', current_schema(), t);
    END LOOP;
END
$$;

-- Only the roles migrate up grants it to (GrantRuntime) may call it.
REVOKE ALL ON FUNCTION novanet_analyze(text[]) FROM PUBLIC;
