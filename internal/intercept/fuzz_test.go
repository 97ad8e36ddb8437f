package intercept

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/composio-guard/composio-guard/internal/reqscope"
)

var bodySeeds = []string{
	`{"user_id":"u","auth_config_id":"ac"}`,
	`{"auth_config_id":"ac_abc123","user_id":"user_123","callback_url":"https://app.example/cb","alias":"work"}`,
	`{"user_id":"u","auth_config_id":"ac","experimental":{"account_type":"SHARED"},"allow_multiple":true}`,
	`{ "allow_multiple" : false , "user_id":"u","auth_config_id":"ac"}`,
	`{"user_id":"a","user\u005fid":"b","auth_config_id":"ac"}`,
	`{"auth_config":{"id":"ac"},"connection":{"user_id":"u","callback_url":"x"},"allow_multiple":true}`,
	`{"auth_config":{"id":"ac"}}`,
	`{"user_id":"\ud800","auth_config_id":"a,b"}`,
	`[1,2]`, `{}`, `{"allow_multiple":true}`, ``, `{"a":{"b":[{"c":"}"}]},"user_id":"u","auth_config_id":"ac"}`,
}

// The parser must never panic, and whatever it accepts must read the same as
// encoding/json reads it (a parser differential would let a body past the check).
func FuzzParseBody(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, create bool, b []byte) {
		route := reqscope.RouteLink
		if create {
			route = reqscope.RouteCreate
		}
		g, br := parseBody(route, b)
		if br != nil {
			return
		}
		for _, id := range []string{g.UserID, g.AuthConfigID} {
			if id == "" || strings.Contains(id, ",") || !validText(id) {
				t.Fatalf("accepted id %q", id)
			}
		}
		want := guarded{AccountType: accountPrivate}
		var flag *bool
		if create {
			var ref struct {
				AuthConfig struct {
					ID string `json:"id"`
				} `json:"auth_config"`
				Connection *struct {
					UserID *string `json:"user_id"`
				} `json:"connection"`
				AllowMultiple *bool `json:"allow_multiple"`
			}
			if err := json.Unmarshal(b, &ref); err != nil {
				t.Fatalf("accepted a body encoding/json refuses: %v", err)
			}
			want.UserID, want.AuthConfigID, flag = defaultUser, ref.AuthConfig.ID, ref.AllowMultiple
			if ref.Connection != nil && ref.Connection.UserID != nil {
				want.UserID = *ref.Connection.UserID
			}
		} else {
			var ref struct {
				UserID       string `json:"user_id"`
				AuthConfigID string `json:"auth_config_id"`
				Experimental *struct {
					AccountType *string `json:"account_type"`
				} `json:"experimental"`
				AllowMultiple *bool `json:"allow_multiple"`
			}
			if err := json.Unmarshal(b, &ref); err != nil {
				t.Fatalf("accepted a body encoding/json refuses: %v", err)
			}
			want.UserID, want.AuthConfigID, flag = ref.UserID, ref.AuthConfigID, ref.AllowMultiple
			if ref.Experimental != nil && ref.Experimental.AccountType != nil {
				want.AccountType = *ref.Experimental.AccountType
			}
		}
		if g.UserID != want.UserID || g.AuthConfigID != want.AuthConfigID || g.AccountType != want.AccountType {
			t.Fatalf("parsed %+v, encoding/json reads %+v", g, want)
		}
		if (flag != nil) != g.flagFound || (g.flagFound && *flag != g.flagOn) {
			t.Fatalf("flag found=%v on=%v, encoding/json reads %v", g.flagFound, g.flagOn, flag)
		}
	})
}

// Stripping removes the flag member and one comma, and nothing else.
func FuzzStripFlag(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, br := parseBody(reqscope.RouteLink, b)
		if br != nil || !g.flagFound {
			return
		}
		out := stripFlag(b, g.flag)
		if !json.Valid(out) {
			t.Fatalf("stripped body is not JSON: %q -> %q", b, out)
		}
		g2, br := parseBody(reqscope.RouteLink, out)
		if br != nil || g2.flagFound || g2.UserID != g.UserID || g2.AuthConfigID != g.AuthConfigID || g2.AccountType != g.AccountType {
			t.Fatalf("re-parse of %q: %+v %v, want %+v", out, g2, br, g)
		}
		rest := append(append([]byte(nil), b[:g.flag.keyStart]...), b[g.flag.valEnd:]...)
		noComma := func(x []byte) []byte { return bytes.ReplaceAll(x, []byte(","), nil) }
		if len(out) != len(rest)-1 && len(out) != len(rest) || !bytes.Equal(noComma(out), noComma(rest)) {
			t.Fatalf("%q stripped to %q: more than the member and one comma changed", b, out)
		}
		// Every other member is still there, in order, byte for byte.
		var before, after [][]byte
		for _, pair := range []struct {
			doc []byte
			to  *[][]byte
		}{{b, &before}, {out, &after}} {
			it, _ := newObjIter(pair.doc, 0)
			for {
				m, ok, err := it.next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				if pair.to == &before && m.keyStart == g.flag.keyStart {
					continue
				}
				*pair.to = append(*pair.to, pair.doc[m.keyStart:m.valEnd])
			}
		}
		if len(before) != len(after) {
			t.Fatalf("%d members kept, want %d", len(after), len(before))
		}
		for i := range before {
			if !bytes.Equal(before[i], after[i]) {
				t.Fatalf("member %d changed: %q -> %q", i, before[i], after[i])
			}
		}
	})
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{
		"/api/v3/connected_accounts/link", "//api/v3//connected_accounts/./link", "/api/v3.1/connected_accounts/link/",
		"/api/v3/x/../connected_accounts/link", "/api/v3/connected_accounts/%6Cink", "/api/v3%2Fconnected_accounts",
		"/api/v3.12/tool_router/session/abc", "api/v3", "/../..", "/%zz", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		route, prefix := Classify("POST", p)
		c, ok := canonicalPath(p)
		if !ok {
			if route != reqscope.RoutePassthrough {
				t.Fatalf("undecodable path %q matched %s", p, route)
			}
			return
		}
		if c == "" || c[0] != '/' || strings.Contains(c, "//") || (len(c) > 1 && strings.HasSuffix(c, "/")) {
			t.Fatalf("canonical %q of %q is not clean", c, p)
		}
		for seg := range strings.SplitSeq(c, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("canonical %q of %q keeps a dot segment", c, p)
			}
		}
		if strings.IndexByte(c, '%') < 0 {
			if again, _ := canonicalPath(c); again != c {
				t.Fatalf("not idempotent: %q -> %q -> %q", p, c, again)
			}
			if r2, p2 := Classify("POST", c); r2 != route || p2 != prefix {
				t.Fatalf("%q is %s %s but its canonical form %q is %s %s", p, route, prefix, c, r2, p2)
			}
		}
		if route != reqscope.RoutePassthrough && !strings.HasPrefix(prefix, "/api/v3") {
			t.Fatalf("route %s with prefix %q", route, prefix)
		}
	})
}

var sessionSeeds = []string{
	`{"user_id":"u"}`, `{}`, ` { } `, `{"workbench":{}}`, `{"workbench":{ }}`, `{"workbench":null}`,
	`{"user_id":"u","workbench":{"enable":true},"manage_connections":{"enable":true}}`,
	`{"workbench":{"sandbox_size":null,"enable":false}}`, `{"workbench":{"sandbox_size":"large"}}`,
	`{"workbench":{"sandbox\u005fsize":"xlarge"}}`, `{"work\u0062ench":{"enable":true}}`,
	`{"workbench":{"sandbox_size":"medium","SANDBOX_SIZE":"x"}}`, `{"workbench":"large"}`,
	"{\n \"toolkits\" : [\"a\",{\"workbench\":1}] ,\n \"workbench\" : { \"auto_offload_threshold\" : 2e4 }\n}\n",
	`[]`, ``, `{"workbench":{"sandbox_size":4}}`,
}

// The sandbox parser must never panic and must read workbench.sandbox_size
// as encoding/json does; inserting a default adds exactly that member, keeps
// every other byte, and yields JSON that reads as the original plus the tier.
func FuzzSandboxDefault(f *testing.F) {
	for _, s := range sessionSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ask, br := parseSandbox(b)
		if br != nil {
			return
		}
		var ref struct {
			Workbench *struct {
				SandboxSize *string `json:"sandbox_size"`
			} `json:"workbench"`
		}
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		want := ""
		if ref.Workbench != nil && ref.Workbench.SandboxSize != nil {
			want = *ref.Workbench.SandboxSize
		}
		if ask.size != want {
			t.Fatalf("parsed tier %q, encoding/json reads %q", ask.size, want)
		}
		if ask.size != "" {
			return
		}
		const tier = "medium"
		out := ask.withDefault(b, tier)
		if !json.Valid(out) {
			t.Fatalf("%q with the default is not JSON: %q", b, out)
		}
		if !bytes.Equal(out[:ask.at], b[:ask.at]) || !bytes.HasSuffix(out, b[ask.at+ask.cut:]) {
			t.Fatalf("%q -> %q: bytes around the insertion changed", b, out)
		}
		if removed := string(b[ask.at : ask.at+ask.cut]); removed != "" && removed != "null" {
			t.Fatalf("the insertion replaced %q; only a null may go", removed)
		}
		again, br := parseSandbox(out)
		if br != nil || again.size != tier {
			t.Fatalf("re-parse of %q: tier %q, %v", out, again.size, br)
		}
		var before, after map[string]any
		if err := json.Unmarshal(b, &before); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatal(err)
		}
		wb, _ := before["workbench"].(map[string]any)
		if wb == nil {
			wb = map[string]any{}
		}
		wb["sandbox_size"] = tier
		before["workbench"] = wb
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%q -> %q reads %v, want %v", b, out, after, before)
		}
	})
}
