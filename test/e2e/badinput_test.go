package e2e_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/apierror"
)

// testBadInput: what the guard cannot read is refused in Composio's envelope
// and never forwarded, not even as a lookup.
func testBadInput(t *testing.T, w *world) {
	const (
		link   = "/api/v3/connected_accounts/link"
		create = "/api/v3.1/connected_accounts"
	)
	big := []byte(`{"user_id":"u","auth_config_id":"ac","pad":"` + strings.Repeat("x", maxBodyBytes) + `"}`)
	bomb := []byte(`{"user_id":"u","auth_config_id":"ac","pad":"` + strings.Repeat("0", 2<<20) + `"}`)

	for _, c := range []struct {
		name    string
		path    string
		body    []byte
		hdr     []string
		chunked bool // send without Content-Length
		gzip    bool // gzip the body and say so
		status  int
		slug    string
		fixHas  string
	}{
		{name: "not JSON", body: []byte(`{"user_id":`), status: 400},
		{name: "plain text", body: []byte(`user_id=u&auth_config_id=ac`), hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 400},
		{name: "array body", body: []byte(`[{"user_id":"u","auth_config_id":"ac"}]`), status: 400},
		{name: "string body", body: []byte(`"u"`), status: 400},
		{name: "empty body", body: []byte{}, status: 400},
		{name: "trailing garbage", body: []byte(`{"user_id":"u","auth_config_id":"ac"} {}`), status: 400},
		{name: "missing user_id", body: []byte(`{"auth_config_id":"ac"}`), status: 400},
		{name: "missing auth_config_id", body: []byte(`{"user_id":"u"}`), status: 400},
		{name: "user_id a number", body: []byte(`{"user_id":42,"auth_config_id":"ac"}`), status: 400},
		{name: "user_id an object", body: []byte(`{"user_id":{"id":"u"},"auth_config_id":"ac"}`), status: 400},
		{name: "auth_config_id null", body: []byte(`{"user_id":"u","auth_config_id":null}`), status: 400},
		{name: "user_id empty", body: []byte(`{"user_id":"","auth_config_id":"ac"}`), status: 400},
		{name: "user_id with a comma", body: []byte(`{"user_id":"a,b","auth_config_id":"ac"}`), status: 400},
		{name: "auth_config_id with a comma", body: []byte(`{"user_id":"u","auth_config_id":"ac_1,ac_2"}`), status: 400},
		{name: "user_id not UTF-8", body: []byte("{\"user_id\":\"u\xff\",\"auth_config_id\":\"ac\"}"), status: 400},
		{name: "duplicate user_id", body: []byte(`{"user_id":"a","auth_config_id":"ac","user_id":"b"}`), status: 400},
		{name: "duplicate by escape", body: []byte(`{"user_id":"a","auth_config_id":"ac","user\u005fid":"b"}`), status: 400},
		{name: "duplicate by case", body: []byte(`{"user_id":"a","auth_config_id":"ac","Auth_Config_Id":"ac2"}`), status: 400},
		{name: "bad account type", path: "/api/v3.1/connected_accounts/link", body: []byte(`{"user_id":"u","auth_config_id":"ac","experimental":{"account_type":"BOGUS"}}`), status: 400},
		{name: "allow_multiple not a boolean", body: []byte(`{"user_id":"u","auth_config_id":"ac","allow_multiple":"yes"}`), status: 400},
		{name: "create without auth_config", path: create, body: []byte(`{"connection":{"user_id":"u"}}`), status: 400},
		{name: "create auth_config a string", path: create, body: []byte(`{"auth_config":"ac","connection":{"user_id":"u"}}`), status: 400},
		{name: "create user_id a number", path: create, body: []byte(`{"auth_config":{"id":"ac"},"connection":{"user_id":7}}`), status: 400},
		{name: "create duplicate auth_config", path: create, body: []byte(`{"auth_config":{"id":"a"},"auth_config":{"id":"b"}}`), status: 400},
		{name: "create duplicate id", path: create, body: []byte(`{"auth_config":{"id":"a","id":"b"}}`), status: 400},
		{name: "create id with a comma", path: create, body: []byte(`{"auth_config":{"id":"a,b"},"connection":{"user_id":"u"}}`), status: 400},
		{name: "brotli", body: []byte(`{"user_id":"u","auth_config_id":"ac"}`), hdr: []string{"Content-Encoding", "br"}, status: 400, slug: apierror.SlugUnsupportedEnc},
		{name: "gzip twice", body: []byte(`{"user_id":"u","auth_config_id":"ac"}`), hdr: []string{"Content-Encoding", "gzip, gzip"}, gzip: true, status: 400, slug: apierror.SlugUnsupportedEnc},
		{name: "gzip that is not", body: []byte(`{"user_id":"u","auth_config_id":"ac"}`), hdr: []string{"Content-Encoding", "gzip"}, status: 400},
		{name: "flag in a gzip body", body: []byte(`{"user_id":"u","auth_config_id":"ac","allow_multiple":true}`), gzip: true, status: 400, fixHas: apierror.HeaderAllowMultiple},
		{name: "over the limit", body: big, status: 413, slug: apierror.SlugBodyTooLarge},
		{name: "over the limit, chunked", body: big, chunked: true, status: 413, slug: apierror.SlugBodyTooLarge},
		{name: "gzip bomb", body: bomb, gzip: true, status: 413, slug: apierror.SlugBodyTooLarge},
		{name: "gzip bomb, chunked", body: bomb, gzip: true, chunked: true, status: 413, slug: apierror.SlugBodyTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cred := uniq("key")
			path := c.path
			if path == "" {
				path = link
			}
			body := c.body
			hdr := append([]string{"x-api-key", cred}, c.hdr...)
			if c.gzip {
				body = gz(t, body)
				if len(body) > maxBodyBytes {
					t.Fatalf("compressed test body is %d bytes, over the limit itself", len(body))
				}
				if len(c.hdr) == 0 {
					hdr = append(hdr, "Content-Encoding", "gzip")
				}
			}
			var rd io.Reader = bytes.NewReader(body)
			if c.chunked {
				rd = io.MultiReader(rd) // hides the length: sent chunked
			}
			req, err := http.NewRequest(http.MethodPost, w.enforce.URL+path, rd)
			if err != nil {
				t.Fatal(err)
			}
			a := do(t, req, hdr...)
			slug := c.slug
			if slug == "" {
				slug = apierror.SlugBadRequest
			}
			e := wantEnvelope(t, a, c.status, slug)
			if c.fixHas != "" && !strings.Contains(strings.ToLower(e.SuggestedFix), strings.ToLower(c.fixHas)) {
				t.Errorf("suggested_fix %q does not name %s", e.SuggestedFix, c.fixHas)
			}
			if got := w.fake.RequestsOf(t, cred, ""); len(got) != 0 {
				t.Errorf("%d request(s) reached the fake, want none: first %s %s", len(got), got[0].Method, got[0].Path)
			}
		})
	}
}
