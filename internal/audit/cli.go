package audit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/composio-guard/composio-guard/internal/upstream"
)

// Exit codes of the audit command.
const (
	ExitClean      = 0 // the scan finished and found no duplicate
	ExitDuplicates = 1 // the scan finished and found duplicates
	ExitIncomplete = 2 // the scan could not finish (or bad usage): never clean
)

// Environment variables the command reads. The credential comes only from
// here, never from a flag.
const (
	EnvAPIKey     = "COMPOSIO_API_KEY"      // project key: x-api-key
	EnvUserAPIKey = "COMPOSIO_USER_API_KEY" // user key: x-user-api-key, with EnvOrgID / EnvProjectID
	EnvOrgAPIKey  = "COMPOSIO_ORG_API_KEY"  // org key: x-org-api-key, with EnvOrgID / EnvProjectID
	EnvOrgID      = "COMPOSIO_ORG_ID"
	EnvProjectID  = "COMPOSIO_PROJECT_ID"
	EnvUpstream   = "GUARD_UPSTREAM_URL"
	EnvPendingTTL = "GUARD_PENDING_MAX_TTL"
)

// CredentialFromEnv builds the credential headers from exactly one of the
// three key forms; the error never holds a value.
func CredentialFromEnv(getenv func(string) string) (http.Header, error) {
	key, user, org := strings.TrimSpace(getenv(EnvAPIKey)), strings.TrimSpace(getenv(EnvUserAPIKey)), strings.TrimSpace(getenv(EnvOrgAPIKey))
	n := 0
	for _, v := range []string{key, user, org} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("no credential: set %s (a project key), or %s with %s and %s, or %s with %s",
			EnvAPIKey, EnvUserAPIKey, EnvOrgID, EnvProjectID, EnvOrgAPIKey, EnvProjectID)
	case n > 1:
		return nil, fmt.Errorf("more than one credential is set (%s, %s, %s): Composio takes exactly one", EnvAPIKey, EnvUserAPIKey, EnvOrgAPIKey)
	}
	h := http.Header{}
	switch {
	case key != "":
		h.Set("X-Api-Key", key)
		return h, nil
	case user != "":
		h.Set("X-User-Api-Key", user)
	default:
		h.Set("X-Org-Api-Key", org)
	}
	if v := strings.TrimSpace(getenv(EnvOrgID)); v != "" {
		h.Set("X-Org-Id", v)
	}
	if v := strings.TrimSpace(getenv(EnvProjectID)); v != "" {
		h.Set("X-Project-Id", v)
	}
	if h.Get("X-Project-Id") == "" {
		return nil, fmt.Errorf("%s is required with a user or org key: it names the project to audit", EnvProjectID)
	}
	return h, nil
}

// Usage is the command's help text.
const Usage = `Usage: composio-guard audit [flags]

Scans one Composio project for duplicate connected accounts: the groups the
guard would have refused. Read only: it never changes or deletes an account.

Groups are (user, auth config, account type), ids folded as the guard folds
them (case and surrounding white space). A group is a duplicate when it holds
more than one ACTIVE account; with --include-initiated also an ACTIVE and an
INITIATED account, or more than one INITIATED account, counting an INITIATED
account only while it is younger than the pending TTL.

Credential (environment only, never a flag, never printed):
  COMPOSIO_API_KEY                       a project key (x-api-key)
  COMPOSIO_USER_API_KEY + COMPOSIO_ORG_ID + COMPOSIO_PROJECT_ID
  COMPOSIO_ORG_API_KEY + COMPOSIO_PROJECT_ID
Target: --base-url, else GUARD_UPSTREAM_URL, else https://backend.composio.dev.

Flags:
`

const usageExit = `
Exit codes:
  0  the scan finished: no duplicates
  1  the scan finished: duplicates found
  2  the audit could not finish (bad flags, no credential, Composio refused or
     failed, or fewer accounts read than total_items says): never a clean result
`

// listFlag collects comma-separated values from repeated flags.
type listFlag struct{ vals *[]string }

func (l listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l listFlag) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.vals = append(*l.vals, p)
		}
	}
	return nil
}

// quotedValue is a value the flag package quotes in its errors.
var quotedValue = regexp.MustCompile(`"[^"]*"`)

// Invocation is what Main needs from its process.
type Invocation struct {
	Args     []string
	Getenv   func(string) string // nil: os.Getenv
	Stdout   io.Writer
	Stderr   io.Writer
	Version  string
	Terminal bool // stderr is a terminal: show live progress
	Now      func() time.Time
}

// Main runs `composio-guard audit` and returns its exit code.
func Main(ctx context.Context, inv Invocation) int {
	getenv := inv.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	now := inv.Now
	if now == nil {
		now = time.Now
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(inv.Stderr, "composio-guard audit: "+format+"\n", a...)
		return ExitIncomplete
	}
	fs := flag.NewFlagSet("composio-guard audit", flag.ContinueOnError)
	fs.SetOutput(inv.Stderr)
	var f Filter
	format := fs.String("format", FormatTable, "output: table, json or csv (one record per duplicate group)")
	fs.Var(listFlag{&f.AuthConfigIDs}, "auth-config", "only these auth config ids (comma-separated, repeatable)")
	fs.Var(listFlag{&f.Toolkits}, "toolkit", "only these toolkit slugs (comma-separated, repeatable)")
	fs.Var(listFlag{&f.UserIDs}, "user", "only these user ids (comma-separated, repeatable)")
	fs.BoolVar(&f.IncludeInitiated, "include-initiated", false, "also list INITIATED accounts and apply the pending rules")
	since := fs.String("since", "", "report only duplicate groups with an account created at or after this time (RFC 3339, or a duration such as 24h meaning that long ago)")
	ttl := fs.Duration("pending-ttl", 0, "age past which an INITIATED account is an expired link (default: GUARD_PENDING_MAX_TTL, else 15m)")
	baseURL := fs.String("base-url", "", "Composio API base URL (default: GUARD_UPSTREAM_URL, else https://backend.composio.dev)")
	prefix := fs.String("api-prefix", "/api/v3.1", "API version prefix: /api/v3.1 (every account type) or /api/v3")
	pageSize := fs.Int("page-size", MaxPageSize, "accounts asked per page (1-1000)")
	retries := fs.Int("max-retries", DefaultMaxRetries, "retries of one page after 429, 5xx or a network failure (0-20)")
	fs.Usage = func() {
		fmt.Fprint(inv.Stderr, Usage)
		out := fs.Output()
		fs.SetOutput(inv.Stderr)
		fs.PrintDefaults()
		fs.SetOutput(out)
		fmt.Fprint(inv.Stderr, usageExit)
	}
	// The flag package's own errors quote the value given, which may be a
	// key given the wrong way: they are rewritten without it.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(inv.Args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitClean // -h: the usage was asked for
		}
		return fail("%s", quotedValue.ReplaceAllString(err.Error(), "(value not shown)"))
	}
	if fs.NArg() > 0 {
		// Not echoed: it may be a key given the wrong way.
		return fail("unexpected argument after the flags (the credential is read from the environment only, never from an argument; see -h)")
	}
	switch *format {
	case FormatTable, FormatJSON, FormatCSV:
	default:
		return fail("--format must be table, json or csv (the value given is not shown)")
	}
	for _, l := range [][]string{f.AuthConfigIDs, f.Toolkits, f.UserIDs} {
		for _, v := range l {
			if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return fail("an id must not hold control characters")
			}
		}
	}
	if *pageSize < 1 || *pageSize > MaxPageSize {
		return fail("--page-size must be between 1 and %d, got %d", MaxPageSize, *pageSize)
	}
	if *retries < 0 || *retries > 20 {
		return fail("--max-retries must be between 0 and 20, got %d", *retries)
	}
	if *prefix != "/api/v3" && *prefix != "/api/v3.1" {
		return fail("--api-prefix must be /api/v3.1 or /api/v3 (the value given is not shown)")
	}
	if *since != "" {
		t, err := parseSince(*since, now())
		if err != nil {
			return fail("--since: %v", err)
		}
		f.Since = t
	}
	pending := *ttl
	if pending == 0 {
		pending = DefaultPendingTTL
		if v := strings.TrimSpace(getenv(EnvPendingTTL)); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fail("%s must be a positive duration, got %q", EnvPendingTTL, printable(v))
			}
			pending = d
		}
	}
	if pending < 0 {
		return fail("--pending-ttl must be positive, got %s", pending)
	}
	base, err := target(*baseURL, getenv)
	if err != nil {
		return fail("%v", err)
	}
	cred, err := CredentialFromEnv(getenv)
	if err != nil {
		return fail("%v", err)
	}
	o := Options{
		BaseURL: base, APIPrefix: *prefix, Header: cred, UserAgent: "composio-guard-audit/" + inv.Version,
		PageSize: *pageSize, PendingTTL: pending, Filter: f, MaxRetries: *retries, Now: now,
		Warn: func(msg string) { fmt.Fprintf(inv.Stderr, "\r\033[Kwarning: %s\n", printable(msg)) },
	}
	if *retries == 0 {
		o.MaxRetries = -1
	}
	if !inv.Terminal {
		o.Warn = func(msg string) { fmt.Fprintf(inv.Stderr, "warning: %s\n", printable(msg)) }
	} else {
		o.Progress = func(p Progress) { fmt.Fprint(inv.Stderr, progressLine(p)) }
	}
	rep, runErr := Run(ctx, o)
	if inv.Terminal {
		fmt.Fprint(inv.Stderr, "\r\033[K")
	}
	sum := SummaryOf(rep, f, pending)
	var werr error
	switch *format {
	case FormatJSON:
		werr = WriteJSON(inv.Stdout, rep.Groups, sum)
		if !sum.Complete {
			fmt.Fprintf(inv.Stderr, "composio-guard audit: INCOMPLETE, a partial result: %s\n", printable(sum.Incomplete))
		}
	case FormatCSV:
		werr = WriteCSV(inv.Stdout, rep.Groups)
		WriteSummary(inv.Stderr, sum) // stdout stays pure CSV
	default:
		werr = WriteTable(inv.Stdout, rep.Groups)
		WriteSummary(inv.Stdout, sum)
	}
	if werr != nil {
		return fail("writing the output: %v", werr)
	}
	switch {
	case runErr != nil:
		return ExitIncomplete
	case sum.DuplicateGroups > 0:
		return ExitDuplicates
	}
	return ExitClean
}

// progressLine is the live line: pages, accounts (of total), rate.
func progressLine(p Progress) string {
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Scanned) / s
	}
	of := ""
	if p.Total > 0 {
		of = fmt.Sprintf(" of %d (%d%%)", p.Total, int64(p.Scanned)*100/p.Total)
	}
	return fmt.Sprintf("\r\033[Kscanning: %d pages, %d accounts%s, %.0f accounts/s", p.Pages, p.Scanned, of, rate)
}

// parseSince reads an RFC 3339 time, a date, or a duration back from now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("a duration must be positive, got %s", d)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want an RFC 3339 time (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration (24h); the value given is not shown")
}

// target is the API base URL: the flag, else GUARD_UPSTREAM_URL, else the
// proxy's default upstream, checked as the proxy checks its own.
func target(flagURL string, getenv func(string) string) (*url.URL, error) {
	raw, from := strings.TrimSpace(flagURL), "--base-url"
	if raw == "" {
		raw, from = strings.TrimSpace(getenv(EnvUpstream)), EnvUpstream
	}
	if raw == "" {
		raw = upstream.DefaultTransportSettings().URL
	}
	ts := upstream.DefaultTransportSettings()
	ts.URL = raw
	if err := ts.Validate(); err != nil {
		// The message names what is wrong, never the URL's user info.
		return nil, fmt.Errorf("%s: %s", from, strings.TrimPrefix(err.Error(), "GUARD_UPSTREAM_URL: "))
	}
	return ts.Base(), nil
}
