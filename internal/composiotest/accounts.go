package composiotest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Connected-account statuses (REVOKED exists on v3.1 only).
const (
	StatusInitializing = "INITIALIZING"
	StatusInitiated    = "INITIATED"
	StatusActive       = "ACTIVE"
	StatusFailed       = "FAILED"
	StatusExpired      = "EXPIRED"
	StatusInactive     = "INACTIVE"
	StatusRevoked      = "REVOKED"
)

var validStatuses = map[string]bool{
	StatusInitializing: true, StatusInitiated: true, StatusActive: true, StatusFailed: true,
	StatusExpired: true, StatusInactive: true, StatusRevoked: true,
}

// Account types (v3.1 experimental.account_type and list account_type).
const (
	AccountPrivate = "PRIVATE"
	AccountShared  = "SHARED"
)

// Account is one connected account as the fake stores it.
type Account struct {
	ID string `json:"id"`
	// Credential is the project the account lives in: see ProjectOf (for an
	// x-api-key caller, the key itself).
	Credential   string    `json:"credential"`
	UserID       string    `json:"user_id"`
	AuthConfigID string    `json:"auth_config_id"`
	Toolkit      string    `json:"toolkit"`
	Status       string    `json:"status"`
	AccountType  string    `json:"account_type"`
	Alias        string    `json:"alias,omitempty"`
	CallbackURL  string    `json:"callback_url,omitempty"`
	RedirectURL  string    `json:"redirect_url,omitempty"`
	Disabled     bool      `json:"is_disabled"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`

	seq  int64
	gone bool // removed or replaced: skipped in Fake.order
}

// AddAccount stores a, filling in what is missing: an id, status ACTIVE,
// account type PRIVATE, the toolkit of its auth config, the timestamps. It
// returns the stored account.
func (f *Fake) AddAccount(a Account) Account {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addLocked(a, StatusActive)
}

func (f *Fake) addLocked(a Account, defaultStatus string) Account {
	now := f.now()
	if a.ID == "" {
		a.ID = newID("ca_")
	}
	if a.Status == "" {
		a.Status = defaultStatus
	}
	if a.AccountType == "" {
		a.AccountType = AccountPrivate
	}
	if a.Toolkit == "" {
		a.Toolkit = f.toolkitOf(a.AuthConfigID)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.CreatedAt
	}
	f.seq++
	a.seq = f.seq
	stored := a
	f.storeLocked(&stored)
	return a
}

// storeLocked stores a (whose seq is the newest) in the map and at the end
// of the list order, replacing an account with the same id.
func (f *Fake) storeLocked(a *Account) {
	if old := f.accounts[a.ID]; old != nil {
		old.gone = true
		f.gone++
	}
	f.accounts[a.ID] = a
	f.order = append(f.order, a)
	f.compactLocked()
}

// removeLocked removes the account id; false if there was none.
func (f *Fake) removeLocked(id string) bool {
	a := f.accounts[id]
	if a == nil {
		return false
	}
	a.gone = true
	f.gone++
	delete(f.accounts, id)
	f.compactLocked()
	return true
}

// compactLocked drops removed accounts from the list order once they are
// half of it.
func (f *Fake) compactLocked() {
	if f.gone < 1024 || f.gone*2 < len(f.order) {
		return
	}
	kept := f.order[:0]
	for _, a := range f.order {
		if !a.gone {
			kept = append(kept, a)
		}
	}
	clear(f.order[len(kept):])
	f.order, f.gone = kept, 0
}

// clearAccountsLocked forgets every account.
func (f *Fake) clearAccountsLocked() {
	f.accounts = map[string]*Account{}
	f.order, f.gone = nil, 0
}

func (f *Fake) toolkitOf(authConfigID string) string {
	if s, ok := f.toolkits[authConfigID]; ok {
		return s
	}
	return f.defaultToolkit
}

// Accounts returns the accounts of one project (every project when credential
// is ""), oldest first.
func (f *Fake) Accounts(credential string) []Account {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []Account{}
	for _, a := range f.accounts {
		if credential == "" || a.Credential == credential {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b Account) int { return int(a.seq - b.seq) })
	return out
}

// Account returns one account by id.
func (f *Fake) Account(id string) (Account, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[id]
	if !ok {
		return Account{}, false
	}
	return *a, true
}

// SetStatus changes an account's status.
func (f *Fake) SetStatus(id, status string) (Account, error) {
	if !validStatuses[status] {
		return Account{}, fmt.Errorf("composiotest: unknown status %q", status)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[id]
	if !ok {
		return Account{}, fmt.Errorf("composiotest: no account %q", id)
	}
	a.Status = status
	a.UpdatedAt = f.now()
	return *a, nil
}

// Complete finishes the OAuth of an INITIATED account: it becomes ACTIVE.
func (f *Fake) Complete(id string) error {
	f.mu.Lock()
	a, ok := f.accounts[id]
	var status string
	if ok {
		status = a.Status
	}
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("composiotest: no account %q", id)
	}
	if status != StatusInitiated {
		return fmt.Errorf("composiotest: account %q is %s, not INITIATED", id, status)
	}
	_, err := f.SetStatus(id, StatusActive)
	return err
}

// DeleteAccount removes an account; false if there was none.
func (f *Fake) DeleteAccount(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removeLocked(id)
}

// ClearAccounts removes every account.
func (f *Fake) ClearAccounts() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clearAccountsLocked()
}

// CountStatus counts one project's accounts of a user on an auth config that
// have the given status, whatever their account type.
func (f *Fake) CountStatus(credential, userID, authConfigID, status string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.accounts {
		if a.Credential == credential && a.UserID == userID && a.AuthConfigID == authConfigID && a.Status == status {
			n++
		}
	}
	return n
}

// CountActive counts one project's ACTIVE accounts of a user on an auth config.
func (f *Fake) CountActive(credential, userID, authConfigID string) int {
	return f.CountStatus(credential, userID, authConfigID, StatusActive)
}

// CountInitiated counts one project's INITIATED accounts of a user on an auth config.
func (f *Fake) CountInitiated(credential, userID, authConfigID string) int {
	return f.CountStatus(credential, userID, authConfigID, StatusInitiated)
}

// item renders an account as the API's list and get items. Every TS SDK
// version reads auth_config.id unconditionally, so auth_config is always there.
func item(a *Account) map[string]any {
	state := map[string]any{"status": a.Status}
	switch a.Status {
	case StatusInitiated:
		state["redirectUrl"] = a.RedirectURL
		if a.RedirectURL == "" {
			state["redirectUrl"] = "https://connect.fake-composio.test/link/lt_seeded"
		}
	case StatusActive, StatusInactive:
		// A placeholder: the SDK's OAuth2 schema wants a string here.
		state["access_token"] = "fake-access-token"
	}
	var reason any
	if a.Disabled {
		reason = "disabled by test"
	}
	return map[string]any{
		"id":            a.ID,
		"user_id":       a.UserID,
		"status":        a.Status,
		"status_reason": reason,
		"is_disabled":   a.Disabled,
		"account_type":  a.AccountType,
		"auth_config": map[string]any{
			"id":                  a.AuthConfigID,
			"auth_scheme":         "OAUTH2",
			"is_composio_managed": true,
			"is_disabled":         false,
		},
		"toolkit":    map[string]any{"slug": a.Toolkit},
		"state":      map[string]any{"authScheme": "OAUTH2", "val": state},
		"data":       map[string]any{},
		"params":     map[string]any{},
		"created_at": timestamp(a.CreatedAt),
		"updated_at": timestamp(a.UpdatedAt),
	}
}

// listFilter reads one array filter. Only a single, comma-joined parameter
// counts: that is how every SDK encodes arrays.
func listFilter(q url.Values, key string) []string {
	vs := q[key]
	if len(vs) != 1 || vs[0] == "" {
		return nil
	}
	var out []string
	for _, v := range strings.Split(vs[0], ",") {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// handleList answers the list call. nullAfter > 0 plays the pagination
// quirk: next_cursor is null once a page ends at or past nullAfter items.
func (f *Fake) handleList(w http.ResponseWriter, r *http.Request, project string, nullAfter int) {
	if strings.HasPrefix(project, "scoped_nolist_") {
		writeError(w, r, http.StatusForbidden, CodeForbidden, SlugForbidden,
			"This API key is not allowed to list connected accounts.", "Use a key with the connected_accounts:read scope.")
		return
	}
	q := r.URL.Query()
	users := listFilter(q, "user_ids")
	configs := listFilter(q, "auth_config_ids")
	statuses := listFilter(q, "statuses")
	toolkits := listFilter(q, "toolkit_slugs")
	ids := listFilter(q, "connected_account_ids")
	for _, s := range statuses {
		if !validStatuses[s] {
			writeError(w, r, http.StatusBadRequest, CodeBadRequest, SlugBadRequest,
				"Invalid status "+strconv.Quote(s), "Use one of INITIALIZING, INITIATED, ACTIVE, FAILED, EXPIRED, INACTIVE, REVOKED.")
			return
		}
	}
	types := map[string]bool{AccountPrivate: true}
	switch at := q.Get("account_type"); at {
	case "", AccountPrivate:
	case AccountShared:
		types = map[string]bool{AccountShared: true}
	case "ALL":
		types = map[string]bool{AccountPrivate: true, AccountShared: true}
	default:
		writeError(w, r, http.StatusBadRequest, CodeBadRequest, SlugBadRequest,
			"Invalid account_type "+strconv.Quote(at), "Use PRIVATE, SHARED or ALL.")
		return
	}
	limit := f.pageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseFloat(s, 64) // the generated clients type it as a number
		if err != nil || n < 1 || n != float64(int(n)) {
			writeError(w, r, http.StatusBadRequest, CodeBadRequest, SlugBadRequest,
				"Invalid limit "+strconv.Quote(s), "limit is a positive integer.")
			return
		}
		limit = min(int(n), MaxPageSize)
	}
	asc := strings.EqualFold(q.Get("order_direction"), "asc")
	after := int64(0)
	if c := q.Get("cursor"); c != "" {
		seq, ok := decodeCursor(c)
		if !ok {
			writeError(w, r, http.StatusBadRequest, CodeBadRequest, SlugBadRequest,
				"Invalid cursor", "Pass next_cursor from the previous page unchanged.")
			return
		}
		after = seq
	}
	in := func(list []string, v string) bool { return list == nil || slices.Contains(list, v) }

	// One pass over the accounts in seq order (newest first unless asc),
	// with no sort: a listing of 100,000 accounts costs O(N) a page.
	f.mu.Lock()
	total, before := 0, 0
	page := make([]*Account, 0, min(limit, 1024))
	for i := range f.order {
		a := f.order[i]
		if !asc {
			a = f.order[len(f.order)-1-i]
		}
		if a.gone || a.Credential != project || !types[a.AccountType] || !in(users, a.UserID) || !in(configs, a.AuthConfigID) ||
			!in(statuses, a.Status) || !in(toolkits, a.Toolkit) || !in(ids, a.ID) {
			continue
		}
		total++
		switch {
		case after != 0 && (asc && a.seq <= after || !asc && a.seq >= after):
			before++ // on an earlier page
		case len(page) < limit:
			page = append(page, a)
		}
	}
	items := make([]map[string]any, 0, len(page))
	for _, a := range page {
		items = append(items, item(a))
	}
	var next any
	if before+len(page) < total && len(page) > 0 && (nullAfter == 0 || before+len(page) < nullAfter) {
		next = encodeCursor(page[len(page)-1].seq)
	}
	f.mu.Unlock()

	writeJSON(w, http.StatusOK, map[string]any{
		"items":        items,
		"next_cursor":  next,
		"total_pages":  max((total+limit-1)/limit, 1),
		"current_page": before/limit + 1,
		"total_items":  total,
	})
}

// A cursor names the last item of the previous page; opaque to clients.
func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("after:" + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), "after:") {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(string(b), "after:"), 10, 64)
	return n, err == nil && n > 0
}

// decodeObject parses a JSON object body, answering 400 itself when it is not one.
func decodeObject(w http.ResponseWriter, r *http.Request, body []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		writeError(w, r, http.StatusBadRequest, CodeBadRequest, SlugBadRequest,
			"Request body must be a JSON object", "Send application/json.")
		return nil, false
	}
	return m, true
}

// stringMember reads an optional string member; ok is false when it is there
// but not a string.
func stringMember(m map[string]json.RawMessage, key string) (string, bool) {
	raw, present := m[key]
	if !present || string(raw) == "null" {
		return "", true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func objectMember(m map[string]json.RawMessage, key string) (map[string]json.RawMessage, bool) {
	raw, present := m[key]
	if !present || string(raw) == "null" {
		return nil, true
	}
	var o map[string]json.RawMessage
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, false
	}
	return o, true
}

func badRequest(w http.ResponseWriter, r *http.Request, msg string) {
	writeError(w, r, http.StatusBadRequest, CodeBadRequest, SlugBadRequest, msg, "Fix the request body.", msg)
}

func (f *Fake) handleLink(w http.ResponseWriter, r *http.Request, project string, body []byte) {
	m, ok := decodeObject(w, r, body)
	if !ok {
		return
	}
	user, okU := stringMember(m, "user_id")
	cfg, okC := stringMember(m, "auth_config_id")
	cb, okCB := stringMember(m, "callback_url")
	alias, okA := stringMember(m, "alias")
	exp, okE := objectMember(m, "experimental")
	at, okT := stringMember(exp, "account_type")
	switch {
	case !okU || user == "":
		badRequest(w, r, "user_id is required and must be a string")
		return
	case !okC || cfg == "":
		badRequest(w, r, "auth_config_id is required and must be a string")
		return
	case !okCB || !okA || !okE || !okT:
		badRequest(w, r, "callback_url, alias and experimental.account_type must be strings")
		return
	case at != "" && at != AccountPrivate && at != AccountShared:
		badRequest(w, r, "experimental.account_type must be PRIVATE or SHARED")
		return
	}
	token := newID("lt_")
	redirect := "https://connect.fake-composio.test/link/" + token
	f.mu.Lock()
	a := f.addLocked(Account{
		Credential: project, UserID: user, AuthConfigID: cfg, AccountType: at,
		Alias: alias, CallbackURL: cb, RedirectURL: redirect,
	}, StatusInitiated)
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"link_token":           token,
		"redirect_url":         redirect,
		"expires_at":           a.CreatedAt.Add(LinkTTL).UTC().Format(time.RFC3339),
		"connected_account_id": a.ID,
	})
}

func (f *Fake) handleCreate(w http.ResponseWriter, r *http.Request, project string, body []byte) {
	m, ok := decodeObject(w, r, body)
	if !ok {
		return
	}
	ac, okAC := objectMember(m, "auth_config")
	cfg, okID := stringMember(ac, "id")
	conn, okConn := objectMember(m, "connection")
	user, okU := stringMember(conn, "user_id")
	cb, okCB := stringMember(conn, "callback_url")
	switch {
	case !okAC || !okID || cfg == "":
		badRequest(w, r, "auth_config.id is required and must be a string")
		return
	case !okConn || !okU || !okCB:
		badRequest(w, r, "connection must be an object; connection.user_id and connection.callback_url strings")
		return
	}
	if f.managedOAuth[cfg] {
		writeError(w, r, http.StatusBadRequest, CodeBadRequest, SlugBadRequest,
			"Creating connected accounts for Composio-managed OAuth auth configs is no longer supported. Use POST /api/v3/connected_accounts/link instead.",
			"Use POST /api/v3/connected_accounts/link instead.")
		return
	}
	if user == "" {
		user = "default"
	}
	redirect := "https://connect.fake-composio.test/link/" + newID("lt_")
	f.mu.Lock()
	a := f.addLocked(Account{
		Credential: project, UserID: user, AuthConfigID: cfg, CallbackURL: cb, RedirectURL: redirect,
	}, StatusInitiated)
	f.mu.Unlock()
	// The shape of the legacy answer: the TS SDK reads connectionData.val
	// (status, redirectUrl); older clients read the top-level members.
	val := map[string]any{"status": a.Status, "redirectUrl": redirect}
	if cb != "" {
		val["callbackUrl"] = cb
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"id":             a.ID,
		"connectionData": map[string]any{"authScheme": "OAUTH2", "val": val},
		"status":         a.Status,
		"redirect_url":   redirect,
		"redirect_uri":   redirect,
		"deprecated":     map[string]any{"uuid": newUUID(), "authConfigUuid": newUUID()},
	})
}

func (f *Fake) lookup(project, id string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[id]
	if !ok || a.Credential != project {
		return nil, false
	}
	return item(a), true
}

func accountNotFound(w http.ResponseWriter, r *http.Request, id string) {
	writeError(w, r, http.StatusNotFound, CodeNotFound, "ConnectedAccount_NotFound",
		"Connected account "+id+" not found", "Check the connected account id.")
}

func (f *Fake) handleGet(w http.ResponseWriter, r *http.Request, project, id string) {
	it, ok := f.lookup(project, id)
	if !ok {
		accountNotFound(w, r, id)
		return
	}
	writeJSON(w, http.StatusOK, it)
}

func (f *Fake) handleDelete(w http.ResponseWriter, r *http.Request, project, id string) {
	f.mu.Lock()
	a, ok := f.accounts[id]
	if ok && a.Credential == project {
		f.removeLocked(id)
	} else {
		ok = false
	}
	f.mu.Unlock()
	if !ok {
		accountNotFound(w, r, id)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}
