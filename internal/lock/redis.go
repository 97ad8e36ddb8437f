package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/metrics"
)

// DefaultRedisPingInterval is RedisOptions.PingInterval's default.
const DefaultRedisPingInterval = 5 * time.Second

// Reasons of metrics.LockErrors{backend="redis"} counted by the backend: a
// closed set, distinct from the one reason the guard counts (timeout: a lock
// wait that ran out, which the backend cannot tell from its own side).
const (
	RedisErrTimeout     = "call_timeout" // the per-call timeout passed (Redis slow or unreachable)
	RedisErrUnavailable = "unavailable"  // no connection: refused, reset, closed client
	RedisErrServer      = "server_error" // Redis answered with an error (LOADING, READONLY, OOM, NOAUTH...)
	RedisErrLost        = "release_lost" // a release found the lock expired or taken by another holder
	RedisErrDecode      = "lease_decode" // a stored lease could not be decoded (dropped, read as a miss)
)

// Lock wait back-off: short first, so an uncontended hand-over is quick, then
// capped so that 60 waiters on one key do not flood Redis.
const (
	redisMinBackoff = 2 * time.Millisecond
	redisMaxBackoff = 50 * time.Millisecond
)

// releaseScript deletes the lock only when it still holds our token: a holder
// whose lock expired (and was taken by someone else) must not free the new
// holder's lock.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// RedisOptions are what NewRedis needs beside Settings.
type RedisOptions struct {
	// Metrics receives LockErrors and BackendUp; nil uses a private set.
	Metrics *metrics.Metrics
	// PingInterval is how often a background PING refreshes BackendUp while
	// no request touches Redis; default DefaultRedisPingInterval, < 0 disables.
	PingInterval time.Duration
	// Logger receives the Redis client's own messages (dial failures...) at
	// debug level; nil drops them. Failures reach callers as errors anyway.
	Logger *zap.Logger
}

// redisLog turns go-redis's printf logging into zap lines, so that stderr
// stays JSON. go-redis has one process-wide logger: the last store opened sets it.
type redisLog struct{ l *zap.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Debug("redis client", zap.String("detail", fmt.Sprintf(format, v...)))
}

// Redis is the Store shared by several replicas. NewRedis returns it as a
// Store; it is also an io.Closer, and main closes it on shutdown.
type Redis struct {
	client   redis.UniversalClient // a *redis.Client (one node, Sentinel) or a *redis.ClusterClient
	cluster  *redis.ClusterClient  // set on Cluster: WAIT goes to the node of the key
	topology Topology
	prefix   string
	timeout  time.Duration
	m        *metrics.Metrics
	log      *zap.Logger

	// Replication before trust (GUARD_REDIS_MIN_REPLICAS): a lock or lease
	// write is followed by WAIT minReplicas waitFor on its connection.
	minReplicas  int
	waitFor      time.Duration
	unreplicated map[string]prometheus.Counter // by op: lock, lease

	stop      chan struct{}
	mu        sync.Mutex // guards closed against wg.Add racing Close's wg.Wait
	closed    bool
	wg        sync.WaitGroup // the pinger and abandoned-lock cleanups
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Redis)(nil)

// ErrUnreplicated is returned (wrapped) by Lock and PutLease when fewer than
// GUARD_REDIS_MIN_REPLICAS replicas acknowledged the write in time. A lock
// is released first: the caller does not hold it. A lease stays written on
// the primary.
var ErrUnreplicated = errors.New("lock: write not acknowledged by enough Redis replicas")

// Ops of metrics.LockUnreplicated.
const (
	UnreplicatedLock  = "lock"
	UnreplicatedLease = "lease"
)

// NewRedis connects lazily: a Redis that is down at start-up is no start-up
// failure (the guard's failure mode decides per request), it shows as
// BackendUp{backend="redis"} 0 and as errors per call until Redis answers.
// Only a malformed URL (or CA file) is an error.
func NewRedis(s Settings, o RedisOptions) (Store, error) {
	target, err := parseRedisURL(s.RedisURL, s.RedisCAFile)
	if err != nil {
		return nil, fmt.Errorf("lock: invalid GUARD_REDIS_URL: %w", err)
	}
	if s.RedisMinReplicas < 0 {
		return nil, fmt.Errorf("lock: GUARD_REDIS_MIN_REPLICAS %d is negative", s.RedisMinReplicas)
	}
	def := DefaultSettings()
	if s.RedisTimeout <= 0 {
		s.RedisTimeout = def.RedisTimeout
	}
	if s.RedisKeyPrefix == "" {
		s.RedisKeyPrefix = def.RedisKeyPrefix
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultRedisPingInterval
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(metrics.Build{})
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	redis.SetLogger(redisLog{o.Logger})

	r := &Redis{
		topology:    target.topology,
		prefix:      s.RedisKeyPrefix,
		timeout:     s.RedisTimeout,
		m:           o.Metrics,
		log:         o.Logger,
		minReplicas: s.RedisMinReplicas,
		waitFor:     replicaWait(s.RedisTimeout),
		stop:        make(chan struct{}),
	}
	r.client, r.cluster = target.newClient(s.RedisTimeout)
	r.unreplicated = map[string]prometheus.Counter{
		UnreplicatedLock:  r.m.LockUnreplicated.WithLabelValues(UnreplicatedLock),
		UnreplicatedLease: r.m.LockUnreplicated.WithLabelValues(UnreplicatedLease),
	}
	r.m.BackendUp.WithLabelValues(r.Backend()).Set(0)
	if o.PingInterval > 0 {
		r.wg.Add(1)
		go r.pinger(o.PingInterval)
	}
	return r, nil
}

// replicaWait is WAIT's own timeout: two thirds of one call's budget at
// most, so that a WAIT that runs out still answers (with its count) before
// the call's deadline. Redis notices a blocked client's timeout on its
// event loop, up to one server tick (100ms at the default hz 10) late: the
// margin is never under 120ms (hence MinReplicaTimeout).
func replicaWait(timeout time.Duration) time.Duration {
	return max((timeout - max(timeout/3, 120*time.Millisecond)).Truncate(time.Millisecond), time.Millisecond)
}

// MinReplicaTimeout is the shortest GUARD_REDIS_TIMEOUT that leaves WAIT
// room (replicaWait) when GUARD_REDIS_MIN_REPLICAS is set.
const MinReplicaTimeout = 250 * time.Millisecond

// clientKnobs are the options every topology's client shares.
type clientKnobs struct {
	dial, read, write, pool *time.Duration
	ctxTimeout              *bool
	dialerRetries           *int
	maxRetries              *int
	disableIdentity         *bool
}

// tune sets what every client needs: timeouts no longer than one call's
// budget unless the URL says otherwise (a down or slow Redis must fail the
// call, never hang the client), one dial attempt per call (the caller's own
// loop, or the next request, retries), and no silent re-send (a retried
// SET NX whose first attempt did land would report the lock as taken by
// someone else: each call is one attempt).
func (k clientKnobs) tune(timeout time.Duration) {
	for _, d := range []*time.Duration{k.dial, k.read, k.write, k.pool} {
		if *d == 0 {
			*d = timeout
		}
	}
	*k.ctxTimeout = true
	*k.dialerRetries = 1
	*k.maxRetries = -1
	*k.disableIdentity = true // CLIENT SETINFO is an extra round trip, unknown before Redis 7.2
}

// newClient builds the client of the target's topology.
func (t *redisTarget) newClient(timeout time.Duration) (redis.UniversalClient, *redis.ClusterClient) {
	off := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	switch {
	case t.failover != nil:
		o := t.failover
		clientKnobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.ContextTimeoutEnabled, &o.DialerRetries, &o.MaxRetries, &o.DisableIdentity}.tune(timeout)
		return redis.NewFailoverClient(o), nil
	case t.cluster != nil:
		o := t.cluster
		clientKnobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.ContextTimeoutEnabled, &o.DialerRetries, &o.MaxRetries, &o.DisableIdentity}.tune(timeout)
		o.MaintNotificationsConfig = off
		c := redis.NewClusterClient(o)
		return c, c
	default:
		o := t.single
		clientKnobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.ContextTimeoutEnabled, &o.DialerRetries, &o.MaxRetries, &o.DisableIdentity}.tune(timeout)
		o.MaintNotificationsConfig = off
		// PoolSize keeps go-redis's default (10 per GOMAXPROCS): calls are
		// short, and a lock waiter holds a connection only for one SET at a time.
		return redis.NewClient(o), nil
	}
}

// Topology is the deployment GUARD_REDIS_URL names.
func (r *Redis) Topology() Topology { return r.topology }

// Backend names the backend for metrics and logs.
func (r *Redis) Backend() string { return "redis" }

// LocksExpire marks Redis locks as lapsing after their ttl (lock.Expiring).
func (r *Redis) LocksExpire() {}

// Close stops the pinger and closes the connection pool. Safe to call twice.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.stop)
		r.wg.Wait()
		if err := r.client.Close(); err != nil {
			r.closeErr = fmt.Errorf("lock: close redis: %w", err)
		}
	})
	return r.closeErr
}

// Ping checks that Redis answers, within the call timeout.
func (r *Redis) Ping(ctx context.Context) error {
	return r.call(ctx, "ping", func(ctx context.Context) error {
		return r.client.Ping(ctx).Err()
	})
}

func (r *Redis) pinger(every time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		_ = r.Ping(context.Background()) // the outcome is in BackendUp
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// Lock polls SET key token NX PX ttl with a jittered back-off until it wins
// or ctx ends (ErrTimeout). A Redis failure ends the wait at once with a
// non-ErrTimeout error, so that the guard applies its failure mode quickly.
func (r *Redis) Lock(ctx context.Context, key string, ttl time.Duration) (Unlock, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("lock: redis lock ttl %v is below 1ms", ttl)
	}
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	k := r.lockKey(key)
	backoff := redisMinBackoff
	for {
		var won bool
		var acked int64
		err := r.call(ctx, "lock", func(ctx context.Context) error {
			var err error
			won, acked, err = r.set(ctx, k, token, token, "NX", "PX", ttl.Milliseconds())
			return err
		})
		if err != nil {
			// The SET may have landed although its answer was lost: free it
			// rather than block the key for a whole ttl.
			r.abandon(k, token)
			if ended(ctx) {
				return nil, fmt.Errorf("%w: %w", ErrTimeout, ctxErr(ctx))
			}
			return nil, err
		}
		if won {
			if r.minReplicas > 0 && acked < int64(r.minReplicas) {
				// A lock the promoted replica would not know is no lock:
				// free it rather than hold it stale, and report it.
				r.abandon(k, token)
				return nil, r.notReplicated(UnreplicatedLock, acked)
			}
			return r.unlocker(k, token), nil
		}
		// Full jitter in [backoff/2, backoff): waiters on other replicas spread out.
		d := backoff/2 + mrand.N(backoff/2)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		case <-time.After(d):
		}
		backoff = min(backoff*2, redisMaxBackoff)
	}
}

// unlocker returns the token-checked release. Unlock has no error result: a
// failed or lost release is counted (and the lock expires with its ttl).
func (r *Redis) unlocker(k, token string) Unlock {
	var once sync.Once
	return func() {
		once.Do(func() {
			var deleted int64
			err := r.call(context.Background(), "unlock", func(ctx context.Context) error {
				n, err := releaseScript.Run(ctx, r.client, []string{k}, token).Int64()
				deleted = n
				return err
			})
			if err == nil && deleted == 0 {
				r.m.LockErrors.WithLabelValues(r.Backend(), RedisErrLost).Inc()
			}
		})
	}
}

// abandon releases, in the background and uncounted, a lock whose SET had an
// unknown outcome. It runs after the caller has gone on, bounded by the timeout.
func (r *Redis) abandon(k, token string) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		_ = releaseScript.Run(ctx, r.client, []string{k}, token).Err()
	}()
}

// GetLease reads the lease; a lease whose ExpiresAt has passed is a miss even
// if Redis still holds it (its clock may lag ours).
func (r *Redis) GetLease(ctx context.Context, key, owner string) (Lease, bool, error) {
	k := r.leaseKey(key, owner)
	var raw []byte
	err := r.call(ctx, "get lease", func(ctx context.Context) error {
		b, err := r.client.Get(ctx, k).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		raw = b
		return err
	})
	if err != nil || raw == nil {
		return Lease{}, false, err
	}
	var l Lease
	if err := json.Unmarshal(raw, &l); err != nil {
		// A lease we cannot read cannot be replayed: count it and forget it,
		// so that it does not hold the key until it expires.
		r.m.LockErrors.WithLabelValues(r.Backend(), RedisErrDecode).Inc()
		_ = r.call(ctx, "drop bad lease", func(ctx context.Context) error { return r.client.Del(ctx, k).Err() })
		return Lease{}, false, nil
	}
	if !time.Now().Before(l.ExpiresAt) {
		return Lease{}, false, nil
	}
	return l, true, nil
}

// PutLease stores l as JSON with PXAT at l.ExpiresAt, so Redis drops it when
// the link expires. An already expired lease deletes any older one.
func (r *Redis) PutLease(ctx context.Context, key string, l Lease) error {
	k := r.leaseKey(key, l.Owner)
	if !time.Now().Before(l.ExpiresAt) {
		return r.DropLease(ctx, key, l.Owner)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("lock: encode lease: %w", err)
	}
	var acked int64
	err = r.call(ctx, "put lease", func(ctx context.Context) error {
		var err error
		_, acked, err = r.set(ctx, k, "", b, "PXAT", l.ExpiresAt.UnixMilli())
		return err
	})
	if err == nil && r.minReplicas > 0 && acked < int64(r.minReplicas) {
		// Written on the primary, where it serves until a failover: kept.
		return r.notReplicated(UnreplicatedLease, acked)
	}
	return err
}

// set runs SET k args. With GUARD_REDIS_MIN_REPLICAS it is pipelined with
// WAIT on the same connection (WAIT counts the replicas that acknowledged
// the writes of its own connection), to the node that holds k on a Cluster.
// wrote is false when an NX found k taken; acked is WAIT's count (0 without
// WAIT).
//
// own, when set, is the value an NX writes (the lock's token). The Cluster
// client re-sends a command after a network error or a timeout (to follow
// the slot map), so an NX that did land may come back "taken": a GET in the
// same round trip tells our own token from another holder's.
func (r *Redis) set(ctx context.Context, k, own string, args ...any) (wrote bool, acked int64, err error) {
	cmd := make([]any, 0, 2+len(args))
	cmd = append(append(cmd, "SET", k), args...)
	verify := own != "" && r.cluster != nil && r.minReplicas == 0
	if r.minReplicas == 0 && !verify {
		err := r.client.Do(ctx, cmd...).Err()
		if errors.Is(err, redis.Nil) {
			return false, 0, nil
		}
		return err == nil, 0, err
	}
	var node redis.Cmdable = r.client
	if r.cluster != nil && r.minReplicas > 0 {
		// One node's own client: WAIT must follow the SET on its connection,
		// and this client does not re-send.
		c, err := r.cluster.MasterForKey(ctx, k)
		if err != nil {
			return false, 0, err
		}
		node = c
	}
	var set, get, wait *redis.Cmd
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.Do(ctx, cmd...)
		if verify {
			get = p.Do(ctx, "GET", k)
		}
		if r.minReplicas > 0 {
			wait = p.Do(ctx, "WAIT", r.minReplicas, r.waitFor.Milliseconds())
		}
		return nil
	})
	switch err := set.Err(); {
	case errors.Is(err, redis.Nil):
		if verify {
			if v, err := get.Text(); err == nil && v == own {
				wrote = true // our own NX, re-sent
			}
		}
	case err != nil:
		return false, 0, err
	default:
		wrote = true
	}
	if wait == nil {
		return wrote, 0, nil
	}
	n, err := wait.Int64()
	if err != nil {
		return wrote, 0, err
	}
	return wrote, n, nil
}

// notReplicated counts and logs a write that too few replicas acknowledged.
func (r *Redis) notReplicated(op string, acked int64) error {
	r.unreplicated[op].Inc()
	r.log.Warn("redis write not replicated in time: a failover now could lose it",
		zap.String("op", op), zap.Int64("acknowledged", acked), zap.Int("min_replicas", r.minReplicas),
		zap.Duration("waited", r.waitFor), zap.String("topology", string(r.topology)))
	return fmt.Errorf("%w: redis %s: %d of %d within %v", ErrUnreplicated, op, acked, r.minReplicas, r.waitFor)
}

// lockKey and leaseKey name the Redis keys of one guarded key: its lock,
// and one lease per owner after the tag. All carry the same hash tag (the
// guarded key in braces), so that on a Cluster a lock and its leases live
// in one slot, and the prefix holds no brace (Settings.Validate), so the
// tag is always the guarded key's.
func (r *Redis) lockKey(key string) string { return r.prefix + "lock:{" + tagSafe(key) + "}" }
func (r *Redis) leaseKey(key, owner string) string {
	return r.prefix + "lease:{" + tagSafe(key) + "}:" + tagSafe(owner)
}

// tagSafe escapes the braces (and the escape itself) of a guarded key, so
// that the hash tag is the whole key and never empty; one-to-one, so two
// keys never share a name.
func tagSafe(key string) string {
	if !strings.ContainsAny(key, "{}%") {
		return key
	}
	return strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D").Replace(key)
}

// DropLease deletes the lease; a missing one is no error.
func (r *Redis) DropLease(ctx context.Context, key, owner string) error {
	k := r.leaseKey(key, owner)
	return r.call(ctx, "drop lease", func(ctx context.Context) error {
		return r.client.Del(ctx, k).Err()
	})
}

// call runs fn under the per-call timeout and keeps the metrics: BackendUp
// follows every answer, LockErrors counts every failure of the backend. A
// caller that went away (ctx ended) says nothing about Redis and is not counted.
func (r *Redis) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	err := fn(cctx)
	if err == nil {
		r.m.BackendUp.WithLabelValues(r.Backend()).Set(1)
		return nil
	}
	if ended(ctx) {
		return fmt.Errorf("lock: redis %s: %w", op, ctxErr(ctx))
	}
	r.m.BackendUp.WithLabelValues(r.Backend()).Set(0)
	r.m.LockErrors.WithLabelValues(r.Backend(), redisReason(err)).Inc()
	return fmt.Errorf("lock: redis %s: %w", op, err)
}

// ended tells whether the caller's own context is over. Its deadline counts
// as soon as it has passed: the socket deadline go-redis derives from it may
// fire a moment before the context's own timer does.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// ctxErr is why an ended context ended.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

func redisReason(err error) string {
	var re redis.Error
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return RedisErrTimeout
	case errors.As(err, &re):
		return RedisErrServer
	default:
		return RedisErrUnavailable
	}
}

func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lock: token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
