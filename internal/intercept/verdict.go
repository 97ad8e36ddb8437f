package intercept

import (
	"time"

	"net/http"
	"strconv"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/reqscope"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// policy turns one request into a verdict. It reads the request (its body
// through the shared body tools) and may ask Composio, but it never writes
// to the client: Guard.respond does, from the verdict.
type policy interface {
	evaluate(c *call) verdict
}

// verdict is what a policy decided about one request: a small value that
// Guard.respond turns into the answer, applying the mode and the failure
// mode in one place. Its answers are held by value: a verdict is made on
// every guarded request and should cost no allocation of its own.
type verdict struct {
	decision string // a Decision* constant
	reason   string // a Reason* constant
	err      error  // why a check could not run, for the log line

	// failed: the check could not run; GUARD_FAILURE_MODE decides between
	// forwarding and the 503 (decision is set by respond).
	failed bool

	// What enforce mode answers instead of forwarding, when one is set: a
	// refusal from the catalogue, a pending link's first answer, or the
	// lookup's refusal handed back as Composio sent it.
	refusal   answer
	replay    lock.Lease
	replaying bool
	passBack  *upstream.StatusError

	// fwd builds the request to forward (nil: as received, its body
	// restored); act replaces it when enforcing: the policy's own edit (a
	// default tier inserted).
	fwd forwarder
	act *http.Request

	// follow, when set, sees the forwarded answer (status and, unless
	// statusOnly, its first bytes) once it is sent or was cut, and hold
	// ends what the verdict keeps (a lock, a deadline) once the request is
	// answered.
	follow     follower
	statusOnly bool
	hold       holder

	// size is the sandbox tier label of composio_guard_sandbox_requests_total,
	// "" on routes other than the session routes.
	size string
}

// forwarder builds the request a verdict forwards, only when one is.
type forwarder interface{ forwardRequest() *http.Request }

// follower sees a forwarded answer.
type follower interface {
	afterForward(cw *captureWriter, aborted bool)
}

// holder is what a verdict keeps until the request is answered.
type holder interface{ release() }

// refused is a verdict that answers with a; decision and reason name why.
func refused(decision, reason string, a answer) verdict {
	return verdict{decision: decision, reason: reason, refusal: a}
}

// failedCheck is a verdict of a check that could not run.
func failedCheck(reason string, err error, fwd forwarder) verdict {
	return verdict{reason: reason, err: err, failed: true, fwd: fwd}
}

// invalid is the verdict on input the guard refuses (or, for a client that
// left, does not answer). A forward (shadow mode) sends the body as received.
func invalid(br *badRequest) verdict {
	if br.status == statusClientGone {
		return verdict{decision: DecisionClientGone, reason: br.reason}
	}
	return verdict{decision: DecisionInvalidRequest, reason: br.reason, refusal: br.answer()}
}

// writeReply writes enforce mode's own answer of v; false when v has none.
func writeReply(w http.ResponseWriter, v *verdict, requestID string) bool {
	switch {
	case v.refusal.err.Status != 0:
		v.refusal.write(w, requestID)
	case v.replaying:
		writeReplay(w, v.replay, requestID)
	case v.passBack != nil:
		writePassBack(w, v.passBack, requestID)
	default:
		return false
	}
	return true
}

// writePassBack hands a refused lookup's answer back as the upstream sent it.
func writePassBack(w http.ResponseWriter, se *upstream.StatusError, requestID string) {
	h := w.Header()
	for k, vs := range se.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Content-Encoding", "Trailer", "Upgrade":
			continue
		}
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	h.Set("Content-Length", strconv.Itoa(len(se.Body)))
	if requestID != "" {
		h.Set(apierror.HeaderRequestID, requestID)
	}
	w.WriteHeader(se.StatusCode)
	_, _ = w.Write(se.Body)
}

// writeReplay sends a pending link's first answer again.
func writeReplay(w http.ResponseWriter, l lock.Lease, requestID string) {
	h := w.Header()
	if l.ContentType != "" {
		h.Set("Content-Type", l.ContentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(l.Body)))
	h.Set(apierror.HeaderGuard, "replayed")
	h.Set(apierror.HeaderRequestID, requestID)
	w.WriteHeader(l.Status)
	_, _ = w.Write(l.Body)
}

// disguisedPolicy refuses a request that could reach a guarded route at a
// server reading its method otherwise than the guard does (a lowercase
// method, a method-override header).
type disguisedPolicy struct{}

func (disguisedPolicy) evaluate(c *call) verdict {
	br := bad(ReasonDisguised, "the request names its method as %q (or overrides it with a header) on a route that creates connected accounts or sessions", c.r.Method)
	br.fix = "Send the method in upper case (POST, PATCH) and no X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override header."
	br.close = true
	return invalid(br)
}

// call is one guarded request on its way through the guard: what the
// policies read and what respond needs to answer or forward.
type call struct {
	w      http.ResponseWriter
	r      *http.Request // as received; policies rebuild only what they forward
	sc     *reqscope.Scope
	route  string
	prefix string
	body   captured // what the body tools read (asSent forwards it unchanged)
	lookup time.Duration

	// The duplicate guard's own state of the request, kept here so that a
	// guarded request costs one allocation for both.
	link linkCall
}
