// Package redisserver holds the lock store's tests and benchmarks against
// real redis-server processes: one node, replicas, Sentinel, Cluster, TLS,
// failover. They start the servers themselves through
// internal/lock/redistest and fail with one line when redis-server is
// missing (make deps installs it). The tests over miniredis stay in
// internal/lock, in the fast lane.
package redisserver
