-- Replies to requests that carried a request id (the Novanet-Request-Id
-- header), so that a retry with the same id gets the same reply instead of
-- doing the work twice. The row is written in the same transaction as the
-- change it answers for. Rows older than the manager's --request-id-window
-- are deleted by its sweeper.
CREATE TABLE rpc_requests (
    method      text        NOT NULL,
    request_id  text        NOT NULL CHECK (octet_length(request_id) BETWEEN 1 AND 128),
    body_sha256 bytea       NOT NULL,
    reply       bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, request_id)
);

CREATE INDEX rpc_requests_created_at ON rpc_requests (created_at);
