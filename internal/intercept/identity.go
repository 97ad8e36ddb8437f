package intercept

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/composio-guard/composio-guard/internal/apierror"
)

// Credential headers, canonical. Composio takes exactly one scheme a request:
// a project key (x-api-key), a user key with its org and project selectors
// (x-user-api-key, x-org-id, x-project-id), or an org key (x-org-api-key,
// which may name a project the same way).
const (
	hdrAPIKey     = "X-Api-Key"
	hdrUserAPIKey = "X-User-Api-Key"
	hdrOrgAPIKey  = "X-Org-Api-Key"
	hdrOrgID      = "X-Org-Id"
	hdrProjectID  = "X-Project-Id"
)

var credentialHeaders = [...]string{hdrAPIKey, hdrUserAPIKey, hdrOrgAPIKey, hdrOrgID, hdrProjectID}

// Headers that carry who the caller is besides the credential headers. The
// lookup carries them exactly as the forward does, so that Composio can never
// see one caller in the check and another in the create.
var identityHeaders = [...]string{"Authorization", "Cookie"}

// identity is who a guarded request acts as, derived once from the headers
// the forward really carries (after hop-by-hop removal). Every later step
// reads it: the lease owner, the breaker tenant, the lookup's headers.
type identity struct {
	// owner is a digest of the scheme's credential: a replay goes only to the
	// credential that made the link, and a breaker only trips for it. It holds
	// no secret; selectors the scheme ignores do not change it.
	owner string
	// lookup is the header set of the lookup: the credential and identity
	// headers exactly as forwarded, values shared (nothing changes them).
	lookup http.Header
}

// forwardHeader applies what the forward will do to the caller's headers
// before anything reads them: headers named in Connection are removed (as
// httputil.ReverseProxy removes them), and credential headers with an empty
// value are dropped. The caller's map is cloned only when something changes
// (changed is then true).
func forwardHeader(h http.Header) (_ http.Header, changed bool) {
	_, conn := h["Connection"]
	empty := false
	for _, name := range credentialHeaders {
		for _, v := range h[name] {
			if v == "" {
				empty = true
			}
		}
	}
	if !conn && !empty {
		return h, false
	}
	out := h.Clone()
	for _, v := range out["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out.Del(f)
			}
		}
	}
	for _, name := range credentialHeaders {
		vs := out[name]
		if len(vs) == 0 {
			continue
		}
		kept := make([]string, 0, len(vs))
		for _, v := range vs {
			if v != "" {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(out, name)
		} else {
			out[name] = kept
		}
	}
	return out, true
}

// deriveIdentity reads the identity of h, which must already be the header
// set the forward carries (see forwardHeader). It refuses a credential header
// sent twice, a credential header spelled in a way Composio's server could
// also read as one (x_api_key), and two credential schemes at once: each
// would let one caller be checked as one identity and act as another.
func deriveIdentity(h http.Header, requestID string) (identity, *badRequest) {
	for name := range h {
		if len(name) < 8 || len(name) > 14 || (name[0] != 'x' && name[0] != 'X') {
			continue // every credential name is 8 to 14 bytes and starts with x
		}
		if canon, ok := credentialSpelling(name); ok && canon != name {
			return identity{}, badCredential(ReasonCredentialSpelling,
				"the header %q is a credential header spelled another way; send it as %s", name, strings.ToLower(canon))
		}
	}
	for _, name := range credentialHeaders {
		if len(h[name]) > 1 {
			return identity{}, badCredential(ReasonCredentialTwice, "the header %s is sent more than once", strings.ToLower(name))
		}
	}
	key, org, project := first(h, hdrAPIKey), first(h, hdrOrgID), first(h, hdrProjectID)
	user, orgKey := first(h, hdrUserAPIKey), first(h, hdrOrgAPIKey)
	schemes := 0
	for _, v := range [...]string{key, user, orgKey} {
		if v != "" {
			schemes++
		}
	}
	if schemes > 1 {
		return identity{}, badCredential(ReasonCredentialSchemes,
			"the request carries more than one credential (x-api-key, x-user-api-key, x-org-api-key); Composio takes exactly one")
	}
	// The digest is built on the stack: it runs on every guarded request.
	var stack [512]byte
	b := stack[:0]
	switch {
	case key != "":
		// A project key names its project: selectors beside it do not
		// change who acts (they are still forwarded and looked up as sent).
		b = append(append(b, "api\x00"...), key...)
	case user != "":
		b = append(append(append(append(append(append(b, "user\x00"...), user...), 0), org...), 0), project...)
	case orgKey != "":
		b = append(append(append(append(append(append(b, "org\x00"...), orgKey...), 0), org...), 0), project...)
	default:
		b = append(append(append(append(b, "none\x00"...), org...), 0), project...)
	}
	d := sha256.Sum256(b)
	var hx [24]byte
	hex.Encode(hx[:], d[:12])
	id := identity{owner: string(hx[:]), lookup: make(http.Header, 6)}
	for _, name := range credentialHeaders {
		if vs := h[name]; len(vs) > 0 {
			id.lookup[name] = vs
		}
	}
	for _, name := range identityHeaders {
		if vs := h[name]; len(vs) > 0 {
			id.lookup[name] = vs
		}
	}
	if vs := h[apierror.HeaderRequestID]; len(vs) == 1 && vs[0] == requestID {
		id.lookup[apierror.HeaderRequestID] = vs // as RequestID set it
	} else if requestID != "" {
		id.lookup.Set(apierror.HeaderRequestID, requestID)
	}
	return id, nil
}

// first is the first value of a canonical header name, "" when absent.
func first(h http.Header, name string) string {
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// credentialSpelling maps a header name that a server could read as a
// credential header (any case, '_' for '-') to its canonical name.
func credentialSpelling(name string) (string, bool) {
	var buf [14]byte
	n := copy(buf[:], name)
	for i := range n {
		switch c := buf[i]; {
		case c == '_':
			buf[i] = '-'
		case 'a' <= c && c <= 'z':
			buf[i] = c - ('a' - 'A')
		}
	}
	up := string(buf[:n])
	for _, canon := range credentialHeaders {
		if strings.EqualFold(up, canon) {
			return canon, true
		}
	}
	return "", false
}

func badCredential(reason, format string, args ...any) *badRequest {
	br := bad(reason, format, args...)
	br.fix = "Send exactly one credential: x-api-key, or x-user-api-key with x-org-id / x-project-id, or x-org-api-key, each once and spelled as Composio documents it."
	return br
}
