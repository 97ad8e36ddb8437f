package composiotest_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/composiotest"
)

// FuzzClientInput feeds arbitrary bodies and queries to every parser of the
// fake: whatever arrives, the answer is JSON with a sane status.
func FuzzClientInput(f *testing.F) {
	f.Add("POST", "/api/v3/connected_accounts/link", "", `{"user_id":"u","auth_config_id":"a","experimental":{"account_type":"SHARED"}}`)
	f.Add("POST", "/api/v3/connected_accounts", "", `{"auth_config":{"id":"a"},"connection":null}`)
	f.Add("GET", "/api/v3.1/connected_accounts", "user_ids=a%2Cb&limit=1&cursor=YWZ0ZXI6MQ", "")
	f.Add("POST", "/api/v3/tool_router/session", "", `{"user_id":"u","workbench":{"sandbox_size":"large"},"toolkits":["x"]}`)
	f.Add("PATCH", "/api/v3.1/tool_router/session/trs_x", "", `{"workbench":null}`)
	fake := composiotest.New()
	fake.AddAccount(composiotest.Account{Credential: "k", UserID: "u", AuthConfigID: "a"})
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "/_fake") {
			return
		}
		req, err := http.NewRequest(method, "http://fake"+path+"?"+query, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("x-api-key", "k")
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 499 || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s?%s %q: %d %q", method, path, query, body, rec.Code, rec.Body.Bytes())
		}
	})
}
