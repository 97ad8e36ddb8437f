package intercept_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/composio-guard/composio-guard/internal/lock"
)

var errBackend = errors.New("backend down")

// brokenStore fails every call, as a Redis backend that is down would.
type brokenStore struct{}

func (brokenStore) Lock(context.Context, string, time.Duration) (lock.Unlock, error) {
	return nil, fmt.Errorf("lock: %w", errBackend)
}
func (brokenStore) GetLease(context.Context, string, string) (lock.Lease, bool, error) {
	return lock.Lease{}, false, errBackend
}
func (brokenStore) PutLease(context.Context, string, lock.Lease) error { return errBackend }
func (brokenStore) DropLease(context.Context, string, string) error    { return errBackend }
func (brokenStore) Backend() string                                    { return "redis" }

// unreplicatedStore takes no lock: fewer replicas than
// GUARD_REDIS_MIN_REPLICAS acknowledged it (lock.Redis released it again).
type unreplicatedStore struct{ brokenStore }

func (unreplicatedStore) Lock(context.Context, string, time.Duration) (lock.Unlock, error) {
	return nil, fmt.Errorf("lock: redis lock: %w (0 of 1 within 333ms)", lock.ErrUnreplicated)
}

// leaseBroken locks but cannot read or write leases.
type leaseBroken struct{ brokenStore }

func (leaseBroken) Lock(context.Context, string, time.Duration) (lock.Unlock, error) {
	return func() {}, nil
}

// heldStore behaves as if another request held every key.
type heldStore struct{ brokenStore }

func (heldStore) Lock(ctx context.Context, _ string, _ time.Duration) (lock.Unlock, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("%w: %w", lock.ErrTimeout, ctx.Err())
}

// counter reads one counter's value (prometheus/testutil would add a module).
func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
