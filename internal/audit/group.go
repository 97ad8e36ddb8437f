package audit

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/composio-guard/composio-guard/internal/lock"
)

// Account statuses the audit reads.
const (
	StatusActive    = "ACTIVE"
	StatusInitiated = "INITIATED"
)

// Account types; an item without one is PRIVATE (the API's default, and
// the only type /api/v3 knows).
const (
	TypePrivate = "PRIVATE"
	TypeShared  = "SHARED"
)

// Item is one listed account as the scan hands it to a Grouper: the few
// members the audit reads. CreatedAt is zero when absent or unreadable.
type Item struct {
	ID, Status, UserID, AuthConfigID, Toolkit, AccountType string
	CreatedAt                                              time.Time
}

// record is what the audit keeps of one account: its id, status and
// created_at, 32 bytes plus the id's own (never the raw JSON).
type record struct {
	id      string
	created int64 // unix nanoseconds; 0 when unknown
	status  uint8
}

const (
	stActive uint8 = iota + 1
	stInitiated
)

// bucket is every kept account of one (user, auth config, account type), as
// the guard's lock key folds them; the spellings shown are the oldest
// account's (spelled is its created_at).
type bucket struct {
	user, authConfig, toolkit, accountType string
	spelled                                int64
	recs                                   []record
}

// Grouper gathers listed accounts into groups by (user, auth config,
// account type) with the guard's own folding of ids (lock.Key: case and
// surrounding white space), and applies the duplicate rules. Not safe for
// concurrent use.
type Grouper struct {
	buckets map[string]*bucket
	// Accounts that could not be placed in a group (no user id or no auth
	// config id): a scan with any is incomplete.
	Unplaceable int
}

// NewGrouper returns an empty Grouper; sizeHint is the expected number of
// accounts (0 when unknown).
func NewGrouper(sizeHint int) *Grouper {
	return &Grouper{buckets: make(map[string]*bucket, min(sizeHint, 1<<20))}
}

// Add keeps one account. Statuses other than ACTIVE and INITIATED are not
// kept (they cannot make a duplicate); it reports whether it kept it.
func (g *Grouper) Add(it *Item) bool {
	var st uint8
	switch it.Status {
	case StatusActive:
		st = stActive
	case StatusInitiated:
		st = stInitiated
	default:
		return false
	}
	if strings.TrimSpace(it.UserID) == "" || strings.TrimSpace(it.AuthConfigID) == "" {
		g.Unplaceable++
		return false
	}
	at := foldType(it.AccountType)
	var created int64
	if !it.CreatedAt.IsZero() {
		created = it.CreatedAt.UnixNano()
	}
	key := lock.Key(it.AuthConfigID, it.UserID, at)
	b := g.buckets[key]
	if b == nil {
		b = &bucket{user: it.UserID, authConfig: it.AuthConfigID, toolkit: it.Toolkit, accountType: at, spelled: created,
			recs: make([]record, 0, 1)}
		g.buckets[key] = b
	}
	for _, r := range b.recs {
		if r.id == it.ID {
			return true // listed twice (pages shifted under the scan): one account
		}
	}
	if created != 0 && (b.spelled == 0 || created < b.spelled) {
		b.user, b.authConfig, b.toolkit, b.spelled = it.UserID, it.AuthConfigID, it.Toolkit, created
	}
	b.recs = append(b.recs, record{id: it.ID, created: created, status: st})
	return true
}

// foldType is the account type as the guard keys it: upper case, PRIVATE
// when absent.
func foldType(t string) string {
	switch t {
	case "", TypePrivate:
		return TypePrivate
	case TypeShared:
		return TypeShared
	}
	t = strings.ToUpper(strings.TrimSpace(t))
	if t == "" {
		return TypePrivate
	}
	return t
}

// Rules are the duplicate rules' parameters.
type Rules struct {
	// PendingTTL: an INITIATED account older than this is an expired link
	// and never counts (the guard's GUARD_PENDING_MAX_TTL).
	PendingTTL time.Duration
	// Now is the time the ages are measured at.
	Now time.Time
	// Since, when set, keeps only the duplicate groups that hold a counted
	// account created at or after it (or whose created_at is unknown).
	Since time.Time
}

// Account is one account of a duplicate group, as reported.
type Account struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Group is one duplicate group: the accounts that count, oldest first (an
// unknown created_at last).
type Group struct {
	UserID       string    `json:"user_id"`
	AuthConfigID string    `json:"auth_config_id"`
	Toolkit      string    `json:"toolkit"`
	AccountType  string    `json:"account_type"`
	Count        int       `json:"count"`
	Accounts     []Account `json:"accounts"`
}

// Totals are the counts of the closing summary.
type Totals struct {
	Groups          int // (user, auth config, account type) groups among the kept accounts
	DuplicateGroups int
	Beyond          int // accounts beyond the first in the duplicate groups
}

// Duplicates applies the rules: a group is a duplicate when it holds two or
// more accounts that count. An ACTIVE account always counts; an INITIATED one
// counts while it is younger than the pending TTL, or when its created_at
// is unknown (the side that cannot hide a duplicate). So: more than one
// ACTIVE, an ACTIVE and a live INITIATED, or more than one live INITIATED.
// Groups come sorted by user, auth config, account type.
func (g *Grouper) Duplicates(r Rules) ([]Group, Totals) {
	tot := Totals{Groups: len(g.buckets)}
	var out []Group
	cutoff := r.Now.Add(-r.PendingTTL).UnixNano()
	since := int64(0)
	if !r.Since.IsZero() {
		since = r.Since.UnixNano()
	}
	var live []record
	for _, b := range g.buckets {
		if len(b.recs) < 2 {
			continue
		}
		live = live[:0]
		recent := since == 0
		for _, rec := range b.recs {
			if rec.status == stInitiated && rec.created != 0 && rec.created <= cutoff {
				continue // an expired link
			}
			live = append(live, rec)
			if rec.created == 0 || rec.created >= since {
				recent = true
			}
		}
		if len(live) < 2 || !recent {
			continue
		}
		slices.SortFunc(live, func(a, b record) int {
			switch {
			case a.created == b.created:
				return strings.Compare(a.id, b.id)
			case a.created == 0:
				return 1
			case b.created == 0:
				return -1
			}
			return cmp.Compare(a.created, b.created)
		})
		grp := Group{UserID: b.user, AuthConfigID: b.authConfig, Toolkit: b.toolkit, AccountType: b.accountType,
			Count: len(live), Accounts: make([]Account, len(live))}
		for i, rec := range live {
			a := Account{ID: rec.id, Status: StatusActive}
			if rec.status == stInitiated {
				a.Status = StatusInitiated
			}
			if rec.created != 0 {
				a.CreatedAt = time.Unix(0, rec.created).UTC()
			}
			grp.Accounts[i] = a
		}
		out = append(out, grp)
		tot.DuplicateGroups++
		tot.Beyond += len(live) - 1
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(strings.Compare(a.UserID, b.UserID), strings.Compare(a.AuthConfigID, b.AuthConfigID),
			strings.Compare(a.AccountType, b.AccountType))
	})
	return out, tot
}
