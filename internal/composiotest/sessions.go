package composiotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Sandbox sizes of the Tool Router workbench; standard is the server default.
var sandboxSizes = []string{"standard", "medium", "large", "xlarge"}

// Session is a Tool Router session as the fake keeps it.
type Session struct {
	ID         string `json:"id"`
	Credential string `json:"credential"`
	UserID     string `json:"user_id"`
	// SandboxSize is the workbench.sandbox_size in force; "" when the session
	// has no override (the server default, standard).
	SandboxSize   string          `json:"sandbox_size"`
	ConfigVersion int             `json:"config_version"`
	Updates       int             `json:"updates"`
	CreateBody    json.RawMessage `json:"create_body"`
	LastBody      json.RawMessage `json:"last_body"` // of the create or the last update
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

type session struct {
	Session
	config map[string]json.RawMessage // body members in force, user_id aside
	seq    int64
}

// Sessions returns every Tool Router session, oldest first.
func (f *Fake) Sessions() []Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := make([]*session, 0, len(f.sessions))
	for _, s := range f.sessions {
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b *session) int { return int(a.seq - b.seq) })
	out := make([]Session, 0, len(all))
	for _, s := range all {
		out = append(out, s.Session)
	}
	return out
}

// GetSession returns one session by id.
func (f *Fake) GetSession(id string) (Session, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return Session{}, false
	}
	return s.Session, true
}

// sandboxOf validates the config's workbench and returns its sandbox size
// ("" when none is set).
func sandboxOf(config map[string]json.RawMessage) (string, bool) {
	wb, ok := objectMember(config, "workbench")
	if !ok {
		return "", false
	}
	size, ok := stringMember(wb, "sandbox_size")
	if !ok || (size != "" && !slices.Contains(sandboxSizes, size)) {
		return "", false
	}
	return size, true
}

func (f *Fake) handleSessionCreate(w http.ResponseWriter, r *http.Request, project string, body []byte) {
	m, ok := decodeObject(w, r, body)
	if !ok {
		return
	}
	_, out, msg := f.createSession(project, "", body, m)
	if msg != "" {
		badRequest(w, r, msg)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// createSession stores a session made from a create body (m is body
// decoded) under id, or a fresh id when id is "", and returns it with its
// answer; msg says why the body is refused.
func (f *Fake) createSession(project, id string, body []byte, m map[string]json.RawMessage) (stored Session, out map[string]any, msg string) {
	user, okU := stringMember(m, "user_id")
	if !okU || user == "" {
		return Session{}, nil, "user_id is required and must be a string"
	}
	delete(m, "user_id")
	size, ok := sandboxOf(m)
	if !ok {
		return Session{}, nil, "workbench must be an object and workbench.sandbox_size one of standard, medium, large, xlarge"
	}
	if id == "" {
		id = newID("trs_")
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	s := &session{
		Session: Session{
			ID: id, Credential: project, UserID: user, SandboxSize: size, ConfigVersion: 1,
			CreateBody: slices.Clone(body), LastBody: slices.Clone(body), CreatedAt: now, UpdatedAt: now,
		},
		config: m,
		seq:    f.seq,
	}
	f.sessions[s.ID] = s
	return s.Session, renderSession(s), ""
}

// SessionSeed is a Tool Router session a test puts in place as if a client
// had created it: its id (fresh when empty), its project (credential) and
// the create body it was made with (user_id required).
type SessionSeed struct {
	ID         string          `json:"id"`
	Credential string          `json:"credential"`
	CreateBody json.RawMessage `json:"create_body"`
}

// AddSession stores a seeded session (replacing one of the same id) and
// returns it.
func (f *Fake) AddSession(seed SessionSeed) (Session, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(seed.CreateBody, &m); err != nil || m == nil {
		return Session{}, fmt.Errorf("session: create_body must be a JSON object")
	}
	s, _, msg := f.createSession(seed.Credential, seed.ID, seed.CreateBody, m)
	if msg != "" {
		return Session{}, fmt.Errorf("session: %s", msg)
	}
	return s, nil
}

func sessionNotFound(w http.ResponseWriter, r *http.Request, id string) {
	writeError(w, r, http.StatusNotFound, CodeNotFound, "ToolRouter_SessionNotFound",
		"Tool router session "+id+" not found", "Check the session id.")
}

func (f *Fake) handleSessionUpdate(w http.ResponseWriter, r *http.Request, project, id string, body []byte) {
	m, ok := decodeObject(w, r, body)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, found := f.sessions[id]
	if !found || s.Credential != project {
		sessionNotFound(w, r, id)
		return
	}
	// Top-level members replace what is there; null clears (workbench: null
	// drops the sandbox override).
	next := make(map[string]json.RawMessage, len(s.config))
	for k, v := range s.config {
		next[k] = v
	}
	for k, v := range m {
		if k == "user_id" {
			continue
		}
		if string(v) == "null" {
			delete(next, k)
		} else {
			next[k] = v
		}
	}
	size, ok := sandboxOf(next)
	if !ok {
		badRequest(w, r, "workbench must be an object and workbench.sandbox_size one of standard, medium, large, xlarge")
		return
	}
	s.config = next
	s.SandboxSize = size
	s.ConfigVersion++
	s.Updates++
	s.LastBody = slices.Clone(body)
	s.UpdatedAt = f.now()
	writeJSON(w, http.StatusOK, renderSession(s))
}

func (f *Fake) handleSessionGet(w http.ResponseWriter, r *http.Request, project, id string) {
	f.mu.Lock()
	s, found := f.sessions[id]
	var out map[string]any
	if found && s.Credential == project {
		out = renderSession(s)
	}
	f.mu.Unlock()
	if out == nil {
		sessionNotFound(w, r, id)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleSessionLink is session.authorize(toolkit): a link for the session's
// user on the auth config the session pins for the toolkit, or one named
// after the toolkit.
func (f *Fake) handleSessionLink(w http.ResponseWriter, r *http.Request, project, id string, body []byte) {
	m, ok := decodeObject(w, r, body)
	if !ok {
		return
	}
	toolkit, okT := stringMember(m, "toolkit")
	cb, okCB := stringMember(m, "callback_url")
	if !okT || toolkit == "" || !okCB {
		badRequest(w, r, "toolkit is required and must be a string")
		return
	}
	f.mu.Lock()
	s, found := f.sessions[id]
	if !found || s.Credential != project {
		f.mu.Unlock()
		sessionNotFound(w, r, id)
		return
	}
	token := newID("lt_")
	redirect := "https://connect.fake-composio.test/link/" + token
	// The session's pinned auth config for the toolkit, else a default one
	// named after it (Composio's managed default).
	ac := "ac_" + toolkit
	if pinned, _ := objectMember(s.config, "auth_configs"); pinned != nil {
		if id, ok := stringMember(pinned, toolkit); ok && id != "" {
			ac = id
		}
	}
	a := f.addLocked(Account{
		Credential: project, UserID: s.UserID, AuthConfigID: ac, Toolkit: toolkit,
		CallbackURL: cb, RedirectURL: redirect,
	}, StatusInitiated)
	f.mu.Unlock()
	// The real answer carries no expires_at (the link lives about LinkTTL).
	writeJSON(w, http.StatusCreated, map[string]any{
		"link_token":           token,
		"redirect_url":         redirect,
		"connected_account_id": a.ID,
	})
}

// renderSession builds the session answer: a superset of what the create
// (0.8.x) and patch (0.21.x) parsers read: session_id, mcp, tool_router_tools,
// config, config_version, experimental.
func renderSession(s *session) map[string]any {
	cfg := map[string]any{
		"user_id": s.UserID,
		"execute": map[string]any{},
		"preload": map[string]any{"tools": []string{}},
		"search":  map[string]any{},
	}
	for _, k := range []string{"auth_configs", "connected_accounts", "multi_account", "tags", "tools"} {
		if v, ok := s.config[k]; ok {
			cfg[k] = v
		}
	}
	if tk, ok := s.config["toolkits"]; ok {
		cfg["toolkits"] = renderToolkits(tk)
	}
	if mc, ok := objectMember(s.config, "manage_connections"); ok && mc != nil {
		out := map[string]any{}
		if v, ok := mc["enable"]; ok {
			out["enabled"] = v
		}
		if v, ok := mc["callback_url"]; ok {
			out["callback_url"] = v
		}
		cfg["manage_connections"] = out
	}
	wb := map[string]any{"sandbox_size": "standard"}
	if s.SandboxSize != "" {
		wb["sandbox_size"] = s.SandboxSize
	}
	if in, _ := objectMember(s.config, "workbench"); in != nil {
		if v, ok := in["enable"]; ok {
			wb["enable"] = v
		}
		if v, ok := in["enable_proxy_execution"]; ok {
			wb["proxy_execution_enabled"] = v
		}
		if v, ok := in["auto_offload_threshold"]; ok {
			wb["auto_offload_threshold"] = v
		}
	}
	cfg["workbench"] = wb
	return map[string]any{
		"session_id": s.ID,
		"mcp":        map[string]any{"type": "http", "url": "https://backend.fake-composio.test/tool_router/" + s.ID + "/mcp"},
		"tool_router_tools": []string{
			"COMPOSIO_SEARCH_TOOLS", "COMPOSIO_MULTI_EXECUTE_TOOL", "COMPOSIO_MANAGE_CONNECTIONS",
			"COMPOSIO_REMOTE_WORKBENCH", "COMPOSIO_REMOTE_BASH_TOOL",
		},
		"config":         cfg,
		"config_version": s.ConfigVersion,
		"experimental":   map[string]any{"assistive_prompt": "You are connected to a fake Composio Tool Router session."},
	}
}

// renderToolkits turns the request forms (a list, {enable}, {disable}) into
// the answer's {enabled} / {disabled}.
func renderToolkits(raw json.RawMessage) any {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return map[string]any{"enabled": list}
	}
	var obj struct {
		Enable  []string `json:"enable"`
		Disable []string `json:"disable"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		if obj.Disable != nil {
			return map[string]any{"disabled": obj.Disable}
		}
		if obj.Enable != nil {
			return map[string]any{"enabled": obj.Enable}
		}
	}
	return raw
}
