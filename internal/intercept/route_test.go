package intercept_test

import (
	"testing"

	"github.com/composio-guard/composio-guard/internal/intercept"
	"github.com/composio-guard/composio-guard/internal/reqscope"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		method, path  string
		route, prefix string
	}{
		{"POST", "/api/v3/connected_accounts/link", reqscope.RouteLink, "/api/v3"},
		{"POST", "/api/v3.1/connected_accounts/link/", reqscope.RouteLink, "/api/v3.1"},
		{"POST", "//api/v3//connected_accounts/./link", reqscope.RouteLink, "/api/v3"},
		{"POST", "/api/v3.7/connected_accounts", reqscope.RouteCreate, "/api/v3.7"},
		{"POST", "/API/V3.1/CONNECTED_ACCOUNTS", reqscope.RouteCreate, "/api/v3.1"},
		{"POST", "/api/v3/a/b/../../connected_accounts%2Flink", reqscope.RouteLink, "/api/v3"},
		{"POST", "/api/v3.1/tool_router/session", reqscope.RouteSessionCreate, "/api/v3.1"},
		{"POST", "/api/v3/tool_router/session/", reqscope.RouteSessionCreate, "/api/v3"},
		{"PATCH", "/api/v3.1/tool_router/session/trs_1", reqscope.RouteSessionUpdate, "/api/v3.1"},
		{"PATCH", "/api/v3.1/tool_router/sessions/trs_1", reqscope.RouteSessionUpdate, "/api/v3.1"},
		{"PATCH", "/api/v3.1/tool_router/session", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v3.1/tool_router/session/trs_1", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v3.1/tool_router/session/trs_1/link", reqscope.RouteSessionLink, "/api/v3.1"},
		{"POST", "/api/v3/tool_router/sessions/trs_1/LINK/", reqscope.RouteSessionLink, "/api/v3"},
		{"POST", "/api/v3.1/tool_router/session/trs_1/link/extra", reqscope.RoutePassthrough, ""},
		{"GET", "/api/v3.1/tool_router/session/trs_1/link", reqscope.RoutePassthrough, ""},
		{"PATCH", "/api/v3/connected_accounts/link", reqscope.RoutePassthrough, ""},
		{"GET", "/api/v3/connected_accounts", reqscope.RoutePassthrough, ""},
		{"post", "/api/v3/connected_accounts", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v3", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v3.", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v3.1a/connected_accounts", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v30/connected_accounts", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v2/connected_accounts", reqscope.RoutePassthrough, ""},
		{"POST", "/x/api/v3/connected_accounts", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v3/connected_accounts/ca_1", reqscope.RoutePassthrough, ""},
		{"POST", "/api/v3/%zz", reqscope.RoutePassthrough, ""},
	}
	for _, tc := range tests {
		route, prefix := intercept.Classify(tc.method, tc.path)
		if route != tc.route || prefix != tc.prefix {
			t.Errorf("Classify(%s %s) = %s %q, want %s %q", tc.method, tc.path, route, prefix, tc.route, tc.prefix)
		}
	}
}
