package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// GUARD_SHUTDOWN_GRACE=5s alone starts the proxy: the drain delay's
// default gives way, and the start line says so.
func TestStartLineNamesAdjustedSettings(t *testing.T) {
	for k, v := range map[string]string{
		"GUARD_LISTEN_ADDR": "127.0.0.1:0", "GUARD_ADMIN_ADDR": "127.0.0.1:0",
		"GUARD_UPSTREAM_URL": "http://127.0.0.1:9", "GUARD_SHUTDOWN_GRACE": "5s",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve nothing: start, drain (the derived 1s), stop
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if err := run(ctx, options{stdout: &stdout, stderr: &stderr}); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("stopping took %s: the drain delay was not derived from the 5s grace", d)
	}
	var found bool
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		var line struct {
			Msg    string   `json:"msg"`
			Notes  []string `json:"notes"`
			Config string   `json:"config"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "starting" {
			continue
		}
		found = true
		if len(line.Notes) != 1 || !strings.HasPrefix(line.Notes[0], "GUARD_DRAIN_DELAY lowered from its default 5s to 1s") {
			t.Errorf("start line notes %q", line.Notes)
		}
		if !strings.Contains(line.Config, "GUARD_SHUTDOWN_GRACE=5s GUARD_DRAIN_DELAY=1s") {
			t.Errorf("start line config %q", line.Config)
		}
	}
	if !found {
		t.Fatalf("no start line:\n%s", stderr.String())
	}
}

// A setting the others leave without effect starts the proxy, with a WARN
// line that names it and never its value.
func TestStartWarnsSettingsWithoutEffect(t *testing.T) {
	for k, v := range map[string]string{
		"GUARD_LISTEN_ADDR": "127.0.0.1:0", "GUARD_ADMIN_ADDR": "127.0.0.1:0",
		"GUARD_UPSTREAM_URL": "http://127.0.0.1:9", "GUARD_DRAIN_DELAY": "0s", "GUARD_SHUTDOWN_GRACE": "1s",
		"GUARD_AUDIT_API_KEY": "sk_audit_SECRETVALUE",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, options{stdout: &stdout, stderr: &stderr}); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "SECRETVALUE") {
		t.Fatalf("the log holds the audit key:\n%s", stderr.String())
	}
	var warned bool
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		var line struct {
			Level   string `json:"level"`
			Msg     string `json:"msg"`
			Warning string `json:"warning"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "setting without effect" {
			warned = line.Level == "warn" && strings.HasPrefix(line.Warning, "GUARD_AUDIT_API_KEY has no effect: the periodic audit is off")
		}
	}
	if !warned {
		t.Fatalf("no WARN line names GUARD_AUDIT_API_KEY as without effect:\n%s", stderr.String())
	}
}
