// Package clustertest holds an integration test that needs no privileges:
// three nats-servers clustered on loopback with the generated
// authorization block, two manager replicas, an agent (with a recording
// driver), a compute service and an operator, each with its own identity,
// spread over them, and one node killed while allocations and the agent's
// notices keep flowing.
package clustertest
