package upstream

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Connected-account statuses the guard cares about.
const (
	StatusActive    = "ACTIVE"
	StatusInitiated = "INITIATED"
)

// ListQuery is one guard lookup: the list call the SDK itself makes, asked for
// one user on one auth config.
type ListQuery struct {
	APIPrefix    string // "/api/v3" or "/api/v3.1": the request's own version
	UserID       string // one id, never containing a comma
	AuthConfigID string // one id, never containing a comma; "" only with ToolkitSlug
	// ToolkitSlug narrows the lookup to one toolkit (toolkit_slugs), for a
	// Tool Router session's link whose auth config is Composio's default.
	ToolkitSlug string
	AccountType string   // "" (PRIVATE, not sent) or "SHARED"; only sent on v3.1+
	Statuses    []string // e.g. ACTIVE, INITIATED
	// Header holds the caller's credential headers and X-Request-Id, with
	// canonical keys; they are sent unchanged, with nothing else of the
	// caller's. The map becomes the list client's: it sets Accept and
	// User-Agent in it (one map per lookup, not two). With nil, only those two
	// are sent.
	Header http.Header
	// StopAtActive ends the lookup after the first page that holds an
	// ACTIVE account that Matches the query, without following next_cursor
	// (ListResult.Partial tells). For a duplicate check one such account is
	// the answer; reading on would only cost calls, and a user with more
	// accounts than MaxPages pages would otherwise get ErrTooManyPages.
	StopAtActive bool
	// Tenant picks the circuit breaker: an opaque digest of the caller's
	// credential, chosen by the caller of List, so that one tenant's
	// failures never open the breaker of another. "" is the shared breaker.
	// It never reaches Composio.
	Tenant string
}

// Account is the part of a listed connected account the guard reads.
// UserID and AuthConfigID are "" when the item lacks them.
type Account struct {
	ID           string
	Status       string
	UserID       string // the deprecated user_id
	AuthConfigID string
	Toolkit      string // toolkit.slug
	// CreatedAt is created_at (RFC 3339, read as encoding/json reads a
	// time.Time) in UTC; zero when absent, null or unreadable.
	CreatedAt time.Time
}

// Matches reports whether the account counts for q: it does unless its own
// fields contradict the query. Composio filters by the query already; this
// catches an answer that ignored a filter. A status outside q.Statuses
// (when q names any), another auth config or another user id contradicts
// it. A missing member does not (user_id is deprecated and may be absent):
// the safe side is to count the item. Ids are compared as the lock key
// folds them (case, surrounding space), so a spelling Composio might read
// as the same user still counts.
func (a Account) Matches(q ListQuery) bool {
	if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, a.Status) {
		return false
	}
	return (q.AuthConfigID == "" || sameID(a.AuthConfigID, q.AuthConfigID)) && sameID(a.UserID, q.UserID) &&
		(q.ToolkitSlug == "" || sameID(a.Toolkit, q.ToolkitSlug))
}

// sameID: got is absent, or names want up to case and surrounding space.
func sameID(got, want string) bool {
	return got == "" || got == want || strings.EqualFold(strings.TrimSpace(got), strings.TrimSpace(want))
}

// ListResult is every account the list call returned over the pages read.
type ListResult struct {
	Items []Account
	// Partial: ListQuery.StopAtActive ended the lookup with pages unread.
	// Items then holds an ACTIVE account that Matches the query.
	Partial bool
	// Total is the last total_items Composio reported (0 when none did).
	Total int64
}

// StatusError is an answer of the list call that the caller must get back
// as the upstream sent it (401, 403, 429).
type StatusError struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream list answered %d", e.StatusCode)
}
