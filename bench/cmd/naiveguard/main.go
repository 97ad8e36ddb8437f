// Command naiveguard is the load benchmark's floor for a guarded link: the
// duplicate check written the obvious way, with nothing else. For
// POST …/connected_accounts/link it reads the whole body, decodes it with
// encoding/json, makes one list call to the upstream
// (GET <prefix>/connected_accounts?auth_config_ids=…&user_ids=…&statuses=ACTIVE,INITIATED,
// with the caller's x-api-key), and answers 409 when an item is ACTIVE or
// forwards the link with httputil.ReverseProxy otherwise. Everything else is
// forwarded. No lock, no lease, no metrics, no logs; a failed check is a 502.
// composio-guard's guarded links are measured as ratios against it.
//
// It prints {"msg":"listening","addr":"127.0.0.1:PORT"} on stdout and exits 0
// on SIGTERM or SIGINT.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/composio-guard/composio-guard/bench/internal/serve"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback)")
	upstream := flag.String("upstream", "", "upstream base URL, e.g. http://127.0.0.1:9000")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *addr, *upstream); err != nil {
		fmt.Fprintln(os.Stderr, "naiveguard:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, upstream string) error {
	g, err := newGuard(upstream)
	if err != nil {
		return err
	}
	return serve.Run(ctx, addr, g)
}

type guard struct {
	target *url.URL
	client *http.Client
	rp     *httputil.ReverseProxy
}

func newGuard(upstream string) (*guard, error) {
	target, err := url.Parse(upstream)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("-upstream %q is not an absolute URL", upstream)
	}
	// The bare proxy's transport, shared by the list call and the forward.
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	return &guard{
		target: target,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		rp: &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			Transport: tr,
			ErrorLog:  log.New(io.Discard, "", 0),
		},
	}, nil
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/connected_accounts/link") {
		g.link(w, r)
		return
	}
	g.rp.ServeHTTP(w, r)
}

type linkRequest struct {
	AuthConfigID string `json:"auth_config_id"`
	UserID       string `json:"user_id"`
}

type listAnswer struct {
	Items []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"items"`
}

func (g *guard) link(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	var req linkRequest
	if err := json.Unmarshal(body, &req); err != nil || req.AuthConfigID == "" || req.UserID == "" {
		fail(w, http.StatusBadRequest, "auth_config_id and user_id are required")
		return
	}

	u := *g.target
	u.Path = strings.TrimSuffix(r.URL.Path, "/link") // <prefix>/connected_accounts
	u.RawQuery = url.Values{
		"auth_config_ids": {req.AuthConfigID},
		"user_ids":        {req.UserID},
		"statuses":        {"ACTIVE,INITIATED"},
	}.Encode()
	lr, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		fail(w, http.StatusBadGateway, err.Error())
		return
	}
	lr.Header.Set("x-api-key", r.Header.Get("x-api-key"))
	resp, err := g.client.Do(lr)
	if err != nil {
		fail(w, http.StatusBadGateway, "list: "+err.Error())
		return
	}
	var list listAnswer
	err = json.NewDecoder(resp.Body).Decode(&list)
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		fail(w, http.StatusBadGateway, "list: status "+strconv.Itoa(resp.StatusCode))
		return
	}
	for _, it := range list.Items {
		if it.Status == "ACTIVE" {
			fail(w, http.StatusConflict, "connected account "+it.ID+" already exists")
			return
		}
	}

	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	g.rp.ServeHTTP(w, r)
}

func fail(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "status": code}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
