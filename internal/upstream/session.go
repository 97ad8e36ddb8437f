package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Session is what the guard reads of a Tool Router session: whose accounts
// its links create, on which auth configs, and how many per toolkit.
type Session struct {
	UserID string
	// AuthConfigs maps a toolkit slug (lower case) to the auth config the
	// session pins for it; a toolkit without one uses Composio's default.
	AuthConfigs map[string]string
	// PinUnsure holds the toolkits (lower case) whose pin cannot be read
	// for sure: the session names the toolkit other than in lower case, or
	// under two spellings. How Composio matches such a key is unknown, so
	// the guard trusts no pin for them.
	PinUnsure map[string]bool
	// MultiAccount is multi_account.enable (absent: false); MaxAccounts is
	// multi_account.max_accounts_per_toolkit (5 when enabled and unset).
	MultiAccount bool
	MaxAccounts  int
}

// DefaultMaxAccountsPerToolkit is Composio's default cap of a session with
// multi-account on.
const DefaultMaxAccountsPerToolkit = 5

// MaxSessionAnswerBytes caps the session answer read.
const MaxSessionAnswerBytes = 1 << 20

// maxCachedSessions bounds the session cache (GUARD_SESSION_CACHE_TTL > 0).
const maxCachedSessions = 10_000

// ErrBadSession is a session answer that is not the expected JSON.
var ErrBadSession = errors.New("upstream: session answer is not the expected JSON")

// SessionClient reads Tool Router sessions with the caller's credential,
// afresh on every call unless a cache time is given. Safe for concurrent use.
type SessionClient struct {
	base    *url.URL
	rt      http.RoundTripper
	ttl     time.Duration
	timeout time.Duration
	ua      []string
	now     func() time.Time

	mu    sync.Mutex
	cache map[string]cachedSession // by session id
}

type cachedSession struct {
	tenant  string // the credential digest it was read with: another one reads again
	s       Session
	expires time.Time
}

// NewSessionClient builds the session reader. rt is the transport (already
// instrumented, or not); ttl is how long a session read is reused (0: not
// at all, every call reads it), timeout 0 means DefaultLookupTimeout.
func NewSessionClient(base *url.URL, rt http.RoundTripper, ttl, timeout time.Duration, userAgent string) *SessionClient {
	c := &SessionClient{
		base: &url.URL{Scheme: base.Scheme, Host: base.Host, Path: strings.TrimRight(base.Path, "/")},
		rt:   rt, ttl: ttl, timeout: orDur(timeout, 5*time.Second),
		ua: []string{DefaultUserAgent}, now: time.Now, cache: make(map[string]cachedSession),
	}
	if userAgent != "" {
		c.ua = []string{userAgent}
	}
	return c
}

// Session returns the session id as the tenant's credential (hdr) reads it
// on prefix, from the cache while it is fresh (with a cache time). A *StatusError (401, 403,
// 404, 429) is Composio's refusal to hand back; any other error means the
// session could not be read.
func (c *SessionClient) Session(ctx context.Context, prefix, id, tenant string, hdr http.Header) (Session, error) {
	if c.ttl <= 0 {
		return c.fetch(ctx, prefix, id, hdr)
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.cache[id]
	c.mu.Unlock()
	if ok && e.tenant == tenant && now.Before(e.expires) {
		return e.s, nil
	}
	s, err := c.fetch(ctx, prefix, id, hdr)
	if err != nil {
		return Session{}, err
	}
	c.mu.Lock()
	if len(c.cache) >= maxCachedSessions {
		c.evictLocked(now)
	}
	c.cache[id] = cachedSession{tenant: tenant, s: s, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return s, nil
}

// Invalidate forgets the session id: a PATCH of it through the proxy may
// have changed what its links create.
func (c *SessionClient) Invalidate(id string) {
	c.mu.Lock()
	delete(c.cache, id)
	c.mu.Unlock()
}

// evictLocked makes room: the expired entries go, and when none has, one
// entry (the map's first): the cache is a saving, never a source of truth.
func (c *SessionClient) evictLocked(now time.Time) {
	n := 0
	for id, e := range c.cache {
		if !now.Before(e.expires) {
			delete(c.cache, id)
			n++
		}
		if n >= 64 { // bounded work under the lock
			return
		}
	}
	if n == 0 {
		for id := range c.cache {
			delete(c.cache, id)
			return
		}
	}
}

func (c *SessionClient) fetch(ctx context.Context, prefix, id string, hdr http.Header) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.base
	u.Path += prefix + "/tool_router/session/" + id
	u.RawPath = c.base.Path + prefix + "/tool_router/session/" + url.PathEscape(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Session{}, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	h := make(http.Header, len(hdr)+2)
	for k, v := range hdr {
		h[k] = v
	}
	h["Accept"] = acceptJSON
	h["User-Agent"] = c.ua
	req.Header = h
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return Session{}, withCtx(ctx, err)
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound || code == http.StatusTooManyRequests:
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxStatusErrorBody))
		if err != nil {
			return Session{}, fmt.Errorf("reading the %d answer: %w", code, withCtx(ctx, err))
		}
		return Session{}, &StatusError{StatusCode: code, Header: resp.Header.Clone(), Body: body}
	case code < 200 || code > 299:
		return Session{}, fmt.Errorf("%w: session %d", ErrUnexpectedStatus, code)
	}
	var raw struct {
		Config *struct {
			UserID       string            `json:"user_id"`
			AuthConfigs  map[string]string `json:"auth_configs"`
			MultiAccount *struct {
				Enable *bool `json:"enable"`
				Max    *int  `json:"max_accounts_per_toolkit"`
			} `json:"multi_account"`
		} `json:"config"`
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxSessionAnswerBytes+1))
	if err != nil {
		return Session{}, withCtx(ctx, err)
	}
	if len(b) > MaxSessionAnswerBytes || json.Unmarshal(b, &raw) != nil || raw.Config == nil {
		return Session{}, ErrBadSession
	}
	s := Session{UserID: raw.Config.UserID, AuthConfigs: make(map[string]string, len(raw.Config.AuthConfigs))}
	for k, v := range raw.Config.AuthConfigs {
		f := strings.ToLower(k)
		if _, twice := s.AuthConfigs[f]; twice || f != k {
			if s.PinUnsure == nil {
				s.PinUnsure = make(map[string]bool, 1)
			}
			s.PinUnsure[f] = true
		}
		s.AuthConfigs[f] = v
	}
	if ma := raw.Config.MultiAccount; ma != nil && ma.Enable != nil && *ma.Enable {
		s.MultiAccount, s.MaxAccounts = true, DefaultMaxAccountsPerToolkit
		if ma.Max != nil && *ma.Max > 0 {
			s.MaxAccounts = *ma.Max
		}
	}
	return s, nil
}
