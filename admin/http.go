package admin

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"

	"github.com/changecast/changecast/schema/config"
)

// Handler serves the operations over HTTP for the config cfg of the running
// worker, behind Authorization: Bearer token, as JSON:
//
//	GET  /admin/leases[?lag=false]               → LeaseReport
//	POST /admin/checkpoint/reset?to=…            → Reset
//	POST /admin/checkpoint/reset?resnapshot=true → Reset (PostgreSQL)
//	GET  /admin/status[?lag=false]               → Status (with a Monitor)
//
// A refused argument is 400, a failure 500, both {"error": "..."}.
func Handler(token string, cfg *config.Config, mon *Monitor) http.Handler {
	mux := http.NewServeMux()
	if mon != nil {
		mux.HandleFunc("GET /admin/status", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, CurrentStatus(r.Context(), cfg, mon, LeasesOptions{NoLag: r.URL.Query().Get("lag") == "false"}))
		})
	}
	mux.HandleFunc("GET /admin/leases", func(w http.ResponseWriter, r *http.Request) {
		rep, err := Leases(r.Context(), cfg, LeasesOptions{NoLag: r.URL.Query().Get("lag") == "false"})
		reply(w, rep, err)
	})
	mux.HandleFunc("POST /admin/checkpoint/reset", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		res, err := ResetCheckpoint(r.Context(), cfg, ResetOptions{To: q.Get("to"), Resnapshot: q.Get("resnapshot") == "true"})
		reply(w, res, err)
	})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="changecast admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case IsArgError(err):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
