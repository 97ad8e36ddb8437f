package intercept

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// captured is a guarded request's body as read.
type captured struct {
	raw   []byte    // the bytes as sent (compressed when gzip)
	plain []byte    // the JSON the guard checks (raw, or raw decompressed)
	gzip  bool      // Content-Encoding was gzip
	tail  io.Reader // shadow mode only: the unread rest (body over the cap, or a read error)
	read  bool      // reading began: r.Body is consumed, forward from these fields
	err   error     // why reading failed, when it did
}

func tooLarge(max int64) *badRequest {
	return &badRequest{
		status: http.StatusRequestEntityTooLarge, slug: apierror.SlugBodyTooLarge, code: apierror.CodeBodyTooLarge, close: true,
		reason: ReasonBodyTooLarge, message: fmt.Sprintf("the request body is larger than %d bytes", max),
		fix: "Send a smaller body: the proxy reads at most GUARD_MAX_BODY_BYTES of a guarded request (connected-account and session requests are a few kilobytes at most).",
	}
}

func bodyTimeout(d time.Duration) *badRequest {
	return &badRequest{
		status: http.StatusRequestTimeout, slug: apierror.SlugBodyTimeout, code: apierror.CodeBadRequest, close: true,
		reason: ReasonBodyTimeout, message: fmt.Sprintf("the request body was not received within %s", d),
		fix: "Send the whole body at once; the proxy waits at most GUARD_BODY_READ_TIMEOUT for a guarded request's body.",
	}
}

var clientGone = &badRequest{status: statusClientGone, reason: ReasonClientGone}

// bodyTools are the body tools every policy shares: bounded capture (size,
// time, the global budget, gzip), with one set of limits.
type bodyTools struct {
	max        int64
	timeout    time.Duration
	retryAfter int
	keepRest   bool // keep what is not read, so a refused body can still be forwarded whole (shadow mode)
	budget     *byteBudget
}

func newBodyTools(cfg Config, keepRest bool) *bodyTools {
	return &bodyTools{max: cfg.MaxBodyBytes, timeout: cfg.BodyReadTimeout, retryAfter: cfg.RetryAfterSeconds(),
		keepRest: keepRest, budget: newByteBudget(cfg.BodyBudgetBytes)}
}

// read captures c's body into c.body, bounded in time (GUARD_BODY_READ_TIMEOUT,
// through the connection's read deadline) and, with every other guarded body
// in flight, in memory (GUARD_BODY_BUDGET_BYTES, see byteBudget); see
// readBodyWithin. What the body holds of the budget is given back when the
// request ends.
func (t *bodyTools) read(c *call) *badRequest {
	w, r := c.w, c.r
	rc := http.NewResponseController(w)
	deadlineSet := rc.SetReadDeadline(time.Now().Add(t.timeout)) == nil
	body, br := readBodyWithin(w, r, t.max, !t.keepRest, t.holdFor(r))
	c.body = body
	if br != nil && br.reason == ReasonBodyBudget {
		br.retryAfter = t.retryAfter
	}
	if br != nil && br.reason == ReasonBodyRead {
		var ne net.Error
		switch {
		case errors.As(body.err, &ne) && ne.Timeout(): // first: a read timeout also ends the request's context
			br = bodyTimeout(t.timeout)
		case r.Context().Err() != nil:
			br = clientGone
		case errors.Is(body.err, io.ErrUnexpectedEOF):
			br = clientGone // the connection ended mid-body
		}
	}
	if deadlineSet && (br == nil || !br.close) {
		// Read to its end: the rest of the exchange streams unbounded, as
		// pass-through does. A body not read to its end keeps the deadline, so
		// net/http's drain of what is left cannot wait on a silent client.
		_ = rc.SetReadDeadline(time.Time{})
	}
	return br
}

// holdFor is the hold of the request r. A request whose scope is not ended
// by its owner (a Guard served outside the server's middleware, as some
// tests do) is not counted: nothing would give its bytes back.
func (t *bodyTools) holdFor(r *http.Request) bodyHold {
	sc := reqscope.From(r.Context())
	if t.budget == nil || !sc.CanHold(t.budget) {
		return bodyHold{}
	}
	return bodyHold{b: t.budget, sc: sc}
}

// innermost unwraps middleware ResponseWriters down to net/http's own, so
// that http.MaxBytesReader can tell the server to close the connection
// instead of draining the rest of an oversized body.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// readBodyWithin captures a guarded request's body within the byte cap, on the
// wire and once decompressed, each buffer reserved from hold as it grows.
// With strict, the cap is an http.MaxBytesReader (the server then closes the
// connection instead of draining a huge body); without, the unread rest is
// kept so the whole body can still be forwarded.
func readBodyWithin(w http.ResponseWriter, r *http.Request, max int64, strict bool, hold bodyHold) (captured, *badRequest) {
	enforce := strict
	var c captured
	gz, br := encoding(r.Header)
	if br != nil {
		return c, br
	}
	if br := formBody(r.Header); br != nil {
		return c, br
	}
	c.gzip = gz
	if r.Body == nil || r.Body == http.NoBody {
		return c, bad(ReasonNotJSON, "the body is empty; a JSON object is required")
	}
	if enforce && r.ContentLength > max {
		return c, tooLarge(max)
	}
	c.read = true
	var src io.Reader
	if enforce {
		src = http.MaxBytesReader(innermost(w), r.Body, max)
	} else {
		src = io.LimitReader(r.Body, max+1)
	}
	raw, err := readAll(src, r.ContentLength, max, hold)
	c.raw = raw
	if err == errBodyBudget {
		if !enforce {
			c.tail = r.Body // shadow: forwarded whole, the rest streamed
		}
		return c, proxyBusy()
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return c, tooLarge(max)
		}
		if !enforce {
			c.tail = r.Body // forwarding hits the same error: the upstream never gets a cut body as whole
		}
		c.err = err
		br := bad(ReasonBodyRead, "the request body could not be read")
		br.close = true
		return c, br
	}
	if int64(len(raw)) > max { // only in shadow mode, through the LimitReader
		c.tail = r.Body
		return c, tooLarge(max)
	}
	if !gz {
		c.plain = raw
		return c, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return c, bad(ReasonBadGzip, "the body is not valid gzip")
	}
	plain, err := readAll(io.LimitReader(zr, max+1), -1, max, hold)
	if err == errBodyBudget {
		return c, proxyBusy() // raw is whole: shadow mode forwards it as sent
	}
	if err != nil {
		return c, bad(ReasonBadGzip, "the body is not valid gzip")
	}
	if int64(len(plain)) > max {
		return c, tooLarge(max)
	}
	c.plain = plain
	return c, nil
}

// formBody refuses a body typed as a form. The guard reads every body as
// JSON; a server that honours the type would read other fields from the same
// bytes (`{"x":"&user_id=victim&…","user_id":"checked",…}`), so the check and
// the create could name two users. Any other type (or none) is read as JSON,
// as Composio's SDKs send it.
func formBody(h http.Header) *badRequest {
	for _, v := range h.Values("Content-Type") {
		v = strings.TrimSpace(v)
		if hasPrefixFold(v, "application/x-www-form-urlencoded") || hasPrefixFold(v, "multipart/") {
			return &badRequest{
				status: http.StatusBadRequest, slug: apierror.SlugBadRequest, code: apierror.CodeBadRequest,
				reason: ReasonNotJSON, message: "the body is typed as a form; the duplicate-connection check reads it as JSON, and a form could say otherwise",
				fix: "Send the JSON body with Content-Type: application/json (curl: -H 'content-type: application/json').",
			}
		}
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// encoding reports whether the body is gzip; identity and none mean plain.
func encoding(h http.Header) (gz bool, br *badRequest) {
	n := 0
	for _, v := range h.Values("Content-Encoding") {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			switch {
			case tok == "" || strings.EqualFold(tok, "identity") || strings.EqualFold(tok, "none"):
			case strings.EqualFold(tok, "gzip") || strings.EqualFold(tok, "x-gzip"):
				gz = true
				n++
			default:
				n += 2
			}
		}
	}
	if n > 1 {
		return false, &badRequest{
			status: http.StatusBadRequest, slug: apierror.SlugUnsupportedEnc, code: apierror.CodeBadRequest,
			reason: ReasonUnsupportedEnc, message: "the proxy can read request bodies sent plain or with Content-Encoding gzip only",
			fix: "Send the body uncompressed or gzip-compressed (once).",
		}
	}
	return gz, nil
}

// readAll reads r into a buffer that grows with the bytes received, never
// with the bytes announced: the first holds hint+1 bytes (hint is the
// Content-Length, -1 when unknown; +1 so that a body of exactly hint bytes
// sees EOF without growing) but at most firstBodyBuffer, and each growth at
// most doubles it, up to max+1 bytes, the most a capped reader yields (the
// caller refuses more than max). Every buffer is reserved from hold before it
// is allocated: errBodyBudget, with what was read so far, when it cannot be.
func readAll(r io.Reader, hint, max int64, hold bodyHold) ([]byte, error) {
	limit := max + 1
	size := int64(512)
	if hint >= 0 {
		size = hint + 1
	}
	size = min(size, firstBodyBuffer, limit)
	if !hold.grow(size) {
		return nil, errBodyBudget
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			n := int64(len(buf))
			if n >= limit {
				return buf, nil // over the cap: the caller refuses it
			}
			next := min(2*n, limit)
			if hint >= n {
				next = min(next, hint+1) // the rest announced, once bytes are coming
			}
			if !hold.grow(next - n) {
				return buf, errBodyBudget
			}
			grown := make([]byte, n, next)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// optInHeader reports the X-Composio-Allow-Multiple header: present at all,
// and set to true.
func optInHeader(h http.Header) (present, on bool) {
	vs := h.Values(apierror.HeaderAllowMultiple)
	for _, v := range vs {
		if strings.EqualFold(strings.TrimSpace(v), "true") {
			on = true
		}
	}
	return len(vs) > 0, on
}

// stripQuery removes every allow_multiple parameter from a raw query, every
// other byte as sent; on is true when one of them is "true".
func stripQuery(raw string) (out string, present, on bool) {
	if !strings.Contains(raw, flagMember) && strings.IndexByte(raw, '%') < 0 {
		return raw, false, false // fast path: the name cannot be there, even encoded
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	for _, part := range parts {
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if k != flagMember {
			kept = append(kept, part)
			continue
		}
		present = true
		if dv, err := url.QueryUnescape(v); err == nil && strings.EqualFold(dv, "true") {
			on = true
		}
	}
	if !present {
		return raw, false, false
	}
	return strings.Join(kept, "&"), true, on
}

// asSent restores a body the guard read, unchanged, for a shadow-mode forward.
func asSent(r *http.Request, body captured) *http.Request {
	if !body.read {
		return r
	}
	out := r.WithContext(r.Context())
	if body.tail != nil {
		out.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body.raw), body.tail))
		out.GetBody = nil
		return out
	}
	out.Header = r.Header.Clone()
	setBody(out, body.raw)
	return out
}

// setBody installs b as the request body, with a matching length.
func setBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	r.Trailer = nil // sent with a fixed length: no trailer (a second credential, say) follows
	if n := strconv.Itoa(len(b)); r.Header.Get("Content-Length") != n {
		r.Header.Set("Content-Length", n)
	}
	if len(b) == 0 {
		r.Body, r.GetBody = http.NoBody, nil
	}
}
