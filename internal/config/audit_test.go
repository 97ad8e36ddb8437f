package config

import (
	"strings"
	"testing"
	"time"
)

// TestAuditSettings: off by default; on with an interval and its own key,
// which String masks and no error names.
func TestAuditSettings(t *testing.T) {
	c, err := LoadFrom(map[string]string{})
	if err != nil || c.Audit.Enabled() || c.Audit.AuditMaxRate != 1 || c.Audit.AuditAPIPrefix != "/api/v3.1" {
		t.Fatalf("defaults: %+v %v", c.Audit, err)
	}
	if s := c.String(); !strings.Contains(s, "GUARD_AUDIT_INTERVAL=0s") || !strings.Contains(s, "GUARD_AUDIT_API_KEY= ") {
		t.Errorf("String() without the audit settings: %s", s)
	}
	c, err = LoadFrom(map[string]string{"GUARD_AUDIT_INTERVAL": "1h", "GUARD_AUDIT_API_KEY": " sk_live_hunter2 ", "GUARD_AUDIT_MAX_RATE": "0.5"})
	if err != nil || !c.Audit.Enabled() || c.Audit.AuditInterval != time.Hour || c.Audit.AuditAPIKey != "sk_live_hunter2" ||
		c.Audit.Timeout() != time.Hour || c.Audit.AuditMaxRate != 0.5 {
		t.Fatalf("on: %+v %v", c.Audit, err)
	}
	if s := c.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "GUARD_AUDIT_API_KEY=xxxxx") {
		t.Errorf("String() does not mask the audit key: %s", s)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"GUARD_AUDIT_INTERVAL": "1h"}, "GUARD_AUDIT_API_KEY: is required"},
		{map[string]string{"GUARD_AUDIT_INTERVAL": "10ms", "GUARD_AUDIT_API_KEY": "hunter2"}, "GUARD_AUDIT_INTERVAL: must be 0 (off) or at least 1s"},
		{map[string]string{"GUARD_AUDIT_INTERVAL": "-1h", "GUARD_AUDIT_API_KEY": "hunter2"}, "GUARD_AUDIT_INTERVAL"},
		{map[string]string{"GUARD_AUDIT_MAX_RATE": "0"}, "GUARD_AUDIT_MAX_RATE"},
		{map[string]string{"GUARD_AUDIT_MAX_RATE": "1000"}, "GUARD_AUDIT_MAX_RATE"},
		{map[string]string{"GUARD_AUDIT_MIN_REMAINING": "-1"}, "GUARD_AUDIT_MIN_REMAINING"},
		{map[string]string{"GUARD_AUDIT_TIMEOUT": "-1s"}, "GUARD_AUDIT_TIMEOUT"},
		{map[string]string{"GUARD_AUDIT_API_PREFIX": "/api/v2"}, "GUARD_AUDIT_API_PREFIX"},
		{map[string]string{"GUARD_AUDIT_INTERVAL": "soon", "GUARD_AUDIT_API_KEY": "hunter2"}, "GUARD_AUDIT_INTERVAL: cannot parse"},
	} {
		_, err := LoadFrom(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: want an error with %q (and no key), got %v", tc.env, tc.want, err)
		}
	}
}
