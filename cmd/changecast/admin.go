package main

import (
	"bytes"
	"crypto/subtle"
	"net/http"
	"strings"
)

// adminHandler serves the admin API: what `changecast leases list` and
// `changecast checkpoint reset` do, over HTTP, behind a bearer token.
//
//	GET  /admin/leases
//	POST /admin/checkpoint/reset?to=beginning|now|<time>|<lsn>
//
// Answers are the commands' own text; a refused argument is 400, a failure
// 500. The commands read the same config file as the worker.
func adminHandler(token, cfgPath string) http.Handler {
	mux := http.NewServeMux()
	run := func(w http.ResponseWriter, r *http.Request, cmd func(args []string, out, errw *bytes.Buffer) int, args ...string) {
		var out, errb bytes.Buffer
		switch code := cmd(args, &out, &errb); code {
		case 0:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(out.Bytes())
		case 2:
			http.Error(w, strings.TrimSpace(errb.String()), http.StatusBadRequest)
		default:
			http.Error(w, strings.TrimSpace(errb.String()), http.StatusInternalServerError)
		}
	}
	mux.HandleFunc("GET /admin/leases", func(w http.ResponseWriter, r *http.Request) {
		run(w, r, func(args []string, out, errw *bytes.Buffer) int { return cmdLeases(r.Context(), args, out, errw) },
			"list", "-c", cfgPath)
	})
	mux.HandleFunc("POST /admin/checkpoint/reset", func(w http.ResponseWriter, r *http.Request) {
		run(w, r, func(args []string, out, errw *bytes.Buffer) int { return cmdCheckpoint(r.Context(), args, out, errw) },
			"reset", "-c", cfgPath, "--to", r.URL.Query().Get("to"))
	})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="changecast admin"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
