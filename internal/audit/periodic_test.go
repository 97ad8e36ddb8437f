package audit_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/audit"
	"github.com/composio-guard/composio-guard/internal/composiotest"
	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

func periodic(t *testing.T, srvURL string, store lock.Store, m *metrics.Metrics) *audit.Periodic {
	t.Helper()
	base, err := url.Parse(srvURL)
	if err != nil {
		t.Fatal(err)
	}
	s := audit.DefaultSettings()
	s.AuditInterval = time.Hour
	s.AuditAPIKey = secretKey
	s.AuditMaxRate = 100
	return audit.NewPeriodic(s, audit.PeriodicOptions{BaseURL: base, PendingTTL: 15 * time.Minute, Store: store, Metrics: m})
}

type gauges struct{ interval, groups, newGroups, scanned, lastSuccess float64 }

// scrape gathers the registry as a scrape would: name{reason} -> value.
func scrape(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range mt.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			switch {
			case mt.GetGauge() != nil:
				out[name] = mt.GetGauge().GetValue()
			case mt.GetCounter() != nil:
				out[name] = mt.GetCounter().GetValue()
			}
		}
	}
	return out
}

func readT(t *testing.T, m *metrics.Metrics) gauges {
	t.Helper()
	s := scrape(t, m)
	return gauges{s["composio_guard_audit_interval_seconds"], s["composio_guard_audit_duplicate_groups"],
		s["composio_guard_audit_new_duplicate_groups"], s["composio_guard_audit_accounts_scanned"],
		s["composio_guard_audit_last_success_timestamp_seconds"]}
}

func errorsByT(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	s := scrape(t, m)
	out := map[string]float64{}
	for _, r := range metrics.AuditErrorReasons {
		v, ok := s["composio_guard_audit_errors_total{"+r+"}"]
		if !ok {
			t.Fatalf("composio_guard_audit_errors_total{reason=%q} is not exported", r)
		}
		out[r] = v
	}
	return out
}

// TestPeriodicSetsGauges: an audit sets the gauges; a duplicate made
// between two audits shows as one new group; a failed audit counts its
// reason and leaves the last complete result in place.
func TestPeriodicSetsGauges(t *testing.T) {
	f, srv := newFake(t)
	m := metrics.New(metrics.Build{})
	if g := readT(t, m); g != (gauges{}) {
		t.Fatalf("before NewPeriodic: %+v", g)
	}
	p := periodic(t, srv.URL, lock.NewMemory(), m)
	if g := readT(t, m); g.interval != 3600 || g.lastSuccess != 0 || g.groups != 0 {
		t.Fatalf("configured, before the first audit: %+v", g)
	}
	acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour)
	acct(f, "u1", "ac_1", "ACTIVE", time.Hour)
	acct(f, "u2", "ac_1", "ACTIVE", time.Hour)

	before := float64(time.Now().Unix())
	p.Tick(context.Background())
	g := readT(t, m)
	if g.groups != 1 || g.newGroups != 0 || g.scanned != 3 || g.lastSuccess < before {
		t.Fatalf("after the first audit: %+v", g)
	}
	reqs := f.RequestsFor("GET", composiotest.RouteList)
	if len(reqs) != 1 || reqs[0].Header.Get("X-Api-Key") != secretKey {
		t.Fatalf("requests %+v", reqs)
	}

	// A second duplicate appears: one new group.
	acct(f, "u2", "ac_1", "ACTIVE", time.Minute)
	p.Tick(context.Background())
	if g := readT(t, m); g.groups != 2 || g.newGroups != 1 || g.scanned != 4 {
		t.Fatalf("after the second audit: %+v", g)
	}
	// Nothing new: back to 0 new groups.
	p.Tick(context.Background())
	if g := readT(t, m); g.groups != 2 || g.newGroups != 0 {
		t.Fatalf("after the third audit: %+v", g)
	}
	last := readT(t, m)

	for _, tc := range []struct {
		reason string
		fault  composiotest.Fault
	}{
		{"partial", composiotest.Fault{CursorNullAfter: 1, Times: 1}},
		{"refused", composiotest.Fault{Status: 403, Times: 1}},
		{"bad_answer", composiotest.Fault{NotJSON: true, Times: 1}},
	} {
		if err := f.SetFault(composiotest.RouteList, tc.fault); err != nil {
			t.Fatal(err)
		}
		want := errorsByT(t, m)
		want[tc.reason]++
		if tc.reason == "partial" {
			// Page size 1000: make the quirk bite with more than one page.
			if _, err := f.Seed(composiotest.Seed{Credential: secretKey, Count: 1500, UserPrefix: "bulk_"}); err != nil {
				t.Fatal(err)
			}
		}
		p.Tick(context.Background())
		if got := errorsByT(t, m); !equalMaps(got, want) {
			t.Errorf("%s: errors %v, want %v", tc.reason, got, want)
		}
		if g := readT(t, m); g != last {
			t.Errorf("%s: a failed audit changed the gauges: %+v, was %+v", tc.reason, g, last)
		}
		f.ClearFaults()
	}
}

func equalMaps(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestPeriodicOneAuditorPerStore: two proxies sharing one store (here the
// same memory store, as two replicas share Redis) audit once: the second
// shows the first's result without listing anything.
func TestPeriodicOneAuditorPerStore(t *testing.T) {
	f, srv := newFake(t)
	acct(f, "u1", "ac_1", "ACTIVE", 2*time.Hour)
	acct(f, "u1", "ac_1", "ACTIVE", time.Hour)
	store := lock.NewMemory()
	ma, mb := metrics.New(metrics.Build{}), metrics.New(metrics.Build{})
	a, b := periodic(t, srv.URL, store, ma), periodic(t, srv.URL, store, mb)
	a.Tick(context.Background())
	b.Tick(context.Background())
	if n := len(f.RequestsFor("GET", composiotest.RouteList)); n != 1 {
		t.Fatalf("%d list calls, want 1 (one auditor)", n)
	}
	if ga, gb := readT(t, ma), readT(t, mb); ga != gb || gb.groups != 1 || gb.lastSuccess == 0 {
		t.Errorf("the second replica does not show the result: %+v vs %+v", gb, ga)
	}
	// The auditor keeps auditing; the other keeps mirroring.
	acct(f, "u2", "ac_1", "ACTIVE", 2*time.Hour)
	acct(f, "u2", "ac_1", "ACTIVE", time.Hour)
	b.Tick(context.Background())
	a.Tick(context.Background())
	b.Tick(context.Background())
	if n := len(f.RequestsFor("GET", composiotest.RouteList)); n != 2 {
		t.Fatalf("%d list calls, want 2", n)
	}
	if gb := readT(t, mb); gb.groups != 2 || gb.newGroups != 1 {
		t.Errorf("second replica: %+v", gb)
	}
	// While one audit runs, the other replica does not start one.
	unlock, err := store.Lock(context.Background(), audit.RunLockKey, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a.Tick(context.Background())
	unlock()
	if n := len(f.RequestsFor("GET", composiotest.RouteList)); n != 2 {
		t.Errorf("an audit ran while another held the lock (%d calls)", n)
	}
}
