package e2e_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/testproc"
)

// auditRun runs `composio-guard audit args...` as a process, with env only
// (plus PATH): the credential comes from there.
func auditRun(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(proxyBin(t), append([]string{"audit"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return code, out.String(), errb.String()
}

// TestAuditSubcommand runs the real binary's audit against the fake
// Composio binary: every exit code, the JSON and CSV a script reads, and
// the key never in the output.
func TestAuditSubcommand(t *testing.T) {
	f := startFake(t)
	key := uniq("sk_audit_SECRET")
	env := []string{"COMPOSIO_API_KEY=" + key, "GUARD_UPSTREAM_URL=" + f.URL}
	check := func(outs ...string) {
		t.Helper()
		for _, s := range outs {
			if strings.Contains(s, key) {
				t.Fatalf("the key is in the output:\n%s", s)
			}
		}
	}

	// An empty project: exit 0.
	code, out, errs := auditRun(t, env)
	check(out, errs)
	if code != 0 || !strings.Contains(out, "result: no duplicates") {
		t.Fatalf("empty: exit %d\n%s\n%s", code, out, errs)
	}

	// 1,500 accounts over two pages, 20 users with a second ACTIVE account.
	f.SeedBulk(t, composiotest.Seed{Credential: key, Count: 1500, Users: 1480, AuthConfigs: []string{"ac_gh"},
		CreatedAt: time.Now().Add(-time.Hour), Step: time.Millisecond})
	code, out, errs = auditRun(t, env, "--format", "json")
	check(out, errs)
	var doc struct {
		Groups []struct {
			UserID   string `json:"user_id"`
			Count    int    `json:"count"`
			Accounts []struct {
				ID string `json:"id"`
			} `json:"accounts"`
		} `json:"groups"`
		Summary struct {
			Complete        bool `json:"complete"`
			AccountsScanned int  `json:"accounts_scanned"`
			DuplicateGroups int  `json:"duplicate_groups"`
			Pages           int  `json:"pages"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if code != 1 || len(doc.Groups) != 20 || doc.Summary.AccountsScanned != 1500 || doc.Summary.Pages != 2 ||
		!doc.Summary.Complete || doc.Groups[0].Count != 2 {
		t.Fatalf("exit %d summary %+v groups %d\n%s", code, doc.Summary, len(doc.Groups), errs)
	}
	code, out, errs = auditRun(t, env, "--format", "csv", "--user", "user_0")
	check(out, errs)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || code != 1 || len(rows) != 2 || rows[1][0] != "user_0" || rows[1][4] != "2" {
		t.Fatalf("csv: exit %d %v %q", code, err, rows)
	}

	// Pagination misreported: partial, exit 2.
	f.SetFault(t, composiotest.RouteList, composiotest.Fault{CursorNullAfter: 1000})
	code, out, errs = auditRun(t, env)
	check(out, errs)
	if code != 2 || !strings.Contains(out, "INCOMPLETE") || strings.Contains(out, "result: duplicates found") {
		t.Fatalf("quirk: exit %d\n%s\n%s", code, out, errs)
	}
	f.ClearFaults(t)

	// Bad usage: exit 2 with a message, no call made.
	code, out, errs = auditRun(t, env, "--format", "yaml")
	if code != 2 || out != "" || !strings.Contains(errs, "--format must be table, json or csv") {
		t.Fatalf("bad flag: exit %d %q %q", code, out, errs)
	}
	code, _, errs = auditRun(t, []string{"GUARD_UPSTREAM_URL=" + f.URL})
	if code != 2 || !strings.Contains(errs, "no credential") {
		t.Fatalf("no key: exit %d %q", code, errs)
	}
	// Read only: only GETs of the list reached the fake.
	for _, q := range f.RequestsOf(t, key, "") {
		if q.Method != "GET" || q.Route != composiotest.RouteList {
			t.Errorf("the audit sent %s %s", q.Method, q.Path)
		}
	}
}

// TestPeriodicAuditMetrics: with the audit off, its series exist at their
// neutral values on the first scrape; with it on, the proxy audits the
// fake and the gauges say what it found; the key is never printed.
func TestPeriodicAuditMetrics(t *testing.T) {
	f := startFake(t)
	off := startProxy(t, "audit-off", f.URL)
	text := off.MetricsText(t)
	for _, name := range []string{"composio_guard_audit_interval_seconds", "composio_guard_audit_duplicate_groups",
		"composio_guard_audit_new_duplicate_groups", "composio_guard_audit_accounts_scanned",
		"composio_guard_audit_last_success_timestamp_seconds"} {
		if v, ok := testproc.MetricFrom(text, name, nil); !ok || v != 0 {
			t.Errorf("audit off: %s = %v (present %v), want 0", name, v, ok)
		}
	}
	for _, r := range []string{"partial", "refused", "rate_limited", "upstream", "bad_answer", "timeout", "lock"} {
		if v, ok := testproc.MetricFrom(text, "composio_guard_audit_errors_total", map[string]string{"reason": r}); !ok || v != 0 {
			t.Errorf("audit off: errors{reason=%s} = %v (present %v)", r, v, ok)
		}
	}

	key := uniq("sk_periodic_SECRET")
	f.SeedBulk(t, composiotest.Seed{Credential: key, Count: 12, Users: 10, CreatedAt: time.Now().Add(-time.Hour)})
	on := startProxy(t, "audit-on", f.URL, "GUARD_AUDIT_INTERVAL=1h", "GUARD_AUDIT_API_KEY="+key)
	deadline := time.Now().Add(10 * time.Second)
	for len(on.LogLines("audit done")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no audit:\n%s", testproc.Tail(on.Logs(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	text = on.MetricsText(t)
	for name, want := range map[string]float64{
		"composio_guard_audit_interval_seconds":     3600,
		"composio_guard_audit_duplicate_groups":     2,
		"composio_guard_audit_new_duplicate_groups": 0,
		"composio_guard_audit_accounts_scanned":     12,
	} {
		if v, ok := testproc.MetricFrom(text, name, nil); !ok || v != want {
			t.Errorf("audit on: %s = %v, want %v", name, v, want)
		}
	}
	if strings.Contains(on.Logs(), key) {
		t.Error("the audit key is in the logs")
	}
	if !strings.Contains(on.Logs(), "GUARD_AUDIT_API_KEY=xxxxx") {
		t.Error("the printed config does not show the key masked")
	}
	// The audit's calls carry its own key and user agent, and only list.
	for _, q := range f.RequestsOf(t, key, "") {
		if q.Method != "GET" || q.Route != composiotest.RouteList || !strings.HasPrefix(q.Header.Get("User-Agent"), "composio-guard-audit/") {
			t.Errorf("audit call %s %s UA %q", q.Method, q.Path, q.Header.Get("User-Agent"))
		}
	}
}
