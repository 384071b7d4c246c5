package cosmos_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed/cosmos"
	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/cosmosstore"
	"github.com/changecast/changecast/lease/leasetest"
	"github.com/changecast/changecast/schema/wire"
)

// One worker delivers every insert and update, and each document's
// versions arrive in increasing order, each a patch onto the previous one.
func TestOneWorkerDeliversInOrder(t *testing.T) {
	w := newWorld(t, 4)
	w.writeMany("a", 40)
	w.start(w.config("solo", lease.NewMemoryStore()))
	for round := range 5 {
		for i := range 40 {
			if (i+round)%3 != 0 {
				w.write(fmt.Sprintf("a%03d", i))
			}
		}
		w.writeMany(fmt.Sprintf("r%d-", round), 5)
		// Each round is read and published before the next is written, so
		// every update of a round is a patch onto the previous round's.
		w.waitDelivered()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, vs := range w.versions {
		for i := 1; i < len(vs); i++ {
			if wire.CompareVersions(vs[i-1], vs[i]) >= 0 {
				t.Fatalf("%s: versions out of order: %v", id, vs)
			}
		}
	}
	st := w.rep.Counts()
	if st.Gaps != 0 || st.Refetches != 0 || st.Patches == 0 {
		t.Fatalf("replica stats %+v: want patches, no gaps, no refetches", st)
	}
}

// Three instances sharing a Cosmos lease container over 8 feed ranges
// converge to a balanced assignment and deliver every change.
func TestThreeWorkersBalance(t *testing.T) {
	w := newWorld(t, 8)
	store, err := cosmosstore.New(context.Background(), w.client(), dbName, "leases", cosmosstore.Options{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	w.writeMany("b", 60)
	var ws []*worker
	for i := range 3 {
		ws = append(ws, w.start(w.config(fmt.Sprintf("w%d", i), store)))
	}
	stopWrites := make(chan struct{})
	var writes atomic.Int64
	writer := testkit.Go(t, func() error {
		for i := 0; ; i++ {
			select {
			case <-stopWrites:
				return nil
			case <-time.After(5 * time.Millisecond):
			}
			w.write(fmt.Sprintf("b%03d", i%60))
			writes.Add(1)
		}
	})
	var once sync.Once
	stop := func() { once.Do(func() { close(stopWrites) }) }
	t.Cleanup(stop)
	prefix := ws[0].r.Prefix()
	testkit.Eventually(t, patience, "balanced", func() string {
		ls := listLeases(t, store, prefix)
		counts := map[string]int{}
		for _, l := range ls {
			counts[l.Owner]++
		}
		lo, hi := 99, 0
		for i := range 3 {
			n := counts[fmt.Sprintf("w%d", i)]
			lo, hi = min(lo, n), max(hi, n)
		}
		if len(ls) != 8 || counts[""] != 0 || hi-lo > 1 {
			return fmt.Sprintf("%d leases, owners %v", len(ls), counts)
		}
		return ""
	})
	// Writes go on over the balanced assignment: every document once more.
	balancedAt := writes.Load()
	testkit.Until(t, patience, "60 more writes", func() bool { return writes.Load() >= balancedAt+60 })
	stop()
	testkit.Recv(t, writer, patience, "the writer to stop")
	w.waitDelivered()
	// Each runner reads what it holds.
	total := 0
	for _, x := range ws {
		total += len(x.r.Leases())
	}
	if total != 8 {
		t.Fatalf("runners read %d leases, want 8", total)
	}
}

// An instance that stops renewing without releasing (crash, partition)
// loses its leases after the expiry; another takes them and delivers
// everything, including what was written meanwhile.
func TestStoppedWorkerLeasesTakenOver(t *testing.T) {
	w := newWorld(t, 4)
	store := lease.NewMemoryStore()
	fa := &leasetest.Faulty{Store: store}
	a := w.start(w.config("a", fa))
	w.writeMany("c", 20)
	testkit.Eventually(t, patience, "a holds all leases", func() string {
		if n := len(a.r.Leases()); n != 4 {
			return fmt.Sprintf("a holds %d", n)
		}
		return ""
	})
	w.waitDelivered()
	prefix := a.r.Prefix()

	fa.Down.Store(true) // a can no longer reach the lease store
	w.block.Store(true) // and whatever it reads is not published
	b := w.start(w.config("b", store))
	w.writeMany("c", 20)
	w.writeMany("d", 20)
	w.block.Store(false)
	testkit.Eventually(t, patience, "b took every lease after expiry", func() string {
		for _, l := range listLeases(t, store, prefix) {
			if l.Owner != "b" {
				return fmt.Sprintf("%s owned by %q", l.Token, l.Owner)
			}
		}
		if n := len(a.r.Leases()); n != 0 {
			return fmt.Sprintf("a still reads %d leases", n)
		}
		return ""
	})
	w.waitDelivered()
	if len(b.r.Leases()) != 4 {
		t.Fatalf("b reads %d leases", len(b.r.Leases()))
	}
}

// A split mid-stream: the parent lease is replaced by its children, which
// resume from the parent's checkpoint and keep checkpointing; nothing is
// lost.
func TestSplitMidStream(t *testing.T) {
	w := newWorld(t, 2)
	store := lease.NewMemoryStore()
	x := w.start(w.config("s", store))
	w.writeMany("e", 50)
	w.waitDelivered()
	prefix := x.r.Prefix()
	before := listLeases(t, store, prefix)
	if len(before) != 2 {
		t.Fatalf("%d leases before the split", len(before))
	}
	ranges, err := w.srv.PartitionKeyRanges(dbName, collName)
	if err != nil {
		t.Fatal(err)
	}
	parent := ranges[0]
	w.writeMany("e", 50)
	children, err := w.srv.Split(dbName, collName, parent.ID)
	if err != nil {
		t.Fatal(err)
	}
	w.writeMany("e", 50)
	w.writeMany("f", 30)
	parentTok := parent.MinInclusive + "-" + parent.MaxExclusive
	testkit.Eventually(t, patience, "parent replaced by children", func() string {
		ls := listLeases(t, store, prefix)
		var toks []string
		for _, l := range ls {
			toks = append(toks, l.Token)
			if l.Token == parentTok {
				return "parent lease still exists: " + strings.Join(toks, ", ")
			}
		}
		if len(ls) != 3 {
			return "leases: " + strings.Join(toks, ", ")
		}
		return ""
	})
	w.waitDelivered()
	// The children checkpoint: write more and see their continuations move.
	conts := map[string]string{}
	for _, l := range listLeases(t, store, prefix) {
		conts[l.ID] = l.Continuation
	}
	w.writeMany("e", 50)
	w.waitDelivered()
	testkit.Eventually(t, patience, "every lease checkpointed after the split", func() string {
		for _, l := range listLeases(t, store, prefix) {
			if l.Continuation == conts[l.ID] {
				return l.Token + " did not checkpoint"
			}
		}
		return ""
	})
	_ = children
}

// Lease write conflicts: an injected 412 on a lease write, and an external
// checkpoint on a held lease, make the holder drop the lease's work and
// take it again from the stored continuation; delivery goes on.
func TestLeaseWriteConflicts(t *testing.T) {
	w := newWorld(t, 2)
	store, err := cosmosstore.New(context.Background(), w.client(), dbName, "leases", cosmosstore.Options{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	x := w.start(w.config("x", store))
	w.writeMany("g", 30)
	w.waitDelivered()
	w.srv.Inject(emulator.Fault{Status: http.StatusPreconditionFailed, Count: 3,
		Kinds: []emulator.Kind{emulator.KindReplace}, Database: dbName, Container: "leases"})
	w.writeMany("g", 30)
	w.waitDelivered()
	testkit.Eventually(t, patience, "leases held again", func() string {
		if n := len(x.r.Leases()); n != 2 {
			return fmt.Sprintf("holding %d", n)
		}
		return ""
	})
	w.writeMany("h", 30)
	w.waitDelivered()
	refused := 0
	for _, r := range w.srv.Requests(emulator.KindReplace) {
		if r.Status == http.StatusPreconditionFailed {
			refused++
		}
	}
	if refused < 3 {
		t.Fatalf("%d lease writes were refused with 412, want at least 3", refused)
	}
}

// 429 storms on the change feed slow delivery and lose nothing.
func TestThrottlingStorm(t *testing.T) {
	w := newWorld(t, 2)
	cfg := w.config("t", lease.NewMemoryStore())
	cfg.Feed.MaxBackoff = 200 * time.Millisecond
	w.start(cfg)
	w.writeMany("i", 30)
	w.waitDelivered()
	w.srv.ResetCounts()
	w.srv.Inject(emulator.Fault{Status: http.StatusTooManyRequests, SubStatus: 3200, RetryAfter: 5 * time.Millisecond,
		Count: 60, Kinds: []emulator.Kind{emulator.KindChangeFeed}})
	w.writeMany("i", 30)
	w.writeMany("j", 30)
	w.waitDelivered()
	throttled := 0
	for _, r := range w.srv.Requests(emulator.KindChangeFeed) {
		if r.Status == http.StatusTooManyRequests {
			throttled++
		}
	}
	if throttled < 60 {
		t.Fatalf("only %d reads were throttled", throttled)
	}
}

// A document that cannot be sent as data (too large for its mapping)
// becomes a refetch marker and the stream goes on.
func TestPoisonDocumentBecomesRefetch(t *testing.T) {
	w := newWorld(t, 1)
	cfg := w.config("p", lease.NewMemoryStore())
	cfg.NewMapper = newMapper(2048)
	w.start(cfg)
	w.write("big", map[string]any{"blob": strings.Repeat("x", 5000)})
	w.writeMany("k", 10)
	testkit.Eventually(t, patience, "refetch marker for big", func() string {
		if _, dirty := w.rep.Snapshot(); !dirty[collName+"/big"] {
			return "no refetch for big"
		}
		return ""
	})
	w.mu.Lock()
	delete(w.want, "big")
	w.mu.Unlock()
	w.waitDelivered()
}

// A soft-delete field turns a document into a delete.
func TestSoftDelete(t *testing.T) {
	w := newWorld(t, 1)
	cfg := w.config("d", lease.NewMemoryStore())
	cfg.Feed.DeleteField = "/_deleted"
	w.start(cfg)
	w.writeMany("m", 3)
	w.waitDelivered()
	w.write("m001", map[string]any{"_deleted": true})
	testkit.Eventually(t, patience, "m001 deleted", func() string {
		docs, _ := w.rep.Snapshot()
		if len(docs[collName+"/m001"]) != 0 {
			return "m001 still present"
		}
		if w.rep.Counts().Deletes != 1 {
			return "no delete"
		}
		return ""
	})
}

// startFrom now: documents written before the processor's leases exist are
// not delivered, those written after are, even before a range's first read.
func TestStartFromNow(t *testing.T) {
	w := newWorld(t, 2)
	w.writeMany("old", 10)
	store := lease.NewMemoryStore()
	cfg := w.config("n", store)
	cfg.Feed.Start = cosmos.Start{Kind: cosmos.StartNow}
	w.mu.Lock()
	w.want = map[string]int{}
	w.mu.Unlock()
	x := w.start(cfg)
	// "Now" is when the leases are created, which is after the runner is
	// ready: what is written in between is not delivered.
	testkit.Eventually(t, patience, "a lease per range", func() string {
		if n := len(listLeases(t, store, x.r.Prefix())); n != 2 {
			return fmt.Sprintf("%d leases", n)
		}
		return ""
	})
	// A range's feed is in order: had the runner read a range from the
	// beginning, its old documents would have come before its new ones. 20
	// new documents reach both ranges (all in one: odds 2^-19), so once
	// they are delivered any old one would have been too.
	w.writeMany("new", 20)
	w.waitDelivered()
	docs, _ := w.rep.Snapshot()
	for k := range docs {
		if strings.HasPrefix(k, collName+"/old") {
			t.Fatalf("%s was written before the start and delivered", k)
		}
	}
}

// A checkpoint reset to the beginning (what `changecast checkpoint reset`
// does) makes the running worker replay every document.
func TestCheckpointResetReplays(t *testing.T) {
	w := newWorld(t, 2)
	store := lease.NewMemoryStore()
	client := w.client()
	x := w.start(w.config("r", store))
	w.writeMany("q", 20)
	w.waitDelivered()
	before := w.published.Load()

	c, _ := client.NewContainer(dbName, collName)
	feed, err := cosmos.NewFeed(context.Background(), c, cosmos.FeedConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := cosmos.ResetCheckpoints(context.Background(), store, x.r.Prefix(), feed, cosmos.Start{Kind: cosmos.StartBeginning})
	if err != nil || n != 2 {
		t.Fatalf("reset: %d leases, %v", n, err)
	}
	testkit.Eventually(t, patience, "replayed", func() string {
		if got := w.published.Load() - before; got < 20 {
			return fmt.Sprintf("%d changes published since the reset", got)
		}
		return ""
	})
	w.writeMany("q", 20)
	w.waitDelivered()
}

// TestWaitsForContainer: a worker started before its container exists
// waits for it, then delivers.
func TestWaitsForContainer(t *testing.T) {
	w := newWorld(t, 1)
	cfg := w.config("a", lease.NewMemoryStore())
	cfg.Container = "later"
	r := cfg.runner(t)
	stop := testkit.Run(t, r.Run)
	// Wait until the runner found the container missing, then check it
	// does not claim to run.
	testkit.Until(t, patience, "the runner to find the container missing", func() bool {
		for _, rq := range w.srv.Requests(emulator.KindContainer) {
			if rq.Status == http.StatusNotFound && strings.HasSuffix(rq.Path, "/colls/later") {
				return true
			}
		}
		return false
	})
	if r.Ready() {
		t.Fatal("ready without a container")
	}
	if err := w.srv.CreateContainer(dbName, "later", emulator.ContainerSpec{PartitionKeyPaths: []string{"/pk"}}); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, patience, "runner ready once the container exists", r.Ready)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
