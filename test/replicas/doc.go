// Package replicas owns the cross-replica proof of the Redis backend: real
// processes (a redis-server, the fake Composio and three proxies sharing one
// Redis) racing links for one user, then a Redis outage and its recovery.
// Everything is in the tests; this file only documents the package.
package replicas
