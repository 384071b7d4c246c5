package history

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/changecast/changecast/publish/hub"
)

// member lets every caller in as user u of group g, on the hub asked for.
type member struct{}

func (member) Authorize(r *http.Request, h string) (hub.Caller, error) {
	if h == "" {
		return hub.Caller{}, &hub.AuthError{Status: http.StatusBadRequest, Code: "Error.BadRequest", Msg: "hub= is required"}
	}
	return hub.Caller{Hub: h, User: "u", Groups: []string{"g"}}, nil
}

func (member) Refuse(w http.ResponseWriter, err error) {
	status := http.StatusForbidden
	if ae, ok := err.(*hub.AuthError); ok {
		status = ae.Status
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": "refused"})
}

// FuzzChangesRequest: any query of GET /changes is answered with one of
// the endpoint's statuses and a JSON body; a 200 holds at most limit
// envelopes, each the stream's, in offset order.
func FuzzChangesRequest(f *testing.F) {
	store := NewMemory(Limits{})
	var epoch string
	for i := range 30 {
		e, err := store.Append(context.Background(), "h/g/g", []byte(`{"source":"t","hub":"h","group":"g"`),
			[]byte(fmt.Sprintf(`,"changes":[{"op":"upsert","collection":"c","id":"%d","v":"%d","doc":{}}]}`, i, i)))
		if err != nil {
			f.Fatal(err)
		}
		epoch = e.Epoch
	}
	h := &Handler{Store: store, Auth: member{}, MaxLimit: 10}
	for _, q := range []string{
		"hub=h&group=g&epoch=" + epoch + "&after=0", "hub=h&group=g&epoch=" + epoch + "&after=25&limit=3",
		"hub=h&group=g&epoch=old&after=0", "hub=h&user=me&epoch=x&after=0", "hub=h&group=g&user=me",
		"hub=h&group=other&after=1", "hub=h&after=-1", "hub=h&after=18446744073709551616", "hub=h&group=g&epoch=" + epoch + "&after=0&limit=0",
		"hub=h&group=g&epoch=" + epoch + "&after=0&limit=99999999999999999999", "hub=%zz", "",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		req := httptest.NewRequest("GET", "/changes", nil)
		req.URL.RawQuery = rawQuery
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !slices.Contains([]int{200, 400, 403, 410}, rec.Code) {
			t.Fatalf("%q: status %d %s", rawQuery, rec.Code, rec.Body)
		}
		var body struct {
			Epoch     string            `json:"epoch"`
			Envelopes []json.RawMessage `json:"envelopes"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%q: %d, not JSON: %v %s", rawQuery, rec.Code, err, rec.Body)
		}
		if rec.Code != 200 {
			return
		}
		q, _ := url.ParseQuery(rawQuery)
		if len(body.Envelopes) > 10 || body.Epoch != q.Get("epoch") {
			t.Fatalf("%q: %d envelopes of epoch %q", rawQuery, len(body.Envelopes), body.Epoch)
		}
		last := uint64(0)
		for _, e := range body.Envelopes {
			var env struct {
				Group  string `json:"group"`
				Offset uint64 `json:"offset"`
			}
			if err := json.Unmarshal(e, &env); err != nil || env.Group != "g" || env.Offset <= last {
				t.Fatalf("%q: envelope %s after offset %d", rawQuery, e, last)
			}
			last = env.Offset
		}
	})
}
