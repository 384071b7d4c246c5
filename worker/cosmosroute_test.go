package worker

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

// The routing index keeps the fields of the container's mappings' group
// and user templates and key pointers, once each, and none of another
// collection's.
func TestCosmosRouteFields(t *testing.T) {
	ms := []publish.Mapping{
		{Collection: "orders", Hub: "h", Group: "t-{/tenant}-{/region/code}"},
		{Collection: "orders", Hub: "h2", User: "{/owner}", Key: []string{"/tenant", "/id"}},
		{Collection: "other", Hub: "h", Group: "{/x}"},
	}
	ps, err := CosmosRouteFields(ms, "orders")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if want := []string{"/tenant", "/region/code", "/owner", "/id"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if ps, err := CosmosRouteFields([]publish.Mapping{{Collection: "orders", Hub: "h"}}, "orders"); err != nil || len(ps) != 0 {
		t.Fatalf("hub-wide mapping: %v %v", ps, err)
	}
	if _, err := CosmosRouteFields([]publish.Mapping{{Collection: "orders", Hub: "h", Key: []string{"id"}}}, "orders"); err == nil {
		t.Fatal("a key that is not a JSON Pointer was accepted")
	}
}

// routingIndex: false is said at start, once, at WARN; the default says
// nothing.
func TestWarnUnindexed(t *testing.T) {
	off := false
	for _, tc := range []struct {
		set  *bool
		want string
	}{{nil, ""}, {&off, "level=WARN msg=\"source.cosmos.routingIndex is false"}} {
		var buf bytes.Buffer
		warnUnindexed(&config.CosmosSource{Container: "orders", RoutingIndex: tc.set}, slog.New(slog.NewTextHandler(&buf, nil)))
		if got := buf.String(); tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("routingIndex %v: logged %q", tc.set, got)
		}
	}
}
