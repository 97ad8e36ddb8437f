package intercept

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/composio-guard/composio-guard/internal/reqscope"
)

// canonicalPath is the path the matcher compares: percent-decoded once,
// "//", "/./" and "/../" resolved, no trailing slash. ok is false for a path
// that does not decode (net/http refuses those before we see them).
func canonicalPath(escaped string) (string, bool) {
	p := escaped
	if strings.IndexByte(p, '%') >= 0 {
		var err error
		if p, err = url.PathUnescape(p); err != nil {
			return "", false
		}
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	if strings.IndexByte(p, '\\') >= 0 {
		// Some servers read a backslash as a slash: match as they would.
		p = strings.ReplaceAll(p, "\\", "/")
	}
	if strings.IndexByte(p, ';') >= 0 {
		p = dropParams(p)
	}
	return path.Clean(p), true // Clean does not allocate for a path already clean
}

// dropParams removes ";params" from every segment ("/link;x=1" is "/link"):
// servers that read path parameters route such a path as the bare one, so
// the matcher must see it so too.
func dropParams(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); {
		if p[i] == ';' {
			for i < len(p) && p[i] != '/' {
				i++
			}
			continue
		}
		b.WriteByte(p[i])
		i++
	}
	return b.String()
}

// methodOverrides are headers some frameworks read as the request's real
// method: a GET carrying one may be a POST to the server behind.
var methodOverrides = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// disguised reports whether a request that does not classify as guarded
// could still reach a guarded route at a server that reads the method
// case-insensitively or from a method-override header. Such a request is
// refused, never forwarded unchecked.
func disguised(r *http.Request) bool {
	odd := r.Method != http.MethodPost && r.Method != http.MethodPatch &&
		(strings.EqualFold(r.Method, http.MethodPost) || strings.EqualFold(r.Method, http.MethodPatch))
	if !odd && !overridden(r) {
		return false
	}
	p := r.URL.EscapedPath()
	for _, m := range [...]string{http.MethodPost, http.MethodPatch} {
		if route, _ := Classify(m, p); route != reqscope.RoutePassthrough {
			return true
		}
	}
	return false
}

// Classify matches the canonical path: it returns a reqscope.Route* constant
// and the API prefix ("/api/v3", "/api/v3.1", "/api/v3.7"...), "" for
// pass-through. Matching ignores case, as a case-insensitive upstream router
// would, so no spelling slips past the guard.
func Classify(method, escapedPath string) (route, apiPrefix string) {
	if method != http.MethodPost && method != http.MethodPatch {
		return reqscope.RoutePassthrough, ""
	}
	p, ok := canonicalPath(escapedPath)
	if !ok {
		return reqscope.RoutePassthrough, ""
	}
	prefix, rest, ok := splitPrefix(p)
	if !ok {
		return reqscope.RoutePassthrough, ""
	}
	seg1, rest := cut(rest)
	seg2, rest := cut(rest)
	switch {
	case method == http.MethodPost && strings.EqualFold(seg1, "connected_accounts"):
		switch {
		case seg2 == "" && rest == "":
			return reqscope.RouteCreate, prefix
		case strings.EqualFold(seg2, "link") && rest == "":
			return reqscope.RouteLink, prefix
		}
	case strings.EqualFold(seg1, "tool_router") && (strings.EqualFold(seg2, "session") || strings.EqualFold(seg2, "sessions")):
		// The wire uses "session"; the changelog once wrote "sessions": label both.
		id, more := cut(rest)
		switch {
		case method == http.MethodPost && id == "":
			return reqscope.RouteSessionCreate, prefix
		case method == http.MethodPatch && id != "" && more == "":
			return reqscope.RouteSessionUpdate, prefix
		case method == http.MethodPost && id != "" && strings.EqualFold(more, "link"):
			return reqscope.RouteSessionLink, prefix
		}
	}
	return reqscope.RoutePassthrough, ""
}

// splitPrefix splits "/api/v3[.N]/rest" into the lower-case prefix and "rest".
func splitPrefix(p string) (prefix, rest string, ok bool) {
	const base = "/api/v3"
	if len(p) < len(base) || !strings.EqualFold(p[:len(base)], base) {
		return "", "", false
	}
	i := len(base)
	if i < len(p) && p[i] == '.' {
		j := i + 1
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		if j == i+1 {
			return "", "", false
		}
		i = j
	}
	if i == len(p) {
		return "", "", false // the bare prefix is no route of ours
	}
	if p[i] != '/' {
		return "", "", false
	}
	if i == len(base) {
		prefix = base
	} else {
		prefix = base + p[len(base):i]
	}
	return prefix, p[i+1:], true
}

// overridden reports a method-override header on a request: the server
// behind could read the request as another one than the guard did.
func overridden(r *http.Request) bool {
	for _, h := range methodOverrides {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

// cut returns the first segment of s and what follows its slash.
func cut(s string) (seg, rest string) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}
