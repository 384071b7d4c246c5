package history

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/inflight"
	"github.com/changecast/changecast/schema/wire"
)

// Authorizer lets callers in as app negotiate does; *hub.Negotiator is one.
type Authorizer interface {
	Authorize(r *http.Request, hub string) (hub.Caller, error)
	Refuse(w http.ResponseWriter, err error)
}

// Handler serves GET {negotiate.path}/changes: a stream's envelopes after
// an offset.
type Handler struct {
	Store Store
	Auth  Authorizer
	// Hubs maps the lower-cased hub names callers use (as Authorize
	// returns them) to the names mappings use, which name the streams.
	Hubs map[string]string
	// MaxLimit bounds ?limit=; default 1000.
	MaxLimit int
	// Reads bounds the requests each caller has in flight (429 with
	// Retry-After over it); share one with the snapshot handler. Nil: no
	// bound.
	Reads  *inflight.Limiter
	Logger *slog.Logger
}

// ServeHTTP answers GET …/changes?hub=H(&group=G|&user=me)&epoch=E&after=N[&limit=L]:
// {"epoch":E,"envelopes":[…],"more":bool}, the envelopes with offsets after
// N, oldest first; or 410 {"error":"resync","epoch":E2} when the epoch is
// not the stream's or its history no longer reaches N+1. The caller may
// read a group its claims grant, its own user stream, or the hub-wide
// stream, as negotiate and snapshots allow.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	caller, err := h.Auth.Authorize(r, q.Get("hub"))
	if err != nil {
		h.Auth.Refuse(w, err)
		return
	}
	if h.Reads != nil {
		release, ok := h.Reads.Acquire(inflight.Key(r, caller))
		if !ok {
			inflight.Refuse(w)
			return
		}
		defer release()
	}
	a := publish.Audience{Hub: caller.Hub}
	if name, ok := h.Hubs[caller.Hub]; ok {
		a.Hub = name
	}
	switch g, u := q.Get("group"), q.Get("user"); {
	case g != "" && u != "":
		writeError(w, http.StatusBadRequest, "give group= or user=me, not both")
		return
	case g != "":
		if !slices.Contains(caller.Groups, g) {
			h.Auth.Refuse(w, &hub.AuthError{Status: http.StatusForbidden, Code: "Error.Forbidden", Msg: "that group is not granted to you"})
			return
		}
		a.Group = g
	case u != "":
		if u != "me" || caller.Anonymous {
			h.Auth.Refuse(w, &hub.AuthError{Status: http.StatusForbidden, Code: "Error.Forbidden", Msg: "only user=me, with a token"})
			return
		}
		a.User = caller.User
	}
	after, err := strconv.ParseUint(q.Get("after"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "after must be an offset (a non-negative integer)")
		return
	}
	maxLimit := h.MaxLimit
	if maxLimit <= 0 {
		maxLimit = 1000
	}
	limit := maxLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = min(n, maxLimit)
	}
	epoch := q.Get("epoch")
	envs, more, err := h.Store.Read(r.Context(), Stream(a), epoch, after, limit)
	var resync *ResyncError
	switch {
	case errors.As(err, &resync):
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusGone)
		b := append([]byte(`{"error":"resync","epoch":`), wire.AppendString(nil, resync.Epoch)...)
		w.Write(append(b, "}\n"...))
		return
	case err != nil:
		if r.Context().Err() == nil && h.Logger != nil {
			h.Logger.Error("changes: history read failed", "err", err)
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the history cannot be read now; retry")
		return
	}
	// The envelopes are written as stored, with no copy into one buffer:
	// a client catching up after a long absence reads megabytes, and many
	// reconnect at once after a network blip.
	head := append([]byte(`{"epoch":`), wire.AppendString(nil, epoch)...)
	head = append(head, `,"envelopes":[`...)
	tail := []byte(`],"more":` + strconv.FormatBool(more) + "}\n")
	size := len(head) + len(tail) + max(len(envs)-1, 0)
	for _, e := range envs {
		size += len(e)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(size))
	bufs := make(net.Buffers, 0, 2*len(envs)+2)
	bufs = append(bufs, head)
	for i, e := range envs {
		if i > 0 {
			bufs = append(bufs, comma)
		}
		bufs = append(bufs, e)
	}
	bufs = append(bufs, tail)
	bufs.WriteTo(w)
}

var comma = []byte{','}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
