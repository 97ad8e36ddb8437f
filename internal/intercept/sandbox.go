package intercept

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// The sandbox policy polices workbench.sandbox_size on the Tool Router
// session routes (POST …/tool_router/session, PATCH …/tool_router/session/{id}):
// it refuses what is not a tier (400) and what the policy does not allow
// (403, never 409: the 0.21.0 SDK reads a 409 on PATCH as a config conflict),
// and fills in GUARD_SANDBOX_DEFAULT_SIZE on a create that names no tier
// while its workbench is enabled.
//
// "Enabled" follows the API: the workbench is on unless the body says
// workbench.enable false (the SDKs send enable true by default, and a create
// without a workbench member gets the server's default workbench, which is
// on). A create whose workbench is absent or null therefore gets the default
// too. A PATCH never gets a default: it changes only what it names.

var (
	sessionFields   = []field{{"workbench", "workbench"}}
	workbenchFields = []field{{"sandbox_size", "workbench.sandbox_size"}, {"enable", "workbench.enable"}}
)

const tierList = "standard, medium, large, xlarge"

// sandboxAsk is what the policy reads from a session body.
type sandboxAsk struct {
	size    string // the tier asked for; "" when none (absent or null)
	cleared bool   // workbench: null (on a PATCH: back to the server default)
	enable  []byte // raw workbench.enable, nil when absent
	// Where a default tier goes: b[at:at+cut] becomes pre + "tier" + post.
	at, cut   int
	pre, post string
}

// withDefault returns b with the tier inserted where ask says; every other
// byte stays as sent.
func (a sandboxAsk) withDefault(b []byte, tier string) []byte {
	out := make([]byte, 0, len(b)+len(a.pre)+len(tier)+2+len(a.post))
	out = append(out, b[:a.at]...)
	out = append(out, a.pre...)
	out = append(out, '"')
	out = append(out, tier...)
	out = append(out, '"')
	out = append(out, a.post...)
	return append(out, b[a.at+a.cut:]...)
}

// workbenchOn reports whether the workbench is enabled; br is set when
// workbench.enable is neither a boolean nor null (read only when it matters).
func (a sandboxAsk) workbenchOn() (on bool, br *badRequest) {
	switch string(a.enable) {
	case "", "true", "null":
		return true, nil
	case "false":
		return false, nil
	}
	return false, bad(ReasonBadEnable, "workbench.enable must be true or false")
}

func invalidSandbox(reason, format string, args ...any) *badRequest {
	return &badRequest{
		status: http.StatusBadRequest, slug: apierror.SlugInvalidSandbox, code: apierror.CodeSandbox,
		reason: reason, message: fmt.Sprintf(format, args...),
	}
}

// hasMembers reports whether the object at b[start] has at least one member.
func hasMembers(b []byte, start int) bool {
	it, ok := newObjIter(b, start)
	if !ok {
		return false
	}
	_, ok, err := it.next()
	return ok && err == nil
}

// parseSandbox reads workbench and workbench.sandbox_size from a session
// body. A *badRequest with slug SlugInvalidSandbox concerns the sandbox
// config itself; any other one, the body.
func parseSandbox(b []byte) (ask sandboxAsk, br *badRequest) {
	if !validJSON(b) {
		return ask, bad(ReasonNotJSON, "the body is not valid JSON")
	}
	var top [1]member
	var topSeen [1]bool
	if br = members(b, 0, sessionFields, top[:], topSeen[:]); br != nil {
		return ask, br
	}
	if !topSeen[0] {
		// No workbench: the server's default one (enabled). A default goes
		// first in the body.
		start := firstByte(b)
		ask.at, ask.pre, ask.post = start+1, `"workbench":{"sandbox_size":`, "}"
		if hasMembers(b, start) {
			ask.post += ","
		}
		return ask, nil
	}
	wb := top[0]
	switch wb.value(b)[0] {
	case 'n':
		ask.cleared = true
		ask.at, ask.cut, ask.pre, ask.post = wb.valStart, wb.valEnd-wb.valStart, `{"sandbox_size":`, "}"
		return ask, nil
	case '{':
	default:
		return ask, invalidSandbox(ReasonBadWorkbench, "workbench must be an object (or null to clear the override), with sandbox_size one of %s", tierList)
	}
	var found [2]member
	var seen [2]bool
	if br = members(b, wb.valStart, workbenchFields, found[:], seen[:]); br != nil {
		return ask, br
	}
	if seen[1] {
		ask.enable = found[1].value(b)
	}
	if !seen[0] {
		ask.at, ask.pre = wb.valStart+1, `"sandbox_size":`
		if hasMembers(b, wb.valStart) {
			ask.post = ","
		}
		return ask, nil
	}
	v := found[0].value(b)
	if v[0] == 'n' { // null: no tier, as if absent
		ask.at, ask.cut = found[0].valStart, found[0].valEnd-found[0].valStart
		return ask, nil
	}
	s, ok := decodeString(v)
	if !ok {
		return ask, invalidSandbox(ReasonBadSandboxSize, "workbench.sandbox_size must be a string, one of %s", tierList)
	}
	if !SandboxSize(s).Valid() {
		return ask, invalidSandbox(ReasonBadSandboxSize, "workbench.sandbox_size must be one of %s", tierList)
	}
	ask.size = s
	return ask, nil
}

// sandboxPolicy is the tier policy of NewGuard's Config.
type sandboxPolicy struct {
	tools   *bodyTools
	rules   SandboxRules
	allowed []string // tiers the policy allows, smallest first
	def     string   // GUARD_SANDBOX_DEFAULT_SIZE, "" for none
	mode    Mode     // for the "sandbox will be recreated" line
	session sessionRules
}

func newSandboxPolicy(cfg Config, tools *bodyTools) *sandboxPolicy {
	p := &sandboxPolicy{tools: tools, mode: cfg.Mode, rules: cfg.SandboxRules(), session: newSessionRules(cfg)}
	for _, s := range p.rules.AllowedSizes() {
		p.allowed = append(p.allowed, string(s))
	}
	// Config.Validate refuses a default the policy does not allow; should one
	// get here anyway, no default beats inserting a tier we then refuse.
	if p.rules.Allows(cfg.SandboxDefaultSize) {
		p.def = string(cfg.SandboxDefaultSize)
	}
	return p
}

// fix is the suggested_fix of a sandbox refusal.
func (p *sandboxPolicy) fix() string {
	s := "Ask for one of the allowed tiers (" + strings.Join(p.allowed, ", ") + "), or leave workbench.sandbox_size out"
	if p.def != "" {
		return s + " (new sessions then get " + p.def + ")."
	}
	return s + " (the server default is standard)."
}

// evaluate applies the sandbox policy to a session create or update.
func (p *sandboxPolicy) evaluate(c *call) verdict {
	route := c.route
	br := p.tools.read(c)
	var ask sandboxAsk
	if br == nil {
		ask, br = parseSandbox(c.body.plain)
	}
	if br == nil && ask.size == "" && route == reqscope.RouteSessionCreate && p.def != "" {
		if _, br = ask.workbenchOn(); br != nil {
			ask = sandboxAsk{}
		}
	}
	var sask sessionAsk
	if br == nil {
		sask, br = parseSessionPolicy(c.body.plain)
	}
	if br != nil {
		if br.slug == apierror.SlugInvalidSandbox {
			br.allowedSizes, br.fix = p.allowed, p.fix()
			v := invalid(br)
			v.decision, v.size = DecisionRejectedInvalid, sizeInvalid
			return v
		}
		v := invalid(br)
		if v.decision != DecisionClientGone {
			v.size = sizeInvalid
		}
		return v
	}

	v := verdict{decision: DecisionAllowed, size: sizeDefault}
	insertTier := false
	switch {
	case ask.size != "":
		tier := SandboxSize(ask.size)
		v.size = ask.size
		if p.rules.Allows(tier) {
			v.reason = ReasonSizeAllowed
			break
		}
		reason := ReasonSizeNotAllowed
		if ceiling := p.rules.Max; ceiling != "" && tier.Rank() > ceiling.Rank() {
			reason = ReasonSizeAboveMax
		}
		v.decision, v.reason = DecisionRejectedPolicy, reason
		v.refusal = answer{apierror.Error{
			Message: fmt.Sprintf("The sandbox tier %q is not allowed by this proxy's policy; allowed tiers: %s.", ask.size, strings.Join(p.allowed, ", ")),
			Code:    apierror.CodeSandbox, Slug: apierror.SlugSandboxForbidden, Status: http.StatusForbidden,
			SuggestedFix: p.fix(), RequestedSize: ask.size, AllowedSizes: p.allowed,
		}, apierror.Options{NoRetry: true}}
	case route == reqscope.RouteSessionUpdate && ask.cleared:
		v.reason = ReasonWorkbenchCleared
	case route == reqscope.RouteSessionCreate && p.def != "":
		if on, _ := ask.workbenchOn(); !on {
			v.reason = ReasonWorkbenchOff
			break
		}
		v.decision, v.reason, v.size = DecisionDefaulted, ReasonDefaultInserted, p.def
		insertTier = true
	default:
		v.reason = ReasonNoSize
	}
	if v.decision != DecisionRejectedPolicy {
		if reason, a := p.session.refusal(sask); reason != "" {
			v.decision, v.reason, v.refusal, insertTier = DecisionRejectedPolicy, reason, a, false
		}
	}
	insertManage := v.decision != DecisionRejectedPolicy && route == reqscope.RouteSessionCreate && p.session.noManage && !sask.manageThere
	if insertManage && !insertTier {
		v.decision, v.reason = DecisionDefaulted, ReasonManageOffInserted
	}
	if insertTier || insertManage {
		plain := c.body.plain
		if insertTier {
			plain = ask.withDefault(plain, p.def)
		}
		if insertManage {
			plain = withManageOff(plain)
		}
		edited, err := withBody(c.r, c.body, plain)
		if err != nil { // gzip into memory does not fail; never forward a half-made body
			v.err = err
			v.refusal = answer{apierror.Error{Message: "internal error", Code: apierror.CodeInternal, Slug: apierror.SlugInternal,
				Status: http.StatusInternalServerError}, apierror.Options{}}
		} else {
			v.act = edited // only when enforcing: shadow forwards the body as sent
		}
	}
	if route == reqscope.RouteSessionUpdate && (ask.size != "" || ask.cleared) {
		// A PATCH naming a tier (or clearing it) recreates the sandbox once
		// Composio accepts it (shadow mode forwards even a refused one): say
		// so, with the session id from the path.
		v.statusOnly = true
		v.follow = &recreated{sc: c.sc, route: route, path: c.r.URL.EscapedPath(), size: v.size, mode: string(p.mode)}
	}
	return v
}

// recreated logs that a PATCH naming a tier (or clearing it) recreates the
// sandbox, once Composio accepted it.
type recreated struct {
	sc                      *reqscope.Scope
	route, path, size, mode string
}

func (l *recreated) afterForward(cw *captureWriter, aborted bool) {
	if aborted || cw.status < 200 || cw.status > 299 {
		return
	}
	l.sc.Log().Info("sandbox will be recreated", zap.String("route", l.route), zap.String("session_id", sessionID(l.path)),
		zap.String("sandbox_size", l.size), zap.Int("status", cw.status), zap.String("mode", l.mode))
}

// withBody is r carrying plain as its body, gzip-compressed again when the
// client sent it so (Content-Encoding stays as sent).
func withBody(r *http.Request, body captured, plain []byte) (*http.Request, error) {
	b := plain
	if body.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(plain); err != nil {
			return nil, fmt.Errorf("gzip the edited body: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("gzip the edited body: %w", err)
		}
		b = buf.Bytes()
	}
	out := r.WithContext(r.Context())
	out.Header = r.Header.Clone()
	setBody(out, b)
	return out, nil
}

// maxLoggedID bounds a session id copied from the path into a log line.
const maxLoggedID = 128

// sessionID is the {id} of …/tool_router/session/{id}, decoded, "" when the
// path has none; cut to maxLoggedID for a log line.
func sessionID(escapedPath string) string {
	id := pathSessionID(escapedPath)
	if len(id) > maxLoggedID {
		id = id[:maxLoggedID]
	}
	return id
}

// pathSessionID is the whole {id} of …/tool_router/session/{id}[/…].
func pathSessionID(escapedPath string) string {
	p, ok := canonicalPath(escapedPath)
	if !ok {
		return ""
	}
	_, rest, ok := splitPrefix(p)
	if !ok {
		return ""
	}
	_, rest = cut(rest) // tool_router
	_, rest = cut(rest) // session
	id, _ := cut(rest)
	return id
}
