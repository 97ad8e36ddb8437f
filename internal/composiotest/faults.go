package composiotest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Fault is a misbehaviour of the fake on one route. Latency applies first;
// then at most one of Reset, Hang, Truncate, or a fixed answer (Status with
// Body, or NotJSON) replaces the normal one. A fault with only Latency delays
// the normal answer.
type Fault struct {
	Latency time.Duration
	// Status and Body: a fixed answer (e.g. 500, or 429 with a Retry-After
	// header). The request has no effect. Body defaults to an error envelope.
	Status  int
	Body    string
	Headers map[string]string
	// NotJSON answers (Status, default 200) with an HTML page labelled JSON.
	NotJSON bool
	// Truncate sends the normal answer's status and first half of its body
	// (a valid HTTP message, broken JSON). The request did take effect.
	Truncate bool
	// Reset closes the connection (RST) without answering.
	Reset bool
	// Hang holds the request until the client goes away or Close is called.
	Hang bool
	// Times, when > 0, limits the fault to the next Times requests.
	Times int
	// CursorNullAfter, on the list route, misreports pagination as Composio
	// has been seen to: once a page reaches this many items from the start
	// of the listing, it answers next_cursor: null although total_items
	// still counts every match. It modifies the normal answer, like Latency.
	CursorNullAfter int
}

type faultJSON struct {
	Latency  string            `json:"latency,omitempty"`
	Status   int               `json:"status,omitempty"`
	Body     string            `json:"body,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	NotJSON  bool              `json:"not_json,omitempty"`
	Truncate bool              `json:"truncate,omitempty"`
	Reset    bool              `json:"reset,omitempty"`
	Hang     bool              `json:"hang,omitempty"`
	Times    int               `json:"times,omitempty"`
	// CursorNullAfter: see Fault.CursorNullAfter.
	CursorNullAfter int `json:"cursor_null_after,omitempty"`
}

// MarshalJSON writes the control API form (latency as a Go duration string).
func (fl Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Status: fl.Status, Body: fl.Body, Headers: fl.Headers, NotJSON: fl.NotJSON,
		Truncate: fl.Truncate, Reset: fl.Reset, Hang: fl.Hang, Times: fl.Times, CursorNullAfter: fl.CursorNullAfter}
	if fl.Latency > 0 {
		j.Latency = fl.Latency.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the control API form.
func (fl *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	*fl = Fault{Status: j.Status, Body: j.Body, Headers: j.Headers, NotJSON: j.NotJSON,
		Truncate: j.Truncate, Reset: j.Reset, Hang: j.Hang, Times: j.Times, CursorNullAfter: j.CursorNullAfter}
	if j.Latency != "" {
		d, err := time.ParseDuration(j.Latency)
		if err != nil {
			return fmt.Errorf("fault latency: %w", err)
		}
		fl.Latency = d
	}
	return nil
}

func (fl Fault) validate() error {
	modes := 0
	for _, on := range []bool{fl.Reset, fl.Hang, fl.Truncate, fl.Status != 0 || fl.NotJSON} {
		if on {
			modes++
		}
	}
	switch {
	case modes > 1:
		return errors.New("fault: reset, hang, truncate and a fixed answer (status/not_json) exclude each other")
	case fl.Status != 0 && (fl.Status < 100 || fl.Status > 599):
		return fmt.Errorf("fault: bad status %d", fl.Status)
	case fl.Body != "" && fl.Status == 0:
		return errors.New("fault: body needs a status")
	case fl.Latency < 0 || fl.Times < 0 || fl.CursorNullAfter < 0:
		return errors.New("fault: latency, times and cursor_null_after must not be negative")
	case modes == 0 && fl.Latency == 0 && fl.CursorNullAfter == 0:
		return errors.New("fault: does nothing")
	}
	return nil
}

type faultState struct {
	Fault
	left int // requests left when Times > 0
}

// SetFault installs fl on route (a Route* constant, RouteAny for all),
// replacing the fault there.
func (f *Fake) SetFault(route string, fl Fault) error {
	if !routeNames[route] {
		return fmt.Errorf("composiotest: unknown route %q", route)
	}
	if err := fl.validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[route] = &faultState{Fault: fl, left: fl.Times}
	return nil
}

// ClearFault removes the fault of one route.
func (f *Fake) ClearFault(route string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, route)
}

// ClearFaults removes every fault.
func (f *Fake) ClearFaults() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = map[string]*faultState{}
}

// takeFault returns the fault that applies to this request and charges it.
func (f *Fake) takeFault(route string) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := route
	st := f.faults[key]
	if st == nil {
		key = RouteAny
		st = f.faults[key]
	}
	if st == nil {
		return Fault{}, false
	}
	if st.Times > 0 {
		st.left--
		if st.left <= 0 {
			delete(f.faults, key)
		}
	}
	return st.Fault, true
}

// applyFault plays fl. It returns false when the normal answer should follow
// (latency only); normal renders that answer, for Truncate.
func (f *Fake) applyFault(w http.ResponseWriter, r *http.Request, fl Fault, normal func(http.ResponseWriter)) bool {
	if fl.Latency > 0 {
		t := time.NewTimer(fl.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-f.closed:
		case <-r.Context().Done():
			return true // the client is gone
		}
	}
	for k, v := range fl.Headers {
		w.Header().Set(k, v)
	}
	switch {
	case fl.Reset:
		resetConn(w)
	case fl.Hang:
		select {
		case <-r.Context().Done():
		case <-f.closed:
			resetConn(w)
		}
	case fl.Truncate:
		rec := &recorder{header: http.Header{}}
		normal(rec)
		for k, vs := range rec.header {
			w.Header()[k] = vs
		}
		b := rec.body.Bytes()
		b = b[:len(b)/2]
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(rec.status())
		_, _ = w.Write(b)
	case fl.NotJSON:
		status := fl.Status
		if status == 0 {
			status = http.StatusOK
		}
		body := "<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>\n"
		if fl.Body != "" {
			body = fl.Body
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	case fl.Status != 0:
		if fl.Body == "" {
			writeError(w, r, fl.Status, 699, "Fake_InjectedFault", "Injected fault: "+http.StatusText(fl.Status), "")
			return true
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(fl.Body)))
		w.WriteHeader(fl.Status)
		_, _ = w.Write([]byte(fl.Body))
	default:
		return false
	}
	return true
}

// resetConn drops the connection with a TCP RST and no answer.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		// HTTP/2 cannot be hijacked; ErrAbortHandler is net/http's own way to
		// abort a response, recovered by the server without a log line.
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// recorder keeps the normal answer that a Truncate fault cuts in half (the
// fake links no test helpers: see package fakeserver).
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
