// Package apierror owns every answer the proxy writes itself: Composio's error
// envelope, the proxy's own codes and slugs, and the one writer that renders them.
package apierror

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Slugs and numeric codes of the answers the proxy writes. Composio has no code
// for a duplicate connection; these are ours, inside Composio's 6xx
// connected-account range where they concern connected accounts.
const (
	SlugMultipleAccounts = "ConnectedAccount_MultipleConnectedAccounts"
	SlugLinkPending      = "ConnectedAccount_LinkPending"
	SlugBadRequest       = "ComposioGuard_BadRequest"
	SlugBodyTooLarge     = "ComposioGuard_RequestBodyTooLarge"
	SlugBodyTimeout      = "ComposioGuard_RequestBodyTimeout"
	SlugUnsupportedEnc   = "ComposioGuard_UnsupportedContentEncoding"
	SlugGuardUnavailable = "ComposioGuard_GuardUnavailable"
	SlugUpstreamTimeout  = "ComposioGuard_UpstreamTimeout"
	SlugUpstreamError    = "ComposioGuard_UpstreamUnreachable"
	SlugInvalidSandbox   = "ToolRouter_InvalidSandboxSize"
	SlugSandboxForbidden = "ToolRouter_SandboxSizeNotAllowed"
	SlugInternal         = "ComposioGuard_InternalError"

	CodeMultipleAccounts = 690
	CodeLinkPending      = 691
	CodeBadRequest       = 692
	CodeBodyTooLarge     = 693
	CodeGuardUnavailable = 694
	CodeUpstream         = 695
	CodeSandbox          = 696
	CodeInternal         = 699
)

// Header names the proxy reads or writes.
const (
	HeaderRequestID     = "X-Request-Id"
	HeaderShouldRetry   = "X-Should-Retry"
	HeaderAllowMultiple = "X-Composio-Allow-Multiple"
	HeaderGuard         = "X-Composio-Guard"
)

// Error is the body of Composio's error envelope. Extra members ride along
// inside "error" (clients keep the whole parsed body on their error object).
type Error struct {
	Message      string   `json:"message"`
	Code         int      `json:"code"`
	Slug         string   `json:"slug"`
	Status       int      `json:"status"`
	RequestID    string   `json:"request_id"`
	SuggestedFix string   `json:"suggested_fix"`
	Errors       []string `json:"errors"`

	// Proxy extensions, omitted when empty.
	ExistingAccountIDs []string `json:"existing_connected_account_ids,omitempty"`
	UserID             string   `json:"user_id,omitempty"`
	AuthConfigID       string   `json:"auth_config_id,omitempty"`
	RequestedSize      string   `json:"requested_sandbox_size,omitempty"`
	AllowedSizes       []string `json:"allowed_sandbox_sizes,omitempty"`
}

type envelope struct {
	Error *Error `json:"error"`
}

// Options tune how an envelope is sent.
type Options struct {
	// NoRetry adds "x-should-retry: false" so the generated SDK clients do not
	// resend the request (they retry 409 and 5xx otherwise).
	NoRetry bool
	// RetryAfterSeconds, when > 0, adds a Retry-After header.
	RetryAfterSeconds int
	// Close asks net/http to close the connection after the answer: the
	// request body was not read to its end, so the connection cannot be reused.
	Close bool
}

// Write renders e fully, then sends it with status e.Status. The body's
// request_id and the X-Request-Id header always agree.
func Write(w http.ResponseWriter, e *Error, opt Options) {
	if e.Errors == nil {
		e.Errors = []string{}
	}
	body, err := json.Marshal(envelope{Error: e})
	if err != nil { // cannot happen with the types above; never panic on a request path
		body = []byte(`{"error":{"message":"internal error","code":699,"slug":"` + SlugInternal + `","status":500,"request_id":"","suggested_fix":"","errors":[]}}`)
		e.Status = http.StatusInternalServerError
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(HeaderRequestID, e.RequestID)
	if opt.NoRetry {
		h.Set(HeaderShouldRetry, "false")
	}
	if opt.Close {
		h.Set("Connection", "close")
	}
	if opt.RetryAfterSeconds > 0 {
		h.Set("Retry-After", strconv.Itoa(opt.RetryAfterSeconds))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}
