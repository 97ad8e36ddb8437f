package intercept

import (
	"fmt"
	"net/http"

	"github.com/composio-guard/composio-guard/internal/apierror"
)

// The session policies beside the tier policy, on session create and PATCH
// (off by default):
//   - GUARD_SESSION_MULTI_ACCOUNT=deny refuses a session that turns
//     multi_account.enable on;
//   - GUARD_SESSION_MAX_ACCOUNTS_PER_TOOLKIT=N refuses one that asks for more
//     than N accounts per toolkit (enable true without a maximum asks for
//     Composio's default, 5);
//   - GUARD_SESSION_MANAGE_CONNECTIONS=disable refuses one that enables the
//     in-session connection tool (it starts links inside Composio, out of the
//     proxy's sight) and inserts "manage_connections":{"enable":false} on a
//     create that does not set it.
// Each refusal is a 403 in Composio's envelope (never 409: the 0.21.0 SDK
// reads a 409 on PATCH as a config conflict).

var (
	sessionPolicyFields = []field{{"multi_account", "multi_account"}, {"manage_connections", "manage_connections"}}
	multiAccountFields  = []field{{"enable", "multi_account.enable"}, {"max_accounts_per_toolkit", "multi_account.max_accounts_per_toolkit"}}
	manageFields        = []field{{"enable", "manage_connections.enable"}}
)

// sessionAsk is what the session policies read from a session body.
type sessionAsk struct {
	multiOn     bool // multi_account.enable is true
	maxAccounts int  // multi_account.max_accounts_per_toolkit; 0 when absent
	manageSet   bool // manage_connections.enable is set (true or false)
	manageOn    bool // manage_connections.enable is true
	manageThere bool // the body has a manage_connections member (even null)
}

// parseSessionPolicy reads multi_account and manage_connections; the body is
// valid JSON (the tier parser checked it).
func parseSessionPolicy(b []byte) (ask sessionAsk, br *badRequest) {
	var top [2]member
	var seen [2]bool
	if br = members(b, 0, sessionPolicyFields, top[:], seen[:]); br != nil {
		return ask, br
	}
	// Each is an object or null: another shape (true, "on", [..]) could
	// mean anything to Composio, and the policies could not read it.
	for i, name := range [...]string{"multi_account", "manage_connections"} {
		if !seen[i] {
			continue
		}
		if v := top[i].value(b); v[0] != '{' && string(v) != "null" {
			return ask, bad(ReasonBadMember, "%s must be an object (or null)", name)
		}
	}
	ask.manageThere = seen[1]
	if seen[0] && top[0].value(b)[0] == '{' {
		var f [2]member
		var s [2]bool
		if br = members(b, top[0].valStart, multiAccountFields, f[:], s[:]); br != nil {
			return ask, br
		}
		if s[0] {
			switch string(f[0].value(b)) {
			case "true":
				ask.multiOn = true
			case "false", "null":
			default:
				return ask, bad(ReasonBadMember, "multi_account.enable must be a boolean")
			}
		}
		if s[1] && f[1].value(b)[0] != 'n' {
			n, ok := smallInt(f[1].value(b))
			if !ok {
				return ask, bad(ReasonBadMember, "multi_account.max_accounts_per_toolkit must be a whole number")
			}
			ask.maxAccounts = n
		}
	}
	if seen[1] && top[1].value(b)[0] == '{' {
		var f [1]member
		var s [1]bool
		if br = members(b, top[1].valStart, manageFields, f[:], s[:]); br != nil {
			return ask, br
		}
		if s[0] {
			switch string(f[0].value(b)) {
			case "true":
				ask.manageSet, ask.manageOn = true, true
			case "false":
				ask.manageSet = true
			case "null":
			default:
				return ask, bad(ReasonBadMember, "manage_connections.enable must be a boolean")
			}
		}
	}
	return ask, nil
}

// smallInt reads a JSON number that is a whole number below a million.
func smallInt(v []byte) (int, bool) {
	n := 0
	for i, c := range v {
		if c < '0' || c > '9' || i > 6 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(v) > 0
}

// sessionRules are the session policies of the settings.
type sessionRules struct {
	denyMulti   bool
	maxAccounts int // 0: no cap
	noManage    bool
}

func newSessionRules(cfg Config) sessionRules {
	return sessionRules{denyMulti: cfg.SessionMultiAccount == SessionDeny, maxAccounts: cfg.SessionMaxAccountsPerToolkit,
		noManage: cfg.SessionManageConnections == SessionManageDisable}
}

// refusal is the reason and answer for a session the policies refuse, "" when
// they allow it.
func (r sessionRules) refusal(ask sessionAsk) (string, answer) {
	forbid := func(msg, fix string) answer {
		return answer{apierror.Error{Message: msg, Code: apierror.CodeSandbox, Slug: apierror.SlugSessionForbidden,
			Status: http.StatusForbidden, SuggestedFix: fix}, apierror.Options{NoRetry: true}}
	}
	asked := ask.maxAccounts
	if ask.multiOn && asked == 0 {
		asked = 5 // Composio's default when multi-account is on
	}
	switch {
	case r.denyMulti && ask.multiOn:
		return ReasonMultiAccountDenied, forbid("This proxy does not allow Tool Router sessions with multi_account.enable on.",
			"Leave multi_account out, or set multi_account.enable to false.")
	case r.maxAccounts > 0 && asked > r.maxAccounts:
		return ReasonMaxAccountsAboveCap, forbid(
			fmt.Sprintf("The session asks for %d accounts per toolkit; this proxy allows at most %d.", asked, r.maxAccounts),
			fmt.Sprintf("Set multi_account.max_accounts_per_toolkit to %d or less.", r.maxAccounts))
	case r.noManage && (ask.manageOn || ask.manageThere && !ask.manageSet):
		// On, or present without an explicit false (null, {}, enable null):
		// Composio's default would turn the tool on, and a member the proxy
		// added beside it would make the body ambiguous.
		return ReasonManageConnectionsOn, forbid("This proxy does not allow the in-session connection tool (manage_connections): it starts links the proxy cannot check.",
			"Set manage_connections.enable to false, or leave it out, and connect accounts through the proxy.")
	}
	return "", answer{}
}

// manageOff is what a create that leaves manage_connections out gets when
// the tool is disabled: inserted first in the body.
const manageOff = `"manage_connections":{"enable":false}`

// withManageOff returns b with manageOff inserted after its opening brace;
// every other byte stays as sent.
func withManageOff(b []byte) []byte {
	at := firstByte(b) + 1
	sep := ""
	if hasMembers(b, at-1) {
		sep = ","
	}
	out := make([]byte, 0, len(b)+len(manageOff)+1)
	out = append(out, b[:at]...)
	out = append(out, manageOff...)
	out = append(out, sep...)
	return append(out, b[at:]...)
}
