package signalr_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/signalr"
)

// Item 2: ids are escaped whole, so a user id holding a path cannot add
// another user to another group, and the intended join happens.
func TestIDsCannotInjectRoutes(t *testing.T) {
	h := startHub(t)
	c, err := signalr.NewClient(h.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, evil := range []string{":evil/groups/admins?x=", ":evil/groups/admins#", "a b/../../groups/admins", ":send", "%2F", "?"} {
		if err := c.AddUserToGroup(ctx, "chat", "intended", evil, 0); err != nil {
			t.Fatalf("%q: %v", evil, err)
		}
		if in, err := c.UserInGroup(ctx, "chat", "intended", evil); err != nil || !in {
			t.Errorf("%q not in the intended group: %v %v", evil, in, err)
		}
	}
	for _, user := range []string{":evil", "a b"} {
		if in, err := c.UserInGroup(ctx, "chat", "admins", user); err != nil || in {
			t.Errorf("%q got into admins: %v %v", user, in, err)
		}
	}
	// Groups and the send paths too.
	if err := c.AddUserToGroup(ctx, "chat", ":send/x?y#z", "u", 0); err != nil {
		t.Fatal(err)
	}
	if in, err := c.UserInGroup(ctx, "chat", ":send/x?y#z", "u"); err != nil || !in {
		t.Fatalf("group with a path: %v %v", in, err)
	}
	if err := c.Send(ctx, publish.Audience{Hub: "chat", User: "../../x", Method: "m"}); err != nil {
		t.Fatalf("send to a user with dots: %v", err)
	}
	// An empty id would address another route: refused without a call.
	if err := c.AddUserToGroup(ctx, "chat", "g", "", 0); !publish.IsPermanent(err) {
		t.Fatalf("empty user: %v", err)
	}
}

// Item 10: a 2xx other than the one a call defines is an error (the call
// did something else), not a success.
func TestUnexpectedSuccessStatusIsAnError(t *testing.T) {
	const key = "fake-key-0123456789-0123456789-0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	c, err := signalr.NewClient("Endpoint=" + srv.URL + ";AccessKey=" + key + ";Version=1.0;")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"send (202)":            c.Send(ctx, publish.Audience{Hub: "h", Method: "m"}),
		"remove user (204)":     c.RemoveUserFromGroup(ctx, "h", "g", "u"),
		"remove from all (204)": c.RemoveUserFromAllGroups(ctx, "h", "u"),
	} {
		var se *signalr.StatusError
		if !errors.As(err, &se) || se.Status != 200 || !publish.IsPermanent(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := c.AddUserToGroup(ctx, "h", "g", "u", 0); err != nil {
		t.Errorf("add user, 200 as defined: %v", err)
	}
}

// Item 10: AddUserToGroup sends the TTL (whole seconds, rounded up), and
// none for "no expiry", since ttl=0 means "open connections only".
func TestAddUserToGroupSendsTTL(t *testing.T) {
	const key = "fake-key-0123456789-0123456789-0123456789"
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		q := r.URL.Query()
		if _, ok := q["ttl"]; ok {
			got = append(got, q.Get("ttl"))
		} else {
			got = append(got, "none")
		}
	}))
	defer srv.Close()
	c, _ := signalr.NewClient("Endpoint=" + srv.URL + ";AccessKey=" + key + ";Version=1.0;")
	for _, ttl := range []time.Duration{0, 1500 * time.Millisecond, time.Minute} {
		if err := c.AddUserToGroup(context.Background(), "h", "g", "u", ttl); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"none", "2", "60"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("ttl sent %v, want %v", got, want)
	}
	// Against the built-in hub the TTL holds.
	h := startHub(t)
	hc, _ := signalr.NewClient(h.ConnectionString())
	ctx := context.Background()
	if err := hc.AddUserToGroup(ctx, "chat", "g", "brief", time.Second); err != nil {
		t.Fatal(err)
	}
	if in, _ := hc.UserInGroup(ctx, "chat", "g", "brief"); !in {
		t.Fatal("not added")
	}
	testkit.Until(t, 10*time.Second, "the membership to expire", func() bool {
		in, err := hc.UserInGroup(ctx, "chat", "g", "brief")
		return err == nil && !in
	})
}
