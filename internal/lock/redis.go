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
	"net/url"
	"sync"
	"time"

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
	client  *redis.Client
	prefix  string
	timeout time.Duration
	m       *metrics.Metrics

	stop      chan struct{}
	mu        sync.Mutex // guards closed against wg.Add racing Close's wg.Wait
	closed    bool
	wg        sync.WaitGroup // the pinger and abandoned-lock cleanups
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Redis)(nil)

// NewRedis connects lazily: a Redis that is down at start-up is no start-up
// failure (the guard's failure mode decides per request), it shows as
// BackendUp{backend="redis"} 0 and as errors per call until Redis answers.
// Only a malformed URL is an error.
func NewRedis(s Settings, o RedisOptions) (Store, error) {
	opt, err := redis.ParseURL(s.RedisURL)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("lock: invalid GUARD_REDIS_URL: %w", err)
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
	// Timeouts no longer than one call's budget, unless the URL says otherwise:
	// a down or slow Redis must fail the call, never hang the client.
	if opt.DialTimeout == 0 {
		opt.DialTimeout = s.RedisTimeout
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = s.RedisTimeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = s.RedisTimeout
	}
	if opt.PoolTimeout == 0 {
		opt.PoolTimeout = s.RedisTimeout
	}
	opt.ContextTimeoutEnabled = true
	// One dial attempt per call: the caller's own loop (or the next request)
	// retries, and go-redis redials in the background after repeated failures.
	opt.DialerRetries = 1
	// No silent re-send: a retried SET NX whose first attempt did land would
	// report the lock as taken by someone else; each call is one attempt.
	opt.MaxRetries = -1
	// PoolSize keeps go-redis's default (10 per GOMAXPROCS): calls are short,
	// and a lock waiter holds a connection only for one SET at a time.
	opt.DisableIdentity = true // CLIENT SETINFO is an extra round trip, unknown before Redis 7.2
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	redis.SetLogger(redisLog{o.Logger})

	r := &Redis{
		client:  redis.NewClient(opt),
		prefix:  s.RedisKeyPrefix,
		timeout: s.RedisTimeout,
		m:       o.Metrics,
		stop:    make(chan struct{}),
	}
	r.m.BackendUp.WithLabelValues(r.Backend()).Set(0)
	if o.PingInterval > 0 {
		r.wg.Add(1)
		go r.pinger(o.PingInterval)
	}
	return r, nil
}

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
	k := r.prefix + "lock:" + key
	backoff := redisMinBackoff
	for {
		var won bool
		err := r.call(ctx, "lock", func(ctx context.Context) error {
			err := r.client.Do(ctx, "SET", k, token, "NX", "PX", ttl.Milliseconds()).Err()
			switch {
			case err == nil:
				won = true
				return nil
			case errors.Is(err, redis.Nil):
				return nil // held by another
			default:
				return err
			}
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
func (r *Redis) GetLease(ctx context.Context, key string) (Lease, bool, error) {
	k := r.prefix + "lease:" + key
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
	k := r.prefix + "lease:" + key
	if !time.Now().Before(l.ExpiresAt) {
		return r.DropLease(ctx, key)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("lock: encode lease: %w", err)
	}
	return r.call(ctx, "put lease", func(ctx context.Context) error {
		return r.client.Do(ctx, "SET", k, b, "PXAT", l.ExpiresAt.UnixMilli()).Err()
	})
}

// DropLease deletes the lease; a missing one is no error.
func (r *Redis) DropLease(ctx context.Context, key string) error {
	k := r.prefix + "lease:" + key
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
