package composiotest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// serveControl answers the /_fake/ control API (see the package doc).
func (f *Fake) serveControl(w http.ResponseWriter, r *http.Request) {
	seg := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/_fake"), "/"), "/")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		return
	}
	route := r.Method + " " + seg[0]
	switch {
	case route == "GET accounts" && len(seg) == 1:
		writeJSON(w, http.StatusOK, f.Accounts(r.URL.Query().Get("credential")))
	case route == "POST accounts" && len(seg) == 1:
		var a Account
		if err := json.Unmarshal(body, &a); err != nil {
			controlError(w, http.StatusBadRequest, "account: "+err.Error())
			return
		}
		if a.Status != "" && !validStatuses[a.Status] {
			controlError(w, http.StatusBadRequest, "account: unknown status "+a.Status)
			return
		}
		writeJSON(w, http.StatusCreated, f.AddAccount(a))
	case route == "POST accounts" && len(seg) == 2 && seg[1] == "bulk":
		var sd Seed
		if err := json.Unmarshal(body, &sd); err != nil {
			controlError(w, http.StatusBadRequest, "seed: "+err.Error())
			return
		}
		n, err := f.Seed(sd)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, map[string]int{"added": n})
	case route == "DELETE accounts" && len(seg) == 1:
		f.ClearAccounts()
		w.WriteHeader(http.StatusNoContent)
	case route == "POST accounts" && len(seg) == 3 && seg[2] == "status":
		var in struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			controlError(w, http.StatusBadRequest, "status: "+err.Error())
			return
		}
		if !validStatuses[in.Status] {
			controlError(w, http.StatusBadRequest, "unknown status "+in.Status)
			return
		}
		a, err := f.SetStatus(seg[1], in.Status)
		if err != nil {
			controlError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, a)
	case route == "GET requests" && len(seg) == 1:
		q := r.URL.Query()
		out := f.RequestsFor(q.Get("method"), q.Get("route"))
		if out == nil {
			out = []Request{}
		}
		writeJSON(w, http.StatusOK, out)
	case route == "DELETE requests" && len(seg) == 1:
		f.Reset()
		w.WriteHeader(http.StatusNoContent)
	case route == "GET counts" && len(seg) == 1:
		writeJSON(w, http.StatusOK, f.Counts())
	case route == "PUT faults" && len(seg) == 2:
		var fl Fault
		if err := json.Unmarshal(body, &fl); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := f.SetFault(seg[1], fl); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case route == "DELETE faults" && len(seg) == 1:
		f.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case route == "DELETE faults" && len(seg) == 2:
		f.ClearFault(seg[1])
		w.WriteHeader(http.StatusNoContent)
	case route == "GET sessions" && len(seg) == 1:
		writeJSON(w, http.StatusOK, f.Sessions())
	case route == "POST sessions" && len(seg) == 1:
		var seed SessionSeed
		if err := json.Unmarshal(body, &seed); err != nil {
			controlError(w, http.StatusBadRequest, "session: "+err.Error())
			return
		}
		s, err := f.AddSession(seed)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, s)
	case route == "POST reset" && len(seg) == 1:
		f.ResetAll()
		w.WriteHeader(http.StatusNoContent)
	default:
		controlError(w, http.StatusNotFound, "no control route "+r.Method+" "+r.URL.Path)
	}
}

func controlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
