package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/leasetest"
	"github.com/changecast/changecast/lease/pgstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pool connects to the test cluster (skipped under -short; without the
// cluster the test fails, so a full run cannot pass without this store).
func pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testkit.Pool(t, testkit.Postgres(t))
}

// newStore returns a store on a table of its own, so tests run in parallel;
// the table is dropped afterwards.
func newStore(t *testing.T) *pgstore.Store {
	t.Helper()
	p := pool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "leasetest_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := pgstore.New(ctx, p, table)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := p.Exec(context.Background(), "DROP TABLE "+pgx.Identifier{table}.Sanitize()); err != nil {
			t.Errorf("drop %s: %v", table, err)
		}
	})
	return s
}

func TestStoreContract(t *testing.T) {
	pool(t) // skip or fail once, before the subtests, when there is no cluster
	leasetest.TestStore(t, func(t *testing.T) lease.Store { return newStore(t) })
}

func TestManagerOnPostgres(t *testing.T) {
	pool(t)
	leasetest.TestManager(t, func(t *testing.T) lease.Store { return newStore(t) })
}

func TestNewIsIdempotentAndConcurrent(t *testing.T) {
	p := pool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "leasetest_new_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _, _ = p.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := pgstore.New(context.Background(), p, table)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent New: %v", err)
		}
	}
	if _, err := pgstore.New(context.Background(), p, "public."+table); err != nil {
		t.Fatalf("New on an existing, schema-qualified table: %v", err)
	}
}

// Expiry is decided on the database's clock: a lease stamped ten minutes
// ago by the database is expired whatever this machine's clock says.
func TestExpiryUsesDatabaseClock(t *testing.T) {
	p := pool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "leasetest_clock_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	s, err := pgstore.New(ctx, p, table)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = p.Exec(context.Background(), "DROP TABLE "+table) })

	l, err := s.Create(ctx, lease.ForPartition("p", "slot"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, l, "a", lease.AcquireOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "UPDATE "+table+" SET renewed_at = now() - interval '10 minutes'"); err != nil {
		t.Fatal(err)
	}
	ls, err := s.List(ctx, "p..")
	if err != nil || len(ls) != 1 {
		t.Fatalf("list: %v %v", ls, err)
	}
	got := ls[0]
	if age := got.Age(); age < 10*time.Minute || age > 11*time.Minute {
		t.Fatalf("age %v, want about 10 min on the database clock", age)
	}
	if !got.Expired(time.Minute) || got.Expired(time.Hour) {
		t.Fatalf("Expired: 1 min %v, 1 h %v", got.Expired(time.Minute), got.Expired(time.Hour))
	}
	if _, err := s.Acquire(ctx, got, "b", lease.AcquireOptions{Expiry: time.Hour}); !lease.IsConflict(err) {
		t.Fatalf("acquire under a 1 h expiry: %v, want refused", err)
	}
	n, err := s.Acquire(ctx, got, "b", lease.AcquireOptions{Expiry: time.Minute})
	if err != nil || n.Owner != "b" {
		t.Fatalf("acquire under a 1 min expiry: %v %+v", err, n)
	}
}
