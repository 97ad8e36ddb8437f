package lock

// ErrorReasons lists the reasons of composio_guard_lock_errors_total that
// backend b counts itself: the Redis store's failures; the memory store
// has none. The guard counts its own (intercept.LockErrorReasons).
func ErrorReasons(b Backend) []string {
	if b == BackendRedis {
		return []string{RedisErrTimeout, RedisErrUnavailable, RedisErrServer, RedisErrLost, RedisErrDecode}
	}
	return nil
}
