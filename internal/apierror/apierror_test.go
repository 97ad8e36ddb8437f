package apierror

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// envelope is what appendEnvelope must write, as encoding/json writes it.
type envelope struct {
	Error *Error `json:"error"`
}

func marshalled(t testing.TB, e *Error) []byte {
	t.Helper()
	b, err := json.Marshal(envelope{Error: e})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnvelopeMatchesEncodingJSON(t *testing.T) {
	for _, e := range []*Error{
		{},
		{Message: `User "u" already has an ACTIVE connected account on auth config "ac".`, Code: CodeMultipleAccounts,
			Slug: SlugMultipleAccounts, Status: 409, RequestID: "rid-1", SuggestedFix: `send \ the header`,
			Errors: []string{}, ExistingAccountIDs: []string{"ca_1", "ca_2"}, UserID: "u", AuthConfigID: "ac"},
		{Message: "tier <xlarge> & more\n\t\x01", Errors: []string{"a", ""}, RequestedSize: "xlarge", AllowedSizes: []string{"standard"}},
		{Message: "naïve ☃ \u2028 \xff", UserID: "用户", ExistingAccountIDs: []string{}, AllowedSizes: []string{}},
		{Code: -1, Status: 1 << 40},
	} {
		if got, want := e.appendEnvelope(nil), marshalled(t, e); !bytes.Equal(got, want) {
			t.Errorf("appendEnvelope:\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	f.Add("m", "rid", "u", "ca", 409)
	f.Add("<\"\\\x00é\u2029", "", "", "", -5)
	f.Fuzz(func(t *testing.T, msg, rid, user, id string, code int) {
		e := &Error{Message: msg, Code: code, Slug: SlugBadRequest, Status: code, RequestID: rid, SuggestedFix: msg + id,
			Errors: []string{id}, ExistingAccountIDs: []string{id, msg}, UserID: user, AuthConfigID: id, RequestedSize: user}
		if got, want := e.appendEnvelope(nil), marshalled(t, e); !bytes.Equal(got, want) {
			t.Fatalf("appendEnvelope:\n got %s\nwant %s", got, want)
		}
	})
}

// What a client reads: status, headers and the envelope.
func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, &Error{Message: "m", Code: CodeGuardUnavailable, Slug: SlugGuardUnavailable, Status: http.StatusServiceUnavailable, RequestID: "rid-9"},
		Options{NoRetry: true, RetryAfterSeconds: 3, Close: true})
	h := rec.Header()
	if rec.Code != 503 || h.Get("Content-Type") != "application/json" || h.Get(HeaderShouldRetry) != "false" ||
		h.Get(HeaderRequestID) != "rid-9" || h.Get("Retry-After") != "3" || h.Get("Connection") != "close" {
		t.Fatalf("status %d header %v", rec.Code, h)
	}
	var env struct {
		Error struct {
			Message   string   `json:"message"`
			Code      int      `json:"code"`
			Slug      string   `json:"slug"`
			Status    int      `json:"status"`
			RequestID string   `json:"request_id"`
			Errors    []string `json:"errors"`
		} `json:"error"`
	}
	body := rec.Body.Bytes()
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if env.Error.Message != "m" || env.Error.Code != CodeGuardUnavailable || env.Error.Status != 503 ||
		env.Error.RequestID != "rid-9" || env.Error.Errors == nil || h.Get("Content-Length") != itoa(len(body)) {
		t.Fatalf("envelope %+v, Content-Length %s for %d bytes", env.Error, h.Get("Content-Length"), len(body))
	}
	// The shared header values are never changed in place by the next answer.
	rec2 := httptest.NewRecorder()
	rec2.Header().Add("Content-Type", "text/plain")
	Write(rec2, &Error{Status: 400}, Options{})
	rec2.Header().Add("Content-Type", "x")
	if contentTypeJSON[0] != "application/json" || len(contentTypeJSON) != 1 {
		t.Fatalf("shared value changed: %q", contentTypeJSON)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
