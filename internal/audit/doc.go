// Package audit owns the audit of existing duplicate connected accounts:
// the scan of one Composio project (paging GET <prefix>/connected_accounts
// at the largest page, checking the count against total_items, following
// Retry-After and slowing as X-RateLimit-Remaining runs low), the grouping
// by (user, auth config, account type) with the guard's own id folding
// (lock.Key) and the duplicate rules, the outputs (table, JSON, CSV) and
// exit codes of `composio-guard audit` (Main), and the proxy's periodic
// audit (Periodic, Settings: GUARD_AUDIT_*), which runs one audit at a time
// through the lock store with its own HTTP client and exports
// composio_guard_audit_* metrics.
//
// It is read only: it lists accounts and never changes or deletes one.
// It reads list answers with the proxy's one JSON reader (internal/jsonread)
// and keeps a compact record per account, never the raw JSON. See
// docs/audit.md.
package audit
