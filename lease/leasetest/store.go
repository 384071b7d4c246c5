// Package leasetest holds the contract suites every lease.Store must pass,
// and Manager scenarios that run on any Store.
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
)

// NewStore returns an empty store for one test; it registers its own
// cleanup.
type NewStore func(t *testing.T) lease.Store

// TestStore runs the Store contract against stores from newStore: CAS
// conflicts, expiry, steal, release, delete, list by prefix. Subtests run in
// parallel, each on a fresh store.
func TestStore(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s lease.Store)
	}{
		{"CreateAndList", testCreateAndList},
		{"CreateConflict", testCreateConflict},
		{"ListPrefixIsLiteral", testListPrefixIsLiteral},
		{"AcquireUnowned", testAcquireUnowned},
		{"AcquireStaleCopy", testAcquireStaleCopy},
		{"AcquireConcurrent", testAcquireConcurrent},
		{"AcquireLiveOwnerRefused", testAcquireLiveOwnerRefused},
		{"AcquireExpired", testAcquireExpired},
		{"AcquireOwnLease", testAcquireOwnLease},
		{"Steal", testSteal},
		{"Renew", testRenew},
		{"Checkpoint", testCheckpoint},
		{"Release", testRelease},
		{"Delete", testDelete},
		{"GoneLease", testGoneLease},
		{"NoETagReuseAfterRecreate", testNoETagReuse},
		{"CopiesAreNotShared", testCopiesAreNotShared},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustCreate(t *testing.T, s lease.Store, l *lease.Lease) *lease.Lease {
	t.Helper()
	n, err := s.Create(ctx(t), l)
	if err != nil {
		t.Fatalf("create %s: %v", l.ID, err)
	}
	return n
}

func mustAcquire(t *testing.T, s lease.Store, l *lease.Lease, owner string, opts lease.AcquireOptions) *lease.Lease {
	t.Helper()
	n, err := s.Acquire(ctx(t), l, owner, opts)
	if err != nil {
		t.Fatalf("acquire %s by %s: %v", l.ID, owner, err)
	}
	return n
}

func get(t *testing.T, s lease.Store, id string) *lease.Lease {
	t.Helper()
	ls, err := s.List(ctx(t), id)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	for _, l := range ls {
		if l.ID == id {
			return l
		}
	}
	return nil
}

// wantConflict fails unless err is a conflict, and a loss exactly when lost.
func wantConflict(t *testing.T, what string, err error, lost bool) {
	t.Helper()
	if !lease.IsConflict(err) {
		t.Fatalf("%s: got %v, want a conflict", what, err)
	}
	if lease.IsLost(err) != lost {
		t.Fatalf("%s: IsLost(%v) = %v, want %v", what, err, !lost, lost)
	}
}

func wantReason(t *testing.T, err error, r lease.Reason) {
	t.Helper()
	var c *lease.ConflictError
	if !errors.As(err, &c) || c.Reason != r {
		t.Fatalf("got %v, want a ConflictError with reason %q", err, r)
	}
}

func testCreateAndList(t *testing.T, s lease.Store) {
	in := lease.ForRange("p", "", "7F")
	in.Continuation = `"42"`
	in.Properties = map[string]string{"k": "v"}
	in.Mode = lease.ModeIncremental
	before := time.Now()
	got := mustCreate(t, s, in)
	if got.ETag == "" || got.Timestamp.IsZero() || got.ReadAt.IsZero() {
		t.Fatalf("created lease lacks ETag, Timestamp or ReadAt: %+v", got)
	}
	// Store clocks may differ from ours, a little.
	if d := got.Timestamp.Sub(before); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("Timestamp %v is far from now %v", got.Timestamp, before)
	}
	mustCreate(t, s, lease.ForRange("p", "7F", "FF"))
	mustCreate(t, s, lease.ForPartition("q", "0"))
	mustCreate(t, s, &lease.Lease{ID: "p.info"})

	ls, err := s.List(ctx(t), "p"+lease.Separator)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].ID != "p..-7F" || ls[1].ID != "p..7F-FF" {
		t.Fatalf("List(p..) = %v, want p..-7F, p..7F-FF in order", ids(ls))
	}
	l := ls[0]
	if l.Token != "-7F" || l.Range != (lease.FeedRange{Min: "", Max: "7F"}) || l.Owner != "" ||
		l.Continuation != `"42"` || l.Properties["k"] != "v" || l.Mode != lease.ModeIncremental ||
		l.Schema != lease.SchemaRange || l.ETag != got.ETag || !l.Timestamp.Equal(got.Timestamp) {
		t.Fatalf("listed lease differs from created one:\n got %+v\nwant %+v", l, got)
	}
	if l.Age() < 0 || l.Age() > 5*time.Second {
		t.Errorf("Age of a fresh lease = %v", l.Age())
	}
	q := get(t, s, "q..0")
	if q == nil || q.Range.Partition != "0" || q.Schema != lease.SchemaPartition {
		t.Fatalf("partition lease = %+v", q)
	}
	all, err := s.List(ctx(t), "")
	if err != nil || len(all) != 4 {
		t.Fatalf("List(\"\") = %v, %v; want 4 leases", ids(all), err)
	}
}

func testCreateConflict(t *testing.T, s lease.Store) {
	first := lease.ForPartition("p", "0")
	first.Continuation = "first"
	mustCreate(t, s, first)
	second := lease.ForPartition("p", "0")
	second.Continuation = "second"
	_, err := s.Create(ctx(t), second)
	wantConflict(t, "second create", err, false)
	wantReason(t, err, lease.ReasonExists)
	if l := get(t, s, first.ID); l.Continuation != "first" {
		t.Fatalf("a refused create changed the lease: %+v", l)
	}
}

func testListPrefixIsLiteral(t *testing.T, s lease.Store) {
	mustCreate(t, s, lease.ForPartition("a%_", "1"))
	mustCreate(t, s, lease.ForPartition("abc", "1"))
	mustCreate(t, s, lease.ForPartition(`a\`, "1"))
	ls, err := s.List(ctx(t), "a%_")
	if err != nil || len(ls) != 1 || ls[0].ID != "a%_..1" {
		t.Fatalf("List(a%%_) = %v, %v; want only a%%_..1", ids(ls), err)
	}
	ls, err = s.List(ctx(t), `a\`)
	if err != nil || len(ls) != 1 {
		t.Fatalf(`List(a\) = %v, %v; want one lease`, ids(ls), err)
	}
}

func testAcquireUnowned(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	a := mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	if a.Owner != "a" || a.ETag == l.ETag || a.Timestamp.Before(l.Timestamp) {
		t.Fatalf("acquired = %+v (created %+v)", a, l)
	}
	if g := get(t, s, l.ID); g.Owner != "a" || g.ETag != a.ETag {
		t.Fatalf("stored = %+v, want owner a, ETag %s", g, a.ETag)
	}
}

func testAcquireStaleCopy(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	_, err := s.Acquire(ctx(t), l, "b", lease.AcquireOptions{Steal: true})
	wantConflict(t, "acquire with a stale copy", err, false)
	wantReason(t, err, lease.ReasonChanged)
	if g := get(t, s, l.ID); g.Owner != "a" {
		t.Fatalf("owner = %q after a refused acquire, want a", g.Owner)
	}
}

func testAcquireConcurrent(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Acquire(ctx(t), l, fmt.Sprintf("o%d", i), lease.AcquireOptions{})
		}()
	}
	wg.Wait()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil && winner != "":
			t.Fatalf("both %s and o%d acquired one copy", winner, i)
		case err == nil:
			winner = fmt.Sprintf("o%d", i)
		case !lease.IsConflict(err):
			t.Fatalf("o%d: %v, want a conflict", i, err)
		}
	}
	if winner == "" {
		t.Fatal("nobody acquired the lease")
	}
	if g := get(t, s, l.ID); g.Owner != winner {
		t.Fatalf("owner = %q, want the winner %s", g.Owner, winner)
	}
}

func testAcquireLiveOwnerRefused(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	fresh := get(t, s, l.ID)
	if fresh.Expired(time.Minute) {
		t.Fatalf("a just acquired lease is expired: age %v", fresh.Age())
	}
	_, err := s.Acquire(ctx(t), fresh, "b", lease.AcquireOptions{Expiry: time.Minute})
	wantConflict(t, "acquire of a live lease", err, false)
	wantReason(t, err, lease.ReasonOwned)
	var c *lease.ConflictError
	if errors.As(err, &c); c.Owner != "a" {
		t.Errorf("ConflictError.Owner = %q, want a", c.Owner)
	}
}

func testAcquireExpired(t *testing.T, s lease.Store) {
	const expiry = 300 * time.Millisecond
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	acquired := time.Now()
	mustAcquire(t, s, l, "a", lease.AcquireOptions{Expiry: expiry})
	var fresh *lease.Lease
	testkit.Until(t, 10*time.Second, "the lease to expire", func() bool {
		fresh = get(t, s, l.ID)
		return fresh.Expired(expiry)
	})
	if d := time.Since(acquired); d < expiry {
		t.Fatalf("lease expired after %v, under its expiry %v", d, expiry)
	}
	if fresh.Expired(time.Minute) {
		t.Fatalf("lease expired under a 1 min expiry: age %v", fresh.Age())
	}
	// The store decides expiry by its own clock, on the expiry passed.
	_, err := s.Acquire(ctx(t), fresh, "b", lease.AcquireOptions{Expiry: time.Minute})
	wantReason(t, err, lease.ReasonOwned)
	b := mustAcquire(t, s, fresh, "b", lease.AcquireOptions{Expiry: expiry})
	if b.Owner != "b" {
		t.Fatalf("owner = %q, want b", b.Owner)
	}
}

func testAcquireOwnLease(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	again := mustAcquire(t, s, get(t, s, l.ID), "a", lease.AcquireOptions{Expiry: time.Minute})
	if again.Owner != "a" {
		t.Fatalf("owner = %q", again.Owner)
	}
}

func testSteal(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	a := mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	b := mustAcquire(t, s, get(t, s, l.ID), "b", lease.AcquireOptions{Expiry: time.Minute, Steal: true})
	if b.Owner != "b" {
		t.Fatalf("owner after steal = %q", b.Owner)
	}
	// The victim finds out at its next write.
	_, err := s.Renew(ctx(t), a)
	wantConflict(t, "renew by the victim", err, true)
	var lost *lease.LostError
	if !errors.As(err, &lost) || lost.Owner != "b" || lost.Gone {
		t.Fatalf("renew by the victim: %v, want a LostError naming b", err)
	}
	_, err = s.Checkpoint(ctx(t), a, "x")
	wantConflict(t, "checkpoint by the victim", err, true)
	if g := get(t, s, l.ID); g.Continuation != "" || g.Owner != "b" {
		t.Fatalf("the victim's checkpoint changed the lease: %+v", g)
	}
}

func testRenew(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	a := mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	time.Sleep(20 * time.Millisecond)
	r, err := s.Renew(ctx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	if r.ETag == a.ETag || !r.Timestamp.After(a.Timestamp) || r.Owner != "a" {
		t.Fatalf("renewed = %+v, before %+v", r, a)
	}
	// A stale copy whose owner still holds the lease: a conflict, not a
	// loss as far as the store can tell.
	_, err = s.Renew(ctx(t), a)
	wantConflict(t, "renew with a stale copy", err, false)
	wantReason(t, err, lease.ReasonChanged)
	if _, err := s.Renew(ctx(t), r); err != nil {
		t.Fatalf("renew with the latest copy: %v", err)
	}
}

func testCheckpoint(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	a := mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	time.Sleep(20 * time.Millisecond)
	c, err := s.Checkpoint(ctx(t), a, "0/16B3748")
	if err != nil {
		t.Fatal(err)
	}
	if c.Continuation != "0/16B3748" || c.ETag == a.ETag || !c.Timestamp.After(a.Timestamp) || c.Owner != "a" {
		t.Fatalf("checkpointed = %+v", c)
	}
	_, err = s.Checkpoint(ctx(t), a, "stale")
	wantConflict(t, "checkpoint with a stale copy", err, false)
	c2, err := s.Checkpoint(ctx(t), c, "0/16B3750")
	if err != nil {
		t.Fatal(err)
	}
	if g := get(t, s, l.ID); g.Continuation != "0/16B3750" || g.ETag != c2.ETag {
		t.Fatalf("stored = %+v", g)
	}
}

func testRelease(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	a := mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	a, err := s.Checkpoint(ctx(t), a, "c1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Renew(ctx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Release(ctx(t), a)
	wantConflict(t, "release with a stale copy", err, false)
	if err := s.Release(ctx(t), r); err != nil {
		t.Fatal(err)
	}
	g := get(t, s, l.ID)
	if g.Owner != "" || g.Continuation != "c1" {
		t.Fatalf("released = %+v, want no owner and the continuation kept", g)
	}
	if !g.Expired(time.Hour) {
		t.Fatal("a released lease is not free")
	}
	// Anyone may take it at once, without stealing.
	mustAcquire(t, s, g, "b", lease.AcquireOptions{Expiry: time.Hour})
	// Releasing a lease taken by another instance is a loss.
	err = s.Release(ctx(t), r)
	wantConflict(t, "release after takeover", err, true)
}

func testDelete(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	a := mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	err := s.Delete(ctx(t), l)
	wantConflict(t, "delete with a stale copy", err, false)
	if err := s.Delete(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	if g := get(t, s, l.ID); g != nil {
		t.Fatalf("deleted lease still listed: %+v", g)
	}
	// Repeating a delete (a split re-run) succeeds.
	if err := s.Delete(ctx(t), a); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func testGoneLease(t *testing.T, s lease.Store) {
	l := mustCreate(t, s, lease.ForPartition("p", "0"))
	a := mustAcquire(t, s, l, "a", lease.AcquireOptions{})
	if err := s.Delete(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	_, err := s.Renew(ctx(t), a)
	wantConflict(t, "renew of a deleted lease", err, true)
	var lost *lease.LostError
	if !errors.As(err, &lost) || !lost.Gone {
		t.Fatalf("renew of a deleted lease: %v, want a LostError with Gone", err)
	}
	_, err = s.Checkpoint(ctx(t), a, "x")
	wantConflict(t, "checkpoint of a deleted lease", err, true)
	_, err = s.Acquire(ctx(t), a, "b", lease.AcquireOptions{})
	wantConflict(t, "acquire of a deleted lease", err, false)
	wantReason(t, err, lease.ReasonGone)
	if err := s.Release(ctx(t), a); err != nil {
		t.Fatalf("release of a deleted lease: %v, want nil", err)
	}
}

func testNoETagReuse(t *testing.T, s lease.Store) {
	old := mustCreate(t, s, lease.ForPartition("p", "0"))
	if err := s.Delete(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, lease.ForPartition("p", "0"))
	_, err := s.Acquire(ctx(t), old, "a", lease.AcquireOptions{})
	wantConflict(t, "acquire with a copy from before a delete and re-create", err, false)
}

func testCopiesAreNotShared(t *testing.T, s lease.Store) {
	in := lease.ForPartition("p", "0")
	in.Properties = map[string]string{"k": "v"}
	out := mustCreate(t, s, in)
	in.Properties["k"] = "changed by caller"
	out.Properties["k"] = "changed by caller"
	if g := get(t, s, in.ID); g.Properties["k"] != "v" {
		t.Fatalf("store shares maps with callers: %v", g.Properties)
	}
}

func ids(ls []*lease.Lease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.ID
	}
	return out
}
