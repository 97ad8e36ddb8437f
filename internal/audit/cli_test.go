package audit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/composiotest"
)

func TestFormats(t *testing.T) {
	f, srv := newFake(t, composiotest.WithToolkit("ac_1", "gmail"))
	a1 := acct(f, "u,1", "ac_1", "ACTIVE", 2*time.Hour)
	a2 := acct(f, "u,1", "ac_1", "ACTIVE", time.Hour)
	acct(f, "u2", "ac_1", "ACTIVE", time.Hour)

	t.Run("table", func(t *testing.T) {
		r := run(t, srv)
		if r.code != audit.ExitDuplicates {
			t.Fatalf("exit %d", r.code)
		}
		lines := strings.Split(r.stdout, "\n")
		for _, col := range []string{"USER", "AUTH CONFIG", "TOOLKIT", "TYPE", "COUNT", "ACCOUNT", "STATUS", "CREATED AT"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("header lacks %s: %q", col, lines[0])
			}
		}
		first := strings.Fields(lines[1])
		if len(first) != 8 || first[0] != "u,1" || first[1] != "ac_1" || first[2] != "gmail" || first[3] != "PRIVATE" ||
			first[4] != "2" || first[5] != a1.ID || first[6] != "ACTIVE" || first[7] != a1.CreatedAt.UTC().Format(time.RFC3339) {
			t.Errorf("first row %q", lines[1])
		}
		if second := strings.Fields(lines[2]); len(second) != 3 || second[0] != a2.ID {
			t.Errorf("second row %q", lines[2])
		}
		for _, s := range []string{"accounts scanned: 3 (Composio's total_items: 3) in 1 pages", "groups (user, auth config, account type): 2",
			"duplicate groups: 1", "accounts beyond the first: 1", "time: ", "result: duplicates found"} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("summary lacks %q:\n%s", s, r.stdout)
			}
		}
		if r.stderr != "" {
			t.Errorf("stderr without a terminal: %q", r.stderr)
		}
	})
	t.Run("json", func(t *testing.T) {
		r := run(t, srv, "--format", "json")
		out := parseJSON(t, r)
		if r.code != audit.ExitDuplicates || len(out.Groups) != 1 {
			t.Fatalf("exit %d groups %+v", r.code, out.Groups)
		}
		g := out.Groups[0]
		if g.UserID != "u,1" || g.AuthConfigID != "ac_1" || g.Toolkit != "gmail" || g.AccountType != "PRIVATE" || g.Count != 2 ||
			g.Accounts[0].ID != a1.ID || g.Accounts[0].Status != "ACTIVE" || !g.Accounts[0].CreatedAt.Equal(a1.CreatedAt.Truncate(time.Millisecond)) {
			t.Errorf("group %+v", g)
		}
		if s := out.Summary; !s.Complete || s.AccountsScanned != 3 || s.Groups != 2 || s.DuplicateGroups != 1 || s.AccountsBeyond != 1 ||
			s.PendingTTLSeconds != 900 || s.IncludeInitiated {
			t.Errorf("summary %+v", s)
		}
		if r.stderr != "" {
			t.Errorf("stderr %q", r.stderr)
		}
	})
	t.Run("csv", func(t *testing.T) {
		r := run(t, srv, "--format", "csv")
		rows := parseCSV(t, r.stdout)
		if r.code != audit.ExitDuplicates || len(rows) != 2 {
			t.Fatalf("exit %d rows %q", r.code, rows)
		}
		if strings.Join(rows[0], ",") != strings.Join(audit.CSVHeader, ",") {
			t.Errorf("header %q", rows[0])
		}
		want := []string{"u,1", "ac_1", "gmail", "PRIVATE", "2", a1.ID + ";" + a2.ID, "ACTIVE;ACTIVE",
			a1.CreatedAt.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano) + ";" + a2.CreatedAt.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)}
		if strings.Join(rows[1], "|") != strings.Join(want, "|") {
			t.Errorf("row\n got %q\nwant %q", rows[1], want)
		}
		// The summary goes to stderr: stdout stays CSV.
		if !strings.Contains(r.stderr, "duplicate groups: 1") {
			t.Errorf("stderr %q", r.stderr)
		}
	})
	t.Run("clean", func(t *testing.T) {
		_, clean := newFake(t)
		r := run(t, clean, "--format", "json")
		if out := parseJSON(t, r); r.code != audit.ExitClean || out.Groups == nil || len(out.Groups) != 0 || !out.Summary.Complete {
			t.Errorf("exit %d %s", r.code, r.stdout)
		}
		if r := run(t, clean, "--format", "csv"); r.code != 0 || len(parseCSV(t, r.stdout)) != 1 {
			t.Errorf("clean csv: %d %q", r.code, r.stdout)
		}
		if r := run(t, clean); r.code != 0 || !strings.Contains(r.stdout, "result: no duplicates") || strings.Contains(r.stdout, "USER") {
			t.Errorf("clean table: %d %q", r.code, r.stdout)
		}
	})
}

// TestTableEscapes: an id with a terminal escape is shown inert.
func TestTableEscapes(t *testing.T) {
	f, srv := newFake(t)
	acct(f, "u\x1b[31m", "ac_1", "ACTIVE", 2*time.Hour)
	acct(f, "u\x1b[31m", "ac_1", "ACTIVE", time.Hour)
	r := run(t, srv)
	if r.code != audit.ExitDuplicates || strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, "u?[31m") {
		t.Errorf("exit %d %q", r.code, r.stdout)
	}
}

func TestCredentialForms(t *testing.T) {
	f, srv := newFake(t)
	user := "user:hunter2_user|org:org_1|project:pr_1"
	org := "org:hunter2_org|project:pr_2"
	for _, p := range []string{user, user, org, org} {
		f.AddAccount(composiotest.Account{Credential: p, UserID: "u1", AuthConfigID: "ac_1"})
	}
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		header map[string]string
	}{
		{"user key", env(audit.EnvUserAPIKey, "hunter2_user", audit.EnvOrgID, "org_1", audit.EnvProjectID, "pr_1", audit.EnvUpstream, srv.URL),
			map[string]string{"X-User-Api-Key": "hunter2_user", "X-Org-Id": "org_1", "X-Project-Id": "pr_1"}},
		{"org key", env(audit.EnvOrgAPIKey, "hunter2_org", audit.EnvProjectID, "pr_2", audit.EnvUpstream, srv.URL),
			map[string]string{"X-Org-Api-Key": "hunter2_org", "X-Project-Id": "pr_2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.Reset()
			r := runEnv(t, tc.getenv, "--format", "json")
			if out := parseJSON(t, r); r.code != audit.ExitDuplicates || out.Summary.AccountsScanned != 2 {
				t.Fatalf("exit %d %s %s", r.code, r.stdout, r.stderr)
			}
			q := f.Requests()[0]
			for k, v := range tc.header {
				if q.Header.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, q.Header.Get(k), v)
				}
			}
			if q.Header.Get("X-Api-Key") != "" {
				t.Error("a second credential was sent")
			}
		})
	}
}

// TestUsageErrors: bad flags and environment exit 2 with a clear message
// on stderr, before any call to Composio, and never echo the credential.
func TestUsageErrors(t *testing.T) {
	f, srv := newFake(t)
	good := []string{audit.EnvAPIKey, secretKey, audit.EnvUpstream, srv.URL}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		say  string
	}{
		{"format", good, []string{"--format", "xml"}, "--format must be table, json or csv"},
		{"unknown flag", good, []string{"--api-key", "sk_live_SECRETVALUE"}, "flag provided but not defined: -api-key"},
		{"positional", good, []string{"sk_live_SECRETVALUE"}, "unexpected argument"},
		{"page size", good, []string{"--page-size", "0"}, "--page-size must be between 1 and 1000"},
		{"page size big", good, []string{"--page-size", "1001"}, "--page-size must be between 1 and 1000"},
		{"retries", good, []string{"--max-retries", "-1"}, "--max-retries must be between 0 and 20"},
		{"prefix", good, []string{"--api-prefix", "/api/v2"}, "--api-prefix must be"},
		{"since", good, []string{"--since", "yesterday"}, "--since: want an RFC 3339 time"},
		{"since negative", good, []string{"--since", "-5m"}, "--since: a duration must be positive"},
		{"pending ttl", good, []string{"--pending-ttl", "-1m"}, "--pending-ttl must be positive"},
		{"pending ttl env", append(append([]string{}, good...), audit.EnvPendingTTL, "soon"), nil, "GUARD_PENDING_MAX_TTL must be a positive duration"},
		{"control char id", good, []string{"--user", "u\x01"}, "control characters"},
		{"no credential", []string{audit.EnvUpstream, srv.URL}, nil, "no credential: set COMPOSIO_API_KEY"},
		{"two credentials", append(append([]string{}, good...), audit.EnvOrgAPIKey, "hunter2"), nil, "more than one credential"},
		{"user key without project", []string{audit.EnvUserAPIKey, "hunter2", audit.EnvUpstream, srv.URL}, nil, "COMPOSIO_PROJECT_ID is required"},
		{"bad base url", []string{audit.EnvAPIKey, secretKey, audit.EnvUpstream, "https://admin:hunter2@composio.example/"}, nil, "GUARD_UPSTREAM_URL: must not carry user info"},
		{"bad base url flag", good, []string{"--base-url", "ftp://x"}, "--base-url: scheme must be http or https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.Reset()
			r := runEnv(t, env(tc.env...), tc.args...)
			if r.code != audit.ExitIncomplete || !strings.Contains(r.stderr, tc.say) {
				t.Errorf("exit %d, want 2 with %q on stderr; stderr:\n%s", r.code, tc.say, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			if n := len(f.Requests()); n != 0 {
				t.Errorf("%d calls to Composio", n)
			}
		})
	}
	// -h is help, not an error.
	if r := runEnv(t, env(good...), "-h"); r.code != 0 || !strings.Contains(r.stderr, "Exit codes:") || !strings.Contains(r.stderr, "-include-initiated") {
		t.Errorf("-h: %d %q", r.code, r.stderr)
	}
}

// TestBaseURL: --base-url wins over GUARD_UPSTREAM_URL, which is the default.
func TestBaseURL(t *testing.T) {
	f, srv := newFake(t)
	acct(f, "u1", "ac_1", "ACTIVE", time.Hour)
	r := runEnv(t, env(audit.EnvAPIKey, secretKey, audit.EnvUpstream, "http://127.0.0.1:1"), "--base-url", srv.URL, "--format", "json")
	if r.code != 0 || parseJSON(t, r).Summary.AccountsScanned != 1 {
		t.Errorf("exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	// Nothing listens on port 1: a network failure is exit 2.
	r = runEnv(t, env(audit.EnvAPIKey, secretKey, audit.EnvUpstream, "http://127.0.0.1:1"), "--max-retries", "0")
	if r.code != audit.ExitIncomplete || !strings.Contains(r.stdout, "INCOMPLETE") {
		t.Errorf("unreachable: exit %d %s", r.code, r.stdout)
	}
}

// TestProgressOnTerminal: on a terminal, a live line on stderr (pages,
// accounts of total_items), erased at the end; stdout is the same table.
func TestProgressOnTerminal(t *testing.T) {
	f, srv := newFake(t)
	if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 2100, Users: 2000}); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	code := audit.Main(context.Background(), audit.Invocation{
		Args: []string{"--format", "csv"}, Getenv: env(audit.EnvAPIKey, secretKey, audit.EnvUpstream, srv.URL),
		Stdout: &out, Stderr: &errb, Terminal: true,
	})
	if code != audit.ExitDuplicates || len(parseCSV(t, out.String())) != 101 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	e := errb.String()
	for _, s := range []string{"\r\x1b[Kscanning: 1 pages, 1000 accounts of 2100 (47%)", "scanning: 3 pages, 2100 accounts of 2100 (100%)", "duplicate groups: 100"} {
		if !strings.Contains(e, s) {
			t.Errorf("stderr lacks %q:\n%q", s, e)
		}
	}
	if strings.Contains(e, "SECRETVALUE") || strings.Contains(out.String(), "\r") {
		t.Errorf("stdout %q stderr %q", out.String(), e)
	}
}

// TestEchoedKeyMasked: an error answer that quotes the key it refused is
// reported with its message, the key masked, never printed.
func TestEchoedKeyMasked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"message":"API key %s is not valid for this project","code":401}}`, r.Header.Get("X-Api-Key"))
	}))
	defer srv.Close()
	r := run(t, srv) // fails the test if any output holds the key
	if r.code != audit.ExitIncomplete {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, audit.ExitIncomplete, r.stdout, r.stderr)
	}
	all := r.stdout + r.stderr
	if !strings.Contains(all, "Composio answered 401 Unauthorized") || !strings.Contains(all, "API key [redacted] is not valid for this project") {
		t.Errorf("the refusal is not reported with Composio's message, key masked:\n%s", all)
	}
}

// TestFlagValuesNotEchoed: a key given as a flag's value by mistake is
// never printed back (runEnv fails on it), and the message still names the
// flag. CSV cells carry no control characters.
func TestFlagValuesNotEchoed(t *testing.T) {
	getenv := env(audit.EnvAPIKey, "k", audit.EnvUpstream, "http://127.0.0.1:9")
	for _, args := range [][]string{
		{"--page-size=" + secretKey}, {"--pending-ttl", secretKey}, {"--include-initiated=" + secretKey},
		{"--since", secretKey}, {"--format", secretKey}, {"--api-prefix", secretKey},
	} {
		r := runEnv(t, getenv, args...)
		name := strings.SplitN(strings.TrimLeft(args[0], "-"), "=", 2)[0]
		if r.code != audit.ExitIncomplete || !strings.Contains(r.stderr, name) {
			t.Errorf("%v: exit %d, stderr does not name %s:\n%s", args[0], r.code, name, r.stderr)
		}
	}
	var b strings.Builder
	if err := audit.WriteCSV(&b, []audit.Group{{UserID: "u\x1b]0;pwn\x07", AuthConfigID: "ac", Count: 2,
		Accounts: []audit.Account{{ID: "ca_1", Status: "ACTIVE"}, {ID: "ca_2", Status: "ACTIVE"}}}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\x07") {
		t.Errorf("CSV holds control characters: %q", b.String())
	}
}
