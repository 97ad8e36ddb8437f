package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/composio-guard/composio-guard/internal/upstream"
)

func TestCallerCaused(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{upstream.ErrQueryRefused, true},
		{upstream.ErrTooManyPages, true},
		{upstream.ErrUnknownItem, true},
		{fmt.Errorf("lookup page 2: %w: 414", upstream.ErrQueryRefused), true},
		{fmt.Errorf("lookup page 1: %w", fmt.Errorf("item 3: %w", upstream.ErrUnknownItem)), true},
		{fmt.Errorf("%w (11 pages read)", upstream.ErrTooManyPages), true},
		{upstream.ErrBadAnswer, false},
		{upstream.ErrUnexpectedStatus, false},
		{upstream.ErrInvalidQuery, false},
		{upstream.ErrBreakerOpen, false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
		{&upstream.StatusError{StatusCode: 429}, false},
		{errors.New("upstream: list has more pages than the lookup reads"), false}, // same words, not the sentinel
	}
	for _, tc := range tests {
		if got := upstream.CallerCaused(tc.err); got != tc.want {
			t.Errorf("CallerCaused(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// statusHandler answers every call with code and Composio's error envelope.
func statusHandler(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, `{"error":{"message":"x","status":`+fmt.Sprint(code)+`}}`)
	}
}

// A 4xx other than 401/403/429 follows from the query (an oversized user id
// makes a 414 or 431, an odd API version a 404): it is ErrQueryRefused,
// counted as "rejected", and proof that Composio is up, so it never opens
// the breaker, not even at a threshold of 1.
func TestListQueryRefusedIsCallerCaused(t *testing.T) {
	for _, code := range []int{400, 404, 409, 414, 422, 431} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			e := newListEnv(t, statusHandler(code), upstream.LookupSettings{BreakerThreshold: 1, BreakerCooldown: time.Hour})
			q := query("/api/v3", "u", "ac", "", nil)
			for i := range 3 {
				_, err := e.c.List(context.Background(), q)
				if !errors.Is(err, upstream.ErrQueryRefused) || !upstream.CallerCaused(err) {
					t.Fatalf("call %d: err %v, want ErrQueryRefused", i+1, err)
				}
				if errors.Is(err, upstream.ErrBadAnswer) {
					t.Errorf("a refused query is also ErrBadAnswer: %v", err)
				}
				if _, ok := errors.AsType[*upstream.StatusError](err); ok {
					t.Errorf("a %d is handed back as a StatusError", code)
				}
			}
			if n := len(e.rec.all()); n != 3 {
				t.Errorf("%d lookups reached Composio, want 3 (the breaker opened)", n)
			}
			if got := lookups(e.m, upstream.LookupRejected); got != 3 {
				t.Errorf("lookup{rejected} = %v, want 3", got)
			}
			if got := lookups(e.m, upstream.LookupError); got != 0 {
				t.Errorf("lookup{error} = %v, want 0", got)
			}
			if breakerState(e.m) != 0 {
				t.Errorf("breaker state %v", breakerState(e.m))
			}
		})
	}
}

// Composio's own failures still count: 5xx, 408 (Composio gave up waiting
// for the request, nothing in the query causes it), and a 2xx that is not a
// list answer.
func TestListComposioFailuresStillCount(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"500":      statusHandler(500),
		"503":      statusHandler(503),
		"408":      statusHandler(408),
		"bad 2xx":  serve(`<html>ok</html>`),
		"no items": serve(`{"data":[]}`),
	} {
		t.Run(name, func(t *testing.T) {
			e := newListEnv(t, h, upstream.LookupSettings{BreakerThreshold: 2, BreakerCooldown: time.Hour})
			q := query("/api/v3", "u", "ac", "", nil)
			for range 2 {
				_, err := e.c.List(context.Background(), q)
				if err == nil || upstream.CallerCaused(err) {
					t.Fatalf("err %v, want a Composio failure", err)
				}
			}
			if _, err := e.c.List(context.Background(), q); !errors.Is(err, upstream.ErrBreakerOpen) {
				t.Errorf("after 2 failures: %v, want ErrBreakerOpen", err)
			}
			if got := lookups(e.m, upstream.LookupError); got != 2 {
				t.Errorf("lookup{error} = %v, want 2", got)
			}
		})
	}
}

// One project with more accounts on one user than the lookup reads is the
// caller's data, not Composio failing: ErrTooManyPages, over and over, never
// opens the breaker for anybody.
func TestListTooManyPagesKeepsBreakerClosed(t *testing.T) {
	var n atomic.Int32
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) {
		serve(page(fmt.Sprintf("c%d", n.Add(1)), item("ca", "INITIATED", "u", "ac")))(w, r)
	}, upstream.LookupSettings{MaxPages: 2, BreakerThreshold: 1, BreakerCooldown: time.Hour})
	q := query("/api/v3", "u", "ac", "", nil)
	for range 5 {
		_, err := e.c.List(context.Background(), q)
		if !errors.Is(err, upstream.ErrTooManyPages) || !upstream.CallerCaused(err) {
			t.Fatalf("err %v, want ErrTooManyPages", err)
		}
	}
	if got := lookups(e.m, upstream.LookupRejected); got != 5 {
		t.Errorf("lookup{rejected} = %v, want 5", got)
	}
	if breakerState(e.m) != 0 {
		t.Errorf("breaker state %v, want closed", breakerState(e.m))
	}
}

// A caller-caused answer to the half-open probe proves Composio is up: it
// closes the breaker.
func TestBreakerProbeClosedByCallerCaused(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	var code atomic.Int32
	code.Store(502)
	e := newListEnv(t, func(w http.ResponseWriter, r *http.Request) { statusHandler(int(code.Load()))(w, r) },
		upstream.LookupSettings{BreakerThreshold: 1, BreakerCooldown: time.Second}, upstream.ListOptions{Now: clock.Now})
	q := query("/api/v3", "u", "ac", "", nil)
	if _, err := e.c.List(context.Background(), q); err == nil || upstream.CallerCaused(err) {
		t.Fatalf("err %v", err)
	}
	if breakerState(e.m) != 2 {
		t.Fatalf("state %v, want open", breakerState(e.m))
	}
	clock.Advance(time.Second)
	code.Store(414)
	if _, err := e.c.List(context.Background(), q); !errors.Is(err, upstream.ErrQueryRefused) {
		t.Fatalf("probe: %v", err)
	}
	if breakerState(e.m) != 0 {
		t.Errorf("state %v after a 414 probe, want closed", breakerState(e.m))
	}
}

// An item without id or status cannot be classified: the lookup fails with
// ErrUnknownItem (caller-caused, not ErrBadAnswer), and reads nothing.
func TestListUnknownItem(t *testing.T) {
	for name, it := range map[string]string{
		"no id":       `{"status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}`,
		"id null":     `{"id":null,"status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}`,
		"id empty":    `{"id":"","status":"ACTIVE","user_id":"u","auth_config":{"id":"ac"}}`,
		"no status":   `{"id":"ca","user_id":"u","auth_config":{"id":"ac"}}`,
		"status null": `{"id":"ca","status":null}`,
		"empty":       `{}`,
		"null":        `null`,
	} {
		t.Run(name, func(t *testing.T) {
			e := newListEnv(t, serve(page("", item("ca_0", "ACTIVE", "u", "ac"), it)), upstream.LookupSettings{BreakerThreshold: 1, BreakerCooldown: time.Hour})
			res, err := e.c.List(context.Background(), query("/api/v3", "u", "ac", "", nil))
			if !errors.Is(err, upstream.ErrUnknownItem) || !upstream.CallerCaused(err) || errors.Is(err, upstream.ErrBadAnswer) {
				t.Fatalf("err %v, want ErrUnknownItem only", err)
			}
			if len(res.Items) != 0 {
				t.Errorf("items %+v", res.Items)
			}
			if lookups(e.m, upstream.LookupRejected) != 1 || breakerState(e.m) != 0 {
				t.Errorf("rejected %v, breaker %v", lookups(e.m, upstream.LookupRejected), breakerState(e.m))
			}
		})
	}
}

// Every result of the closed set is exposed from the start, "rejected" too,
// so that rate() over it works before the first one happens, and the
// metric's help names each.
func TestListResultsPrecreated(t *testing.T) {
	e := newListEnv(t, serve(page("")), upstream.LookupSettings{})
	mfs, err := e.m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	help := ""
	for _, mf := range mfs {
		if mf.GetName() != "composio_guard_lookup_duration_seconds" {
			continue
		}
		help = mf.GetHelp()
		for _, m := range mf.GetMetric() {
			got[labelValue(m, "result")] = true
		}
	}
	for _, r := range []string{upstream.LookupOK, upstream.LookupError, upstream.LookupTimeout, upstream.LookupRefused,
		upstream.LookupRejected, upstream.LookupBreakerOpen, upstream.LookupCanceled} {
		if !got[r] {
			t.Errorf("result %q not pre-created (have %v)", r, got)
		}
		if !strings.Contains(help, r) {
			t.Errorf("help %q does not name %q", help, r)
		}
	}
	if len(got) != 7 {
		t.Errorf("results %v, want exactly 7", got)
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Ids are query components: a space is %20 (as the SDKs send it), never
// '+', and a literal '+' is %2B, so Composio cannot read one as the other.
func TestListQueryEncodesSpaceAsPercent20(t *testing.T) {
	e := newListEnv(t, serve(page("")), upstream.LookupSettings{})
	q := query("/api/v3", "a b+c", "ac 1+2", "", nil)
	if _, err := e.c.List(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	raw := e.rec.all()[0].RawQuery
	want := "auth_config_ids=ac%201%2B2&statuses=ACTIVE%2CINITIATED&user_ids=a%20b%2Bc"
	if raw != want {
		t.Errorf("raw query %q, want %q", raw, want)
	}
	if strings.Contains(raw, "+") {
		t.Errorf("raw query %q holds a '+'", raw)
	}
}
