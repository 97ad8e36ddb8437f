// Package failover owns the Redis failover suite: real redis-server
// processes on loopback (a primary, its replica(s), three sentinels started
// as redis-server --sentinel), the fake Composio and three proxy binaries on
// the redis+sentinel:// URL, under a steady mix of racing links from many
// users. The primary is killed by PID (SIGKILL); the suite measures the
// answers during the switch, the time the proxies take to recover by
// themselves, the duplicates created across it, and the old primary's
// return as a replica. Everything is in the tests; this file only
// documents the package. Figures: docs/redis.md.
package failover
