// Package clustertest holds an integration test that needs no privileges:
// three nats-servers clustered on loopback, two manager replicas and an
// agent (with a recording driver) spread over them, and one node killed
// while allocations and the agent's notices keep flowing.
package clustertest
