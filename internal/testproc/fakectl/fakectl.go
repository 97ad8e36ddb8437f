// Package fakectl is the one client of the fake Composio's control API
// (/_fake/..., see internal/composiotest): seed and complete accounts, read
// the request log and the sessions, set and clear faults, reset. Every call
// returns its error; testproc.Fake wraps the calls for tests, failing the
// test instead. It does not import testing: the soak driver, a plain
// program, uses it too.
package fakectl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// Client talks to one fake's control API.
type Client struct {
	// URL is the fake's base URL (http://host:port). Through a proxy in
	// front of the fake works too: the proxy passes /_fake/ through.
	URL  string
	HTTP *http.Client
}

// New returns a client of the fake at baseURL with its own HTTP client.
func New(baseURL string) *Client {
	return &Client{URL: baseURL, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Do sends one control request: in, when set, as the JSON body; out, when
// set, gets the JSON answer. An answer of 300 or more is an error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("fake control %s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return fmt.Errorf("fake control %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("fake control %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("fake control %s %s: read: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		return fmt.Errorf("fake control %s %s: %d %s", method, path, res.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("fake control %s %s: decode: %w: %s", method, path, err, b)
		}
	}
	return nil
}

func (c *Client) do(method, path string, in, out any) error {
	return c.Do(context.Background(), method, path, in, out)
}

// AddAccount seeds an account (ACTIVE unless a.Status says otherwise) and
// returns it as stored.
func (c *Client) AddAccount(a composiotest.Account) (composiotest.Account, error) {
	var out composiotest.Account
	err := c.do(http.MethodPost, "/_fake/accounts", a, &out)
	return out, err
}

// Seed adds many accounts at once (see composiotest.Seed) and returns how
// many were added.
func (c *Client) Seed(s composiotest.Seed) (int, error) {
	var out struct {
		Added int `json:"added"`
	}
	err := c.do(http.MethodPost, "/_fake/accounts/bulk", s, &out)
	return out.Added, err
}

// SetStatus sets an account's status (the user "finishes OAuth" with ACTIVE).
func (c *Client) SetStatus(id, status string) (composiotest.Account, error) {
	var out composiotest.Account
	err := c.do(http.MethodPost, "/_fake/accounts/"+url.PathEscape(id)+"/status", map[string]string{"status": status}, &out)
	return out, err
}

// Accounts returns the accounts of one project (a credential), oldest
// first; credential "" returns every account.
func (c *Client) Accounts(credential string) ([]composiotest.Account, error) {
	var out []composiotest.Account
	path := "/_fake/accounts"
	if credential != "" {
		path += "?credential=" + url.QueryEscape(credential)
	}
	err := c.do(http.MethodGet, path, nil, &out)
	return out, err
}

// Requests returns the request log, oldest first, only those of method and
// fake route when they are set (e.g. http.MethodPost, composiotest.RouteLink).
func (c *Client) Requests(method, route string) ([]composiotest.Request, error) {
	q := url.Values{}
	if method != "" {
		q.Set("method", method)
	}
	if route != "" {
		q.Set("route", route)
	}
	path := "/_fake/requests"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []composiotest.Request
	err := c.do(http.MethodGet, path, nil, &out)
	return out, err
}

// Sessions returns the Tool Router sessions, oldest first.
func (c *Client) Sessions() ([]composiotest.Session, error) {
	var out []composiotest.Session
	err := c.do(http.MethodGet, "/_fake/sessions", nil, &out)
	return out, err
}

// AddSession seeds a Tool Router session (a fixed id when seed.ID is set)
// and returns it as stored.
func (c *Client) AddSession(seed composiotest.SessionSeed) (composiotest.Session, error) {
	var out composiotest.Session
	err := c.do(http.MethodPost, "/_fake/sessions", seed, &out)
	return out, err
}

// SetFault makes the fake misbehave on route (a composiotest.Route*, or "any").
func (c *Client) SetFault(route string, f composiotest.Fault) error {
	return c.do(http.MethodPut, "/_fake/faults/"+url.PathEscape(route), f, nil)
}

// ClearFaults clears the faults of every route.
func (c *Client) ClearFaults() error {
	return c.do(http.MethodDelete, "/_fake/faults", nil, nil)
}

// Reset makes the fake forget everything: accounts, sessions, the request
// log, faults.
func (c *Client) Reset() error {
	return c.do(http.MethodPost, "/_fake/reset", nil, nil)
}
