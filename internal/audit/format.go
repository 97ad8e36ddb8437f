package audit

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// Output formats.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// Summary is the closing summary, the "summary" member of the JSON output.
type Summary struct {
	Complete          bool    `json:"complete"`
	Incomplete        string  `json:"incomplete,omitempty"`
	AccountsScanned   int     `json:"accounts_scanned"`
	TotalItems        int64   `json:"total_items"` // -1: Composio never said
	Pages             int     `json:"pages"`
	Groups            int     `json:"groups"`
	DuplicateGroups   int     `json:"duplicate_groups"`
	AccountsBeyond    int     `json:"accounts_beyond_first"`
	Seconds           float64 `json:"seconds"`
	IncludeInitiated  bool    `json:"include_initiated"`
	PendingTTLSeconds float64 `json:"pending_ttl_seconds"`
}

// SummaryOf is the summary of rep under the given filter and TTL.
func SummaryOf(rep *Report, f Filter, ttl time.Duration) Summary {
	return Summary{
		Complete: rep.Complete, Incomplete: rep.Incomplete,
		AccountsScanned: rep.Scanned, TotalItems: rep.TotalItems, Pages: rep.Pages,
		Groups: rep.Totals.Groups, DuplicateGroups: rep.Totals.DuplicateGroups, AccountsBeyond: rep.Totals.Beyond,
		Seconds: rep.Duration.Seconds(), IncludeInitiated: f.IncludeInitiated, PendingTTLSeconds: ttl.Seconds(),
	}
}

// WriteJSON writes {"groups":[one record per duplicate group], "summary":{...}}.
func WriteJSON(w io.Writer, groups []Group, s Summary) error {
	if groups == nil {
		groups = []Group{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Groups  []Group `json:"groups"`
		Summary Summary `json:"summary"`
	}{groups, s})
}

// CSVHeader is the CSV output's header row.
var CSVHeader = []string{"user_id", "auth_config_id", "toolkit", "account_type", "count", "account_ids", "statuses", "created_at"}

// WriteCSV writes one row per duplicate group; account_ids, statuses and
// created_at list the group's accounts oldest first, joined by ';'.
func WriteCSV(w io.Writer, groups []Group) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, g := range groups {
		ids, sts, cts := make([]string, len(g.Accounts)), make([]string, len(g.Accounts)), make([]string, len(g.Accounts))
		for i, a := range g.Accounts {
			ids[i], sts[i], cts[i] = a.ID, a.Status, stampNano(a.CreatedAt)
		}
		// Cells are the ids as listed, but for control characters (a user
		// id made around the proxy could carry a terminal escape): '?', as
		// in the table. JSON keeps every byte. encoding/csv quotes the rest.
		row := []string{g.UserID, g.AuthConfigID, g.Toolkit, g.AccountType, strconv.Itoa(g.Count),
			strings.Join(ids, ";"), strings.Join(sts, ";"), strings.Join(cts, ";")}
		for i := range row {
			row[i] = printable(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

func stampNano(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// printable replaces control characters (a terminal escape in an id) with '?'.
func printable(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// WriteTable writes the readable table: one group per block, its accounts
// oldest first, one a line.
func WriteTable(w io.Writer, groups []Group) error {
	if len(groups) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tAUTH CONFIG\tTOOLKIT\tTYPE\tCOUNT\tACCOUNT\tSTATUS\tCREATED AT")
	for _, g := range groups {
		for i, a := range g.Accounts {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t", printable(g.UserID), printable(g.AuthConfigID), printable(g.Toolkit), g.AccountType, g.Count)
			} else {
				fmt.Fprint(tw, "\t\t\t\t\t")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(a.ID), a.Status, stamp(a.CreatedAt))
		}
	}
	return tw.Flush()
}

// WriteSummary writes the closing summary as text.
func WriteSummary(w io.Writer, s Summary) {
	total := "not reported"
	if s.TotalItems >= 0 {
		total = strconv.FormatInt(s.TotalItems, 10)
	}
	rules := "ACTIVE accounts only (--include-initiated also counts pending links)"
	if s.IncludeInitiated {
		rules = fmt.Sprintf("ACTIVE and INITIATED accounts younger than %s", time.Duration(s.PendingTTLSeconds*float64(time.Second)))
	}
	fmt.Fprintf(w, "\naccounts scanned: %d (Composio's total_items: %s) in %d pages\n", s.AccountsScanned, total, s.Pages)
	fmt.Fprintf(w, "counted: %s\n", rules)
	fmt.Fprintf(w, "groups (user, auth config, account type): %d\n", s.Groups)
	fmt.Fprintf(w, "duplicate groups: %d\n", s.DuplicateGroups)
	fmt.Fprintf(w, "accounts beyond the first: %d\n", s.AccountsBeyond)
	fmt.Fprintf(w, "time: %s\n", (time.Duration(s.Seconds * float64(time.Second))).Round(time.Millisecond))
	switch {
	case !s.Complete:
		fmt.Fprintf(w, "result: INCOMPLETE (exit 2), this does not show the project is clean: %s\n", printable(s.Incomplete))
	case s.DuplicateGroups > 0:
		fmt.Fprintln(w, "result: duplicates found (exit 1)")
	default:
		fmt.Fprintln(w, "result: no duplicates (exit 0)")
	}
}
