// Command upstream is the load benchmark's tiny Composio: fixed JSON answers,
// as cheap as it can be, so the benchmark measures the proxies in front of it.
//
//   - GET …/connected_accounts (the guard's lookup): an empty page, or one
//     ACTIVE account for the queried user when the auth config id starts with
//     "ac_active" (so the guard answers 409);
//   - POST …/connected_accounts/link: 201 with a link answer;
//   - GET /download?bytes=N: N bytes, streamed with a Content-Length;
//   - POST /upload: reads the body, answers its length;
//   - anything else: the body is drained, 200 with a small JSON page.
//
// It prints {"msg":"listening","addr":"127.0.0.1:PORT"} on stdout and exits 0
// on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/composio-guard/composio-guard/bench/internal/serve"
)

var (
	okBody = []byte(`{"items":[{"slug":"github","name":"GitHub","meta":{"tools_count":42,"triggers_count":3}},` +
		`{"slug":"gmail","name":"Gmail","meta":{"tools_count":23,"triggers_count":2}}],` +
		`"next_cursor":null,"total_pages":1,"current_page":1,"total_items":2}`)
	emptyList = []byte(`{"items":[],"next_cursor":null,"total_pages":1,"current_page":1,"total_items":0}`)
	linkBody  = []byte(`{"link_token":"lt_bench","redirect_url":"https://connect.example/link/lt_bench",` +
		`"expires_at":"2099-01-01T00:00:00Z","connected_account_id":"ca_bench"}`)
	chunk = make([]byte, 32<<10)
)

// maxDownload bounds /download so a typo cannot stream forever.
const maxDownload = 1 << 30

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string) error {
	return serve.Run(ctx, addr, http.HandlerFunc(handle))
}

func handle(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/connected_accounts"):
		list(w, r)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/connected_accounts/link"):
		_, _ = io.Copy(io.Discard, r.Body)
		send(w, http.StatusCreated, linkBody)
	case p == "/download":
		download(w, r)
	case p == "/upload":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "upload cut", http.StatusBadRequest)
			return
		}
		send(w, http.StatusOK, []byte(`{"bytes":`+strconv.FormatInt(n, 10)+`}`))
	default:
		_, _ = io.Copy(io.Discard, r.Body)
		send(w, http.StatusOK, okBody)
	}
}

func send(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// list answers the guard's lookup. The one ACTIVE account echoes the queried
// user and auth config, as the real filter would.
func list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ac, user := q.Get("auth_config_ids"), q.Get("user_ids")
	if !strings.HasPrefix(ac, "ac_active") {
		send(w, http.StatusOK, emptyList)
		return
	}
	item := map[string]any{
		"id": "ca_active_" + user, "status": "ACTIVE", "user_id": user,
		"auth_config": map[string]string{"id": ac}, "toolkit": map[string]string{"slug": "github"},
		"created_at": "2026-01-01T00:00:00Z",
	}
	body, err := json.Marshal(map[string]any{"items": []any{item}, "next_cursor": nil, "total_pages": 1, "current_page": 1, "total_items": 1})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	send(w, http.StatusOK, body)
}

func download(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 || n > maxDownload {
		http.Error(w, "bytes must be 0 to 1 GiB", http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		n -= k
	}
}
