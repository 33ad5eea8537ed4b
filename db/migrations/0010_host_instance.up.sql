-- The agent instance that registered a host: a random id each
-- network-host process makes at start. A registration under a name whose
-- agent is alive and is another instance is refused (two agents with one
-- host name). '' for agents that send none.
ALTER TABLE hosts ADD COLUMN instance text NOT NULL DEFAULT ''
    CHECK (octet_length(instance) <= 64);
