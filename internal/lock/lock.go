// Package lock owns the guard's shared state: the per-key lock that serialises
// guarded creates, and the pending-link lease that lets a repeated link be
// answered with the first one's answer. Backends: memory (one process) and
// Redis (several replicas), behind the one Store interface.
package lock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// ErrTimeout is returned by Lock when the deadline passed before the lock was
// free. Backend failures (Redis down) are other errors, wrapped with context.
var ErrTimeout = errors.New("lock: wait deadline exceeded")

// Lease is the remembered answer of a successful link, kept until the link
// expires so that a repeat while the account is still INITIATED can be replayed.
type Lease struct {
	AccountID string `json:"account_id"`
	// Owner is an opaque digest of the credential that made the link: the
	// lease is that credential's (Store.GetLease), and its answer is
	// replayed to that credential only. Request is a digest of the
	// members that shape the link (route, callback_url, alias, experimental):
	// a repeat that differs in them is refused, not replayed.
	Owner       string    `json:"owner,omitempty"`
	Request     string    `json:"request,omitempty"`
	Status      int       `json:"status"`
	ContentType string    `json:"content_type"`
	Body        []byte    `json:"body"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// Unlock releases a held lock. It is safe to call more than once.
type Unlock func()

// Store is the contract every backend meets.
type Store interface {
	// Lock takes the per-key lock, waiting until ctx ends. ttl bounds how long
	// the lock may be held before a backend that can (Redis) drops it by itself.
	Lock(ctx context.Context, key string, ttl time.Duration) (Unlock, error)
	// GetLease returns the lease owner holds on key; ok is false when there
	// is none or it expired. Its Body is read-only: it may be the store's
	// own bytes.
	//
	// A key has one lock but a lease per owner: two callers that share a
	// key (one user id in two projects, on a toolkit's default auth config)
	// serialise on its lock, and neither ever reads, replaces or drops the
	// other's lease.
	GetLease(ctx context.Context, key, owner string) (l Lease, ok bool, err error)
	// PutLease stores l as l.Owner's lease on key until l.ExpiresAt.
	PutLease(ctx context.Context, key string, l Lease) error
	// DropLease removes owner's lease on key; dropping a missing lease is no
	// error.
	DropLease(ctx context.Context, key, owner string) error
	// Backend names the backend for metrics and logs: "memory" or "redis".
	Backend() string
}

// TryLocker is a Store that can take a free lock without waiting, with no
// context or timer to set up: the guard tries it first, and waits with Lock
// only when the key is held. The memory backend is one.
type TryLocker interface {
	// TryLock takes the per-key lock if it is free; ok is false if it is held.
	TryLock(key string, ttl time.Duration) (u Unlock, ok bool)
}

// Expiring is a Store whose locks lapse by themselves once their ttl has
// passed (Redis): a holder must be done by then, so the guard bounds its
// forward by it. A memory lock is held until Unlock, and needs no bound.
type Expiring interface {
	LocksExpire()
}

// Key builds the key of one guarded create: the lock and the lease of every
// create for one (auth config, user, account type), whatever credential or
// route it comes through. Auth config ids are unique across Composio, so no
// credential is needed to tell two projects apart. The ids are folded (case,
// surrounding white space) first: should Composio ever read two spellings as
// one, they still share one lock; a coarser key can only serialise more. It
// holds no raw user id (hashed) and no secret.
func Key(authConfigID, userID, accountType string) string {
	u := sha256.Sum256([]byte(fold(userID)))
	return fold(authConfigID) + ":" + hex.EncodeToString(u[:12]) + ":" + accountType
}

// fold lower-cases s and trims white space around it, without allocating
// when there is nothing to change (ids are usually lower-case ASCII already).
func fold(s string) string {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || ('A' <= c && c <= 'Z') {
			return strings.ToLower(s)
		}
	}
	return s
}
