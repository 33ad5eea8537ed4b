DROP TABLE IF EXISTS rpc_requests;
