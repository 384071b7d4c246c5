package cosmos

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// AdminHandler serves the emulator's control routes. They are not part of
// the Cosmos DB protocol and are not authenticated, so only expose them on
// a loopback listener:
//
//	POST /_admin/split?db=D&coll=C&range=ID     → {"children":["1","2"]}
//	POST /_admin/merge?db=D&coll=C&left=A&right=B → {"merged":"3"}
//	POST /_admin/fail?status=429&count=N[&kind=K,…][&retryAfterMs=M][&subStatus=S][&delayMs=D]
//	GET  /_admin/pkranges?db=D&coll=C           → current ranges
//	GET  /_admin/stats                          → request counters by kind
//	POST /_admin/containers?db=D&coll=C[&pk=/path][&partitions=N]
//
// Handler serves these routes too when WithAdminRoutes(true) is set.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	q := func(r *http.Request, k string) string { return r.URL.Query().Get(k) }
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", contentTypeJSON)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /_admin/split", func(w http.ResponseWriter, r *http.Request) {
		ids, err := s.Split(q(r, "db"), q(r, "coll"), q(r, "range"))
		reply(w, map[string]any{"children": ids}, err)
	})
	mux.HandleFunc("POST /_admin/merge", func(w http.ResponseWriter, r *http.Request) {
		id, err := s.Merge(q(r, "db"), q(r, "coll"), q(r, "left"), q(r, "right"))
		reply(w, map[string]any{"merged": id}, err)
	})
	mux.HandleFunc("GET /_admin/pkranges", func(w http.ResponseWriter, r *http.Request) {
		rs, err := s.PartitionKeyRanges(q(r, "db"), q(r, "coll"))
		reply(w, rs, err)
	})
	mux.HandleFunc("GET /_admin/stats", func(w http.ResponseWriter, r *http.Request) {
		reply(w, s.Counts(), nil)
	})
	mux.HandleFunc("POST /_admin/containers", func(w http.ResponseWriter, r *http.Request) {
		spec := ContainerSpec{Partitions: atoiOr(q(r, "partitions"), 0)}
		if pk := q(r, "pk"); pk != "" {
			spec.PartitionKeyPaths = strings.Split(pk, ",")
		}
		reply(w, map[string]string{"created": q(r, "db") + "/" + q(r, "coll")}, s.CreateContainer(q(r, "db"), q(r, "coll"), spec))
	})
	mux.HandleFunc("POST /_admin/fail", func(w http.ResponseWriter, r *http.Request) {
		f := Fault{Status: atoiOr(q(r, "status"), 0), Count: atoiOr(q(r, "count"), 1),
			SubStatus:  atoiOr(q(r, "subStatus"), 0),
			RetryAfter: time.Duration(atoiOr(q(r, "retryAfterMs"), 0)) * time.Millisecond,
			Delay:      time.Duration(atoiOr(q(r, "delayMs"), 0)) * time.Millisecond,
			Database:   q(r, "db"), Container: q(r, "coll")}
		if k := q(r, "kind"); k != "" {
			for _, x := range strings.Split(k, ",") {
				f.Kinds = append(f.Kinds, Kind(x))
			}
		}
		if f.Status == http.StatusTooManyRequests && f.RetryAfter == 0 {
			f.RetryAfter = 10 * time.Millisecond
		}
		s.Inject(f)
		reply(w, map[string]string{"queued": strconv.Itoa(f.Count)}, nil)
	})
	return mux
}
