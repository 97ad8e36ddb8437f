package upstream

import (
	"fmt"
	"net/http"
)

// Connected-account statuses the guard cares about.
const (
	StatusActive    = "ACTIVE"
	StatusInitiated = "INITIATED"
)

// ListQuery is one guard lookup: the list call the SDK itself makes, asked for
// one user on one auth config.
type ListQuery struct {
	APIPrefix    string   // "/api/v3" or "/api/v3.1": the request's own version
	UserID       string   // one id, never containing a comma
	AuthConfigID string   // one id, never containing a comma
	AccountType  string   // "" (PRIVATE, not sent) or "SHARED"; only sent on v3.1+
	Statuses     []string // e.g. ACTIVE, INITIATED
	// Header holds the caller's credential headers and X-Request-Id, with
	// canonical keys; they are sent unchanged, with nothing else of the
	// caller's. The map becomes the list client's: it sets Accept and
	// User-Agent in it (one map per lookup, not two). With nil, only those two
	// are sent.
	Header http.Header
}

// Account is the part of a listed connected account the guard reads.
type Account struct {
	ID           string
	Status       string
	UserID       string
	AuthConfigID string
}

// ListResult is every matching account over all pages read.
type ListResult struct {
	Items []Account
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
