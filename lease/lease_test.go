package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/leasetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryStore(t *testing.T) {
	leasetest.TestStore(t, func(*testing.T) lease.Store { return lease.NewMemoryStore() })
}

func TestManagerOnMemoryStore(t *testing.T) {
	leasetest.TestManager(t, func(*testing.T) lease.Store { return lease.NewMemoryStore() })
}

// The JSON form must stay readable by .NET/Java tooling (cosmos.md §3.1).
func TestLeaseDocument(t *testing.T) {
	l := lease.ForRange("orders-to-hubacct_db1_coll1", "05C1D9CD673398", "0BFFFFFFFFFFFFF")
	l.Owner = "pod-0"
	l.Continuation = `"1526353662"`
	l.Timestamp = time.Date(2026, 8, 1, 20, 43, 54, 947629400, time.UTC)
	l.Mode = lease.ModeIncremental
	l.ETag = `"00000000-0000"`
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"orders-to-hubacct_db1_coll1..05C1D9CD673398-0BFFFFFFFFFFFFF","version":1,` +
		`"LeaseToken":"05C1D9CD673398-0BFFFFFFFFFFFFF","FeedRange":{"Range":{"min":"05C1D9CD673398","max":"0BFFFFFFFFFFFFF"}},` +
		`"Owner":"pod-0","ContinuationToken":"\"1526353662\"","timestamp":"2026-08-01T20:43:54.9476294Z",` +
		`"properties":{},"Mode":"Incremental Feed","_etag":"\"00000000-0000\""}`
	if string(b) != want {
		t.Fatalf("document\n got %s\nwant %s", b, want)
	}
	var back lease.Lease
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	l.Properties = map[string]string{}
	if fmt.Sprintf("%+v", back) != fmt.Sprintf("%+v", *l) {
		t.Fatalf("round trip\n got %+v\nwant %+v", back, *l)
	}

	// Timestamps keep at most 7 fractional digits (.NET's DateTime
	// precision), truncated, never more.
	l.Timestamp = time.Date(2026, 8, 1, 20, 43, 54, 123456789, time.UTC)
	b, _ = json.Marshal(l)
	if !strings.Contains(string(b), `"timestamp":"2026-08-01T20:43:54.1234567Z"`) {
		t.Fatalf("timestamp with 9 digits written as %s", b)
	}
	l.Timestamp = time.Date(2026, 8, 1, 20, 43, 54, 0, time.UTC)
	b, _ = json.Marshal(l)
	if !strings.Contains(string(b), `"timestamp":"2026-08-01T20:43:54Z"`) {
		t.Fatalf("whole-second timestamp written as %s", b)
	}

	// A fresh lease has null Owner and ContinuationToken, as .NET writes.
	b, _ = json.Marshal(lease.ForPartition("p", "3"))
	if want := `{"id":"p..3","version":0,"LeaseToken":"3","FeedRange":{"PKRangeId":"3"},"Owner":null,"ContinuationToken":null,"properties":{}}`; string(b) != want {
		t.Fatalf("document\n got %s\nwant %s", b, want)
	}
}

func TestLeaseDocumentFromDotNet(t *testing.T) {
	// A version 0 lease without FeedRange and with only _ts, as older .NET
	// processors wrote them.
	doc := `{"id":"p..3","version":0,"LeaseToken":"3","Owner":null,"ContinuationToken":"\"17\"","properties":{"a":"b"},"_etag":"\"e\"","_ts":1700000000}`
	var l lease.Lease
	if err := json.Unmarshal([]byte(doc), &l); err != nil {
		t.Fatal(err)
	}
	if l.Range.Partition != "3" || l.Continuation != `"17"` || l.Owner != "" || l.ETag != `"e"` ||
		!l.Timestamp.Equal(time.Unix(1700000000, 0)) || l.Properties["a"] != "b" || l.Prefix() != "p" {
		t.Fatalf("decoded %+v", l)
	}
}

func TestErrorPredicates(t *testing.T) {
	conflict := &lease.ConflictError{Op: "renew", ID: "p..1", Reason: lease.ReasonChanged}
	lost := &lease.LostError{Op: "renew", ID: "p..1", Owner: "b"}
	for _, tc := range []struct {
		err            error
		conflict, lost bool
	}{
		{conflict, true, false},
		{lost, true, true},
		{fmt.Errorf("wrapped: %w", lost), true, true},
		{&lease.LostError{Err: conflict}, true, true},
		{errors.New("network"), false, false},
		{nil, false, false},
	} {
		if got := lease.IsConflict(tc.err); got != tc.conflict {
			t.Errorf("IsConflict(%v) = %v", tc.err, got)
		}
		if got := lease.IsLost(tc.err); got != tc.lost {
			t.Errorf("IsLost(%v) = %v", tc.err, got)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	w := lease.WorkerFunc(func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error { return nil })
	for _, cfg := range []lease.Config{
		{Prefix: "p", Worker: w},
		{Store: lease.NewMemoryStore(), Prefix: "p"},
		{Store: lease.NewMemoryStore(), Worker: w},
		{Store: lease.NewMemoryStore(), Prefix: "p", Worker: w, RenewInterval: time.Minute},
	} {
		if _, err := lease.NewManager(cfg); err == nil {
			t.Errorf("NewManager(%+v) accepted", cfg)
		}
	}
	m, err := lease.NewManager(lease.Config{Store: lease.NewMemoryStore(), Prefix: "p", Worker: w})
	if err != nil || m.Owner() == "" {
		t.Fatalf("NewManager: %v, owner %q", err, m.Owner())
	}
}
