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
	SlugSessionForbidden = "ToolRouter_SessionPolicyForbidden"
	SlugInternal         = "ComposioGuard_InternalError"
	SlugCheckNotPossible = "ComposioGuard_CheckNotPossible"
	SlugMaxAccounts      = "ConnectedAccount_MaxAccountsPerToolkitReached"
	SlugProxyBusy        = "ComposioGuard_ProxyBusy" // GUARD_BODY_BUDGET_BYTES is used up by other requests' bodies

	CodeMultipleAccounts = 690
	CodeLinkPending      = 691
	CodeBadRequest       = 692
	CodeBodyTooLarge     = 693
	CodeGuardUnavailable = 694
	CodeUpstream         = 695
	CodeSandbox          = 696
	CodeCheckNotPossible = 697
	CodeMaxAccounts      = 689
	CodeProxyBusy        = 698
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
	body := e.appendEnvelope(make([]byte, 0, 512))
	body = append(body, '\n')
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(HeaderRequestID, e.RequestID)
	if opt.NoRetry {
		h[HeaderShouldRetry] = shouldRetryFalse
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

// Header values every answer shares: a header's value slice is replaced by
// Set and copied by Add (its capacity is its length), never written in place.
var (
	contentTypeJSON  = []string{"application/json"}
	shouldRetryFalse = []string{"false"}
)

// appendEnvelope appends {"error":e} as json.Marshal writes it, byte for
// byte (TestEnvelopeMatchesEncodingJSON), without reflection: it is written
// on every 409.
func (e *Error) appendEnvelope(b []byte) []byte {
	b = append(b, `{"error":{"message":`...)
	b = appendString(b, e.Message)
	b = append(b, `,"code":`...)
	b = strconv.AppendInt(b, int64(e.Code), 10)
	b = append(b, `,"slug":`...)
	b = appendString(b, e.Slug)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"request_id":`...)
	b = appendString(b, e.RequestID)
	b = append(b, `,"suggested_fix":`...)
	b = appendString(b, e.SuggestedFix)
	b = append(b, `,"errors":`...)
	b = appendStrings(b, e.Errors)
	if len(e.ExistingAccountIDs) > 0 {
		b = append(b, `,"existing_connected_account_ids":`...)
		b = appendStrings(b, e.ExistingAccountIDs)
	}
	if e.UserID != "" {
		b = append(b, `,"user_id":`...)
		b = appendString(b, e.UserID)
	}
	if e.AuthConfigID != "" {
		b = append(b, `,"auth_config_id":`...)
		b = appendString(b, e.AuthConfigID)
	}
	if e.RequestedSize != "" {
		b = append(b, `,"requested_sandbox_size":`...)
		b = appendString(b, e.RequestedSize)
	}
	if len(e.AllowedSizes) > 0 {
		b = append(b, `,"allowed_sandbox_sizes":`...)
		b = appendStrings(b, e.AllowedSizes)
	}
	return append(b, "}}"...)
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendString quotes s as encoding/json does. Printable ASCII is written
// here; a string with anything else (control bytes, non-ASCII, the HTML
// characters json.Marshal escapes) is left to encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
