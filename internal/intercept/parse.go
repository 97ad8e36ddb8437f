package intercept

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// Account types of experimental.account_type.
const (
	accountPrivate = "PRIVATE"
	accountShared  = "SHARED"
	defaultUser    = "default" // legacy create without connection.user_id
	flagMember     = "allow_multiple"
)

// guarded is what the guard reads from a guarded create's body.
type guarded struct {
	UserID       string
	AuthConfigID string // "" for a session link on Composio's default auth config
	Toolkit      string // a session link's toolkit, lower case
	AccountType  string // PRIVATE or SHARED

	// The top-level allow_multiple member, when present.
	flagFound bool
	flagOn    bool
	flag      member
}

// badRequest is an input the guard refuses (400 or 413) and never forwards.
type badRequest struct {
	status  int
	slug    string
	code    int
	reason  string
	message string
	fix     string
	close   bool // the body was not read to its end: close the connection after the answer

	retryAfter   int      // seconds, for a 503 worth retrying
	allowedSizes []string // a sandbox tier refusal lists the allowed tiers
}

// statusClientGone marks a badRequest that is not answered: the client left.
const statusClientGone = 499

func bad(reason, format string, args ...any) *badRequest {
	return &badRequest{
		status: http.StatusBadRequest, slug: apierror.SlugBadRequest, code: apierror.CodeBadRequest,
		reason: reason, message: fmt.Sprintf(format, args...),
		fix: "Send a JSON object with the members the Composio API documents for this route.",
	}
}

// field describes one member the guard reads from an object.
type field struct {
	name string
	path string // as named in error messages
}

var (
	linkFields        = []field{{"user_id", "user_id"}, {"auth_config_id", "auth_config_id"}, {"experimental", "experimental"}, {flagMember, flagMember}}
	createFields      = []field{{"auth_config", "auth_config"}, {"connection", "connection"}, {flagMember, flagMember}}
	expFields         = []field{{"account_type", "experimental.account_type"}}
	acFields          = []field{{"id", "auth_config.id"}}
	connFields        = []field{{"user_id", "connection.user_id"}}
	sessionLinkFields = []field{{"toolkit", "toolkit"}, {"experimental", "experimental"}, {flagMember, flagMember}}
)

// members finds the listed fields among the members of the object at
// b[start], refusing duplicates (after unescaping and case folding).
// found[i] is the member of fields[i]; seen[i] tells whether it was present.
func members(b []byte, start int, fields []field, found []member, seen []bool) *badRequest {
	it, ok := newObjIter(b, start)
	if !ok {
		return bad(ReasonNotObject, "the body must be a JSON object")
	}
	for {
		m, ok, err := it.next()
		if err != nil {
			return bad(ReasonNotJSON, "the body is not valid JSON")
		}
		if !ok {
			return nil
		}
		for i, f := range fields {
			exact, folded := keyIs(b, m, f.name)
			if !exact && !folded {
				continue
			}
			if seen[i] || folded {
				return bad(ReasonDuplicateMember, "the member %s appears more than once (names are compared after unescaping and ignoring case)", f.path)
			}
			seen[i], found[i] = true, m
			break
		}
	}
}

// parseBody reads the guarded members of a link or legacy-create body.
func parseBody(route string, b []byte) (guarded, *badRequest) {
	if !validJSON(b) {
		return guarded{}, bad(ReasonNotJSON, "the body is not valid JSON")
	}
	switch route {
	case reqscope.RouteCreate:
		return parseCreate(b)
	case reqscope.RouteSessionLink:
		return parseSessionLink(b)
	}
	return parseLink(b)
}

// parseSessionLink reads a Tool Router session link body: the toolkit (in
// lower case), the account type and the opt-in. The user and the auth
// config are the session's.
func parseSessionLink(b []byte) (g guarded, br *badRequest) {
	var found [3]member
	var seen [3]bool
	if br = members(b, 0, sessionLinkFields, found[:], seen[:]); br != nil {
		return g, br
	}
	tk, br := idMember(b, found[0], seen[0], sessionLinkFields[0].path)
	if br != nil {
		return g, br
	}
	g.Toolkit = strings.ToLower(tk)
	if g.Toolkit != tk {
		// Whether Composio folds a toolkit slug when it links and when it
		// lists is unknown: the guard's lookup and Composio's create could
		// name two toolkits, and nothing would stop a second account.
		return g, bad(ReasonBadMember, "toolkit must be the toolkit's slug in lower case (%q): the duplicate-connection check cannot tell which accounts another spelling links", g.Toolkit)
	}
	if g.AccountType, br = accountType(b, found[1], seen[1]); br != nil {
		return g, br
	}
	return g, flag(b, found[2], seen[2], &g)
}

// accountType reads experimental.account_type (PRIVATE when absent).
func accountType(b []byte, exp member, seen bool) (string, *badRequest) {
	if !seen {
		return accountPrivate, nil
	}
	switch v := exp.value(b); v[0] {
	case 'n': // null: no experimental options
		return accountPrivate, nil
	case '{':
		var ef [1]member
		var es [1]bool
		if br := members(b, exp.valStart, expFields, ef[:], es[:]); br != nil {
			return "", br
		}
		if es[0] && ef[0].value(b)[0] != 'n' {
			s, ok := decodeString(ef[0].value(b))
			if !ok || (s != accountPrivate && s != accountShared) {
				return "", bad(ReasonBadAccountType, "experimental.account_type must be %q or %q", accountPrivate, accountShared)
			}
			return s, nil
		}
		return accountPrivate, nil
	}
	return "", bad(ReasonBadMember, "experimental must be an object")
}

func parseLink(b []byte) (g guarded, br *badRequest) {
	var found [4]member
	var seen [4]bool
	if br = members(b, 0, linkFields, found[:], seen[:]); br != nil {
		return g, br
	}
	if g.UserID, br = idMember(b, found[0], seen[0], linkFields[0].path); br != nil {
		return g, br
	}
	if g.AuthConfigID, br = idMember(b, found[1], seen[1], linkFields[1].path); br != nil {
		return g, br
	}
	if g.AccountType, br = accountType(b, found[2], seen[2]); br != nil {
		return g, br
	}
	return g, flag(b, found[3], seen[3], &g)
}

func parseCreate(b []byte) (g guarded, br *badRequest) {
	var found [3]member
	var seen [3]bool
	if br = members(b, 0, createFields, found[:], seen[:]); br != nil {
		return g, br
	}
	if !seen[0] {
		return g, bad(ReasonMissingMember, "auth_config.id is required")
	}
	if found[0].value(b)[0] != '{' {
		return g, bad(ReasonBadMember, "auth_config must be an object")
	}
	var af [1]member
	var as [1]bool
	if br = members(b, found[0].valStart, acFields, af[:], as[:]); br != nil {
		return g, br
	}
	if g.AuthConfigID, br = idMember(b, af[0], as[0], acFields[0].path); br != nil {
		return g, br
	}
	g.UserID = defaultUser
	if seen[1] {
		switch found[1].value(b)[0] {
		case 'n':
		case '{':
			var cf [1]member
			var cs [1]bool
			if br = members(b, found[1].valStart, connFields, cf[:], cs[:]); br != nil {
				return g, br
			}
			if cs[0] && cf[0].value(b)[0] != 'n' {
				if g.UserID, br = idMember(b, cf[0], true, connFields[0].path); br != nil {
					return g, br
				}
			}
		default:
			return g, bad(ReasonBadMember, "connection must be an object")
		}
	}
	g.AccountType = accountPrivate
	return g, flag(b, found[2], seen[2], &g)
}

// MaxIDBytes bounds a user id or auth config id. Composio's own ids are a
// few dozen bytes; a longer one would make the lookup's URL one the upstream
// may refuse (414, 431), and the check must never depend on that.
const MaxIDBytes = 256

// hasControl reports a C0 or C1 control character or DEL in s (valid UTF-8).
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return true
		}
	}
	return false
}

// idMember checks one id: a non-empty string the list query can carry.
func idMember(b []byte, m member, seen bool, path string) (string, *badRequest) {
	if !seen {
		return "", bad(ReasonMissingMember, "%s is required", path)
	}
	s, ok := decodeString(m.value(b))
	if !ok || s == "" {
		return "", bad(ReasonBadMember, "%s must be a non-empty string", path)
	}
	if len(s) > MaxIDBytes {
		return "", bad(ReasonIDTooLong, "%s is longer than %d bytes", path, MaxIDBytes)
	}
	if !validText(s) {
		return "", bad(ReasonBadText, "%s must be valid UTF-8 text", path)
	}
	if hasControl(s) {
		return "", bad(ReasonControlInID, "%s must not contain control characters", path)
	}
	if strings.IndexByte(s, ',') >= 0 {
		return "", bad(ReasonCommaInID, "%s must not contain a comma: the duplicate check cannot query it", path)
	}
	return s, nil
}

func flag(b []byte, m member, seen bool, g *guarded) *badRequest {
	if !seen {
		return nil
	}
	switch string(m.value(b)) {
	case "true":
		g.flagOn = true
	case "false":
	default:
		return bad(ReasonBadAllowMultiple, "allow_multiple must be true or false")
	}
	g.flagFound, g.flag = true, m
	return nil
}

// stripFlag returns b without the allow_multiple member and one separating
// comma; every other byte stays as sent.
func stripFlag(b []byte, m member) []byte {
	from, to := m.keyStart, m.valEnd
	comma := -1
	switch {
	case m.nextComma >= 0:
		comma = m.nextComma
	case m.prevComma >= 0:
		comma = m.prevComma
	}
	n := len(b) - (to - from)
	if comma >= 0 {
		n--
	}
	out := make([]byte, 0, n)
	switch {
	case comma < 0:
		out = append(append(out, b[:from]...), b[to:]...)
	case comma < from:
		out = append(append(append(out, b[:comma]...), b[comma+1:from]...), b[to:]...)
	default:
		out = append(append(append(out, b[:from]...), b[to:comma]...), b[comma+1:]...)
	}
	return out
}

// createAnswer reads the new account's id from a create's answer: a link's
// connected_account_id (and its expires_at), a legacy create's id.
func createAnswer(route string, b []byte) (accountID string, expires time.Time) { // a session link's answer has no expires_at
	idMember := "connected_account_id"
	if route == reqscope.RouteCreate {
		idMember = "id"
	}
	if !validJSON(b) {
		return "", time.Time{}
	}
	it, ok := newObjIter(b, 0)
	if !ok {
		return "", time.Time{}
	}
	for {
		m, ok, err := it.next()
		if err != nil || !ok {
			return accountID, expires
		}
		if exact, _ := keyIs(b, m, idMember); exact {
			accountID, _ = decodeString(m.value(b))
		} else if exact, _ := keyIs(b, m, "expires_at"); exact {
			if s, ok := decodeString(m.value(b)); ok {
				if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
					expires = t
				}
			}
		}
	}
}
