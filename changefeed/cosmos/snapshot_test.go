package cosmos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/cosmos"
	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/replica"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

// truthDoc is a document as the container's change feed read from the
// beginning gives it: its _lsn, and its body decoded as the stream decodes
// it (system fields _lsn, _rid, _self, _attachments removed).
type truthDoc struct {
	lsn     string
	doc     map[string]any
	deleted bool // soft-deleted (_deleted: true)
}

// containerDocs reads every document of coll with the SDK's change feed,
// each feed range from the beginning until it answers 304.
func containerDocs(t *testing.T, client *azcosmos.Client, coll string) map[string]truthDoc {
	t.Helper()
	ctx := context.Background()
	c, err := client.NewContainer(dbName, coll)
	if err != nil {
		t.Fatal(err)
	}
	frs, err := c.ReadFeedRanges(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]truthDoc{}
	for _, fr := range frs {
		opts := azcosmos.ChangeFeedOptions{MaxItemCount: 50, FeedRange: &fr}
		for {
			resp, err := c.ReadChangeFeed(ctx, &opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Items) == 0 {
				break
			}
			for _, item := range resp.Items {
				var doc map[string]any
				dec := json.NewDecoder(bytes.NewReader(item))
				dec.UseNumber()
				if err := dec.Decode(&doc); err != nil {
					t.Fatal(err)
				}
				lsn := doc["_lsn"].(json.Number).String()
				for _, f := range []string{"_lsn", "_rid", "_self", "_attachments"} {
					delete(doc, f)
				}
				out[doc["id"].(string)] = truthDoc{lsn: lsn, doc: doc, deleted: doc["_deleted"] == true}
			}
			tok := resp.ContinuationToken
			opts = azcosmos.ChangeFeedOptions{MaxItemCount: 50, Continuation: &tok}
		}
	}
	return out
}

// snapAll reads every page of a snapshot, checking that each holds at most
// limit documents; later pages replace older versions of a document.
func snapAll(t *testing.T, c *cosmos.Container, q changefeed.SnapshotQuery) (map[string]changefeed.SnapshotDoc, int) {
	t.Helper()
	out := map[string]changefeed.SnapshotDoc{}
	pages := 0
	for {
		p, err := c.Snapshot(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if q.Limit > 0 && len(p.Docs) > q.Limit {
			t.Fatalf("page %d holds %d documents, more than %d", pages, len(p.Docs), q.Limit)
		}
		for _, d := range p.Docs {
			if cur, ok := out[d.ID]; !ok || wire.CompareVersions(d.Version, cur.Version) > 0 {
				out[d.ID] = d
			}
		}
		if p.Next == "" {
			return out, pages
		}
		q.After = p.Next
	}
}

func tenantMatch(v string) []changefeed.FieldMatch {
	return []changefeed.FieldMatch{{Field: template.Pointer{"tenant"}, Value: v}}
}

// checkSnapshot compares a snapshot with the container's documents whose
// tenant has the text tenant ("" for all): each at its _lsn, with the body
// the stream sends; soft-deleted ones as Deleted entries.
func checkSnapshot(t *testing.T, got map[string]changefeed.SnapshotDoc, truth map[string]truthDoc, tenant string) {
	t.Helper()
	want := map[string]truthDoc{}
	for id, d := range truth {
		if s, _ := wire.ScalarString(d.doc["tenant"]); tenant == "" || s == tenant {
			want[id] = d
		}
	}
	if len(want) == 0 {
		t.Fatalf("tenant %q has no documents: the test is wrong", tenant)
	}
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			t.Errorf("tenant %q: %s missing", tenant, id)
		case g.Version != w.lsn:
			t.Errorf("tenant %q: %s at version %s, want its _lsn %s", tenant, id, g.Version, w.lsn)
		case g.Deleted != w.deleted:
			t.Errorf("tenant %q: %s deleted=%v, want %v", tenant, id, g.Deleted, w.deleted)
		case !w.deleted && !reflect.DeepEqual(g.Doc, w.doc):
			t.Errorf("tenant %q: %s is %v, want %v", tenant, id, g.Doc, w.doc)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("tenant %q: %s is not the tenant's", tenant, id)
		}
	}
}

// startSnap runs a worker on cfg and returns its container, the
// changefeed.Snapshotter.
func (w *world) startSnap(cfg workerConfig) *cosmos.Container {
	w.t.Helper()
	cont := cfg.container()
	r := cfg.runnerOf(w.t, cont)
	testkit.Run(w.t, r.Run)
	testkit.Until(w.t, patience, "runner ready", r.Ready)
	if cfg.Feed.RoutingIndex {
		// Each lease reads its whole range once to seed its routing index,
		// then polls (25 items a page): tests that count the snapshot's
		// own reads start once every range polls.
		cc, err := w.client().NewContainer(cont.Database, cont.Container)
		if err != nil {
			w.t.Fatal(err)
		}
		frs, err := cc.ReadFeedRanges(context.Background(), nil)
		if err != nil {
			w.t.Fatal(err)
		}
		testkit.Until(w.t, patience, "every lease's routing index seeded", func() bool {
			seeded, polled := map[string]bool{}, map[string]bool{}
			for _, rq := range w.srv.Requests(emulator.KindChangeFeed) {
				id := rq.Header.Get("X-Ms-Documentdb-Partitionkeyrangeid")
				switch {
				case rq.Header.Get("X-Ms-Max-Item-Count") == "25":
					polled[id] = true
				case rq.Header.Get("X-Ms-Documentdb-Partitionkey") == "":
					seeded[id] = true
				}
			}
			for id := range seeded {
				if !polled[id] {
					return false
				}
			}
			return len(polled) >= len(frs)
		})
	}
	return cont
}

// A group's snapshot is the container's documents of that group, each at
// its _lsn, decoded as the stream decodes it, over pages of at most the
// limit; soft-deleted ones come as Deleted entries. The match is on text:
// the number 42 matches "42".
func TestSnapshotOfAGroup(t *testing.T) {
	w := newWorld(t, 4)
	tenants := []any{"acme", "globex", json.Number("42")}
	for i := range 45 {
		doc := map[string]any{"id": fmt.Sprintf("d%02d", i), "pk": fmt.Sprintf("p%d", i), "tenant": tenants[i%3],
			"n": i, "nested": map[string]any{"list": []any{i, "x"}}}
		if i%7 == 0 {
			doc["_deleted"] = true
		}
		if _, err := w.srv.Upsert(dbName, collName, doc); err != nil {
			t.Fatal(err)
		}
	}
	cfg := w.config("s", lease.NewMemoryStore())
	cfg.Feed.DeleteField = "/_deleted"
	cont := w.startSnap(cfg)
	truth := containerDocs(t, w.client(), collName)
	for _, tenant := range []string{"acme", "globex", "42"} {
		got, pages := snapAll(t, cont, changefeed.SnapshotQuery{Collection: collName, Match: tenantMatch(tenant), Limit: 4})
		if pages < 4 {
			t.Errorf("tenant %s: %d pages of 4 for 15 documents", tenant, pages)
		}
		checkSnapshot(t, got, truth, tenant)
	}
	got, _ := snapAll(t, cont, changefeed.SnapshotQuery{Collection: collName})
	checkSnapshot(t, got, truth, "")

	if _, err := cont.Snapshot(context.Background(), changefeed.SnapshotQuery{Collection: "other"}); err == nil {
		t.Error("a snapshot of another collection did not fail")
	}
	var bad interface{ BadCursor() bool }
	if _, err := cont.Snapshot(context.Background(), changefeed.SnapshotQuery{Collection: collName, After: "nonsense"}); !errors.As(err, &bad) {
		t.Errorf("a cursor it did not make: %v, want a BadCursor error", err)
	}
}

// When the match is on the partition key path, the snapshot reads only the
// logical partitions the text can name (the string, and the number it
// spells), each from the one feed range that holds it.
func TestSnapshotOfALogicalPartition(t *testing.T) {
	w := newWorld(t, 1)
	const coll = "bytenant"
	if err := w.srv.CreateContainer(dbName, coll, emulator.ContainerSpec{PartitionKeyPaths: []string{"/tenant"}, Partitions: 8}); err != nil {
		t.Fatal(err)
	}
	var tenants []any
	for i := range 30 {
		tenants = append(tenants, fmt.Sprintf("tenant-%d", i))
	}
	tenants = append(tenants, "42", 42, true, "true", 1.5)
	for i, tn := range tenants {
		for j := range 3 {
			doc := map[string]any{"id": fmt.Sprintf("d%d-%d", i, j), "tenant": tn, "n": j}
			if _, err := w.srv.Upsert(dbName, coll, doc); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := w.config("s", lease.NewMemoryStore())
	cfg.Container = coll
	cont := w.startSnap(cfg)
	truth := containerDocs(t, w.client(), coll)
	for _, tn := range tenants {
		text, _ := wire.ScalarString(tn)
		if n, ok := tn.(int); ok {
			text = fmt.Sprint(n)
		}
		w.srv.ResetCounts()
		got, _ := snapAll(t, cont, changefeed.SnapshotQuery{Collection: coll, Match: tenantMatch(text), Limit: 100})
		checkSnapshot(t, got, truth, text)
		var reqs []cosmostest.RequestRecord
		for _, rq := range w.srv.Requests(emulator.KindChangeFeed) {
			if rq.Header.Get("X-Ms-Max-Item-Count") != "25" { // not the stream's polls
				reqs = append(reqs, rq)
			}
		}
		ranges := map[string]bool{}
		for _, rq := range reqs {
			if rq.Header.Get("X-Ms-Documentdb-Partitionkey") == "" || rq.Status >= 400 {
				t.Errorf("tenant %q: a change feed read without a partition key, or refused: %s %v %d", text, rq.Path, rq.Header, rq.Status)
			}
			ranges[rq.Header.Get("X-Ms-Documentdb-Partitionkeyrangeid")+rq.Header.Get("X-Ms-Documentdb-Partitionkey")] = true
		}
		// One range per logical partition read: "42" names two ("42" and
		// 42), "true" two, the others one.
		if len(ranges) > 2 || len(reqs) > 4 {
			t.Errorf("tenant %q: %d change feed reads over %d range/partition pairs; want a single partition's", text, len(reqs), len(ranges))
		}
	}
}

// The one-document form finds a document by its id, at its _lsn: with a
// partition key path (its logical partition) or without (every range, from
// shortly before its _ts). A soft-deleted document is a Deleted entry, a
// missing one no entry.
func TestSnapshotOneDocument(t *testing.T) {
	for _, byTenant := range []bool{false, true} {
		t.Run(fmt.Sprintf("partitionKeyTenant=%v", byTenant), func(t *testing.T) {
			w := newWorld(t, 4)
			coll := collName
			if byTenant {
				coll = "bytenant"
				if err := w.srv.CreateContainer(dbName, coll, emulator.ContainerSpec{PartitionKeyPaths: []string{"/tenant"}, Partitions: 4}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 20 {
				doc := map[string]any{"id": fmt.Sprintf("d%02d", i), "pk": fmt.Sprintf("p%d", i), "tenant": fmt.Sprintf("t%d", i%3), "n": i}
				if i == 5 {
					doc["_deleted"] = true
				}
				if _, err := w.srv.Upsert(dbName, coll, doc); err != nil {
					t.Fatal(err)
				}
			}
			cfg := w.config("s", lease.NewMemoryStore())
			cfg.Container = coll
			cfg.Feed.DeleteField = "/_deleted"
			cont := w.startSnap(cfg)
			truth := containerDocs(t, w.client(), coll)
			w.srv.ResetCounts()
			for _, id := range []string{"d03", "d05", "d17"} {
				p, err := cont.Snapshot(context.Background(), changefeed.SnapshotQuery{Collection: coll, ID: id, Limit: 1})
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Docs) != 1 || p.Next != "" {
					t.Fatalf("%s: %+v", id, p)
				}
				d, want := p.Docs[0], truth[id]
				if d.ID != id || d.Version != want.lsn || d.Deleted != want.deleted || (!d.Deleted && !reflect.DeepEqual(d.Doc, want.doc)) {
					t.Errorf("%s: got %+v, want %+v", id, d, want)
				}
			}
			for _, rq := range w.srv.Requests(emulator.KindChangeFeed) {
				if rq.Header.Get("X-Ms-Max-Item-Count") == "25" {
					continue // the stream's polls
				}
				if byTenant && rq.Header.Get("X-Ms-Documentdb-Partitionkey") == "" {
					t.Errorf("a one-document read of the change feed without its partition key: %v", rq.Header)
				}
				if rq.Header.Get("If-None-Match") == "" && rq.Header.Get("If-Modified-Since") == "" {
					t.Errorf("a one-document read of the change feed from the beginning: %v", rq.Header)
				}
			}
			p, err := cont.Snapshot(context.Background(), changefeed.SnapshotQuery{Collection: coll, ID: "nope", Limit: 1})
			if err != nil || len(p.Docs) != 0 {
				t.Fatalf("a missing id: %+v, %v", p, err)
			}
		})
	}
}

// A feed range that splits between two pages of a snapshot (the cursor
// names a range that is gone: 410/1002) is read on in its children: the
// snapshot stays complete and exact. The same holds for a logical
// partition whose range splits.
func TestSnapshotAcrossSplit(t *testing.T) {
	for _, byTenant := range []bool{false, true} {
		t.Run(fmt.Sprintf("partitionKeyTenant=%v", byTenant), func(t *testing.T) {
			w := newWorld(t, 1)
			coll := collName
			if byTenant {
				coll = "bytenant"
				if err := w.srv.CreateContainer(dbName, coll, emulator.ContainerSpec{PartitionKeyPaths: []string{"/tenant"}, Partitions: 1}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 80 {
				doc := map[string]any{"id": fmt.Sprintf("d%02d", i), "pk": fmt.Sprintf("p%d", i), "tenant": fmt.Sprintf("t%d", i%2), "n": i}
				if _, err := w.srv.Upsert(dbName, coll, doc); err != nil {
					t.Fatal(err)
				}
			}
			cfg := w.config("s", lease.NewMemoryStore())
			cfg.Container = coll
			cont := w.startSnap(cfg)
			q := changefeed.SnapshotQuery{Collection: coll, Match: tenantMatch("t1"), Limit: 10}
			first, err := cont.Snapshot(context.Background(), q)
			if err != nil || first.Next == "" {
				t.Fatalf("first page: %v, %v", first, err)
			}
			rs, err := w.srv.PartitionKeyRanges(dbName, coll)
			if err != nil || len(rs) != 1 {
				t.Fatalf("ranges %v, %v", rs, err)
			}
			if _, err := w.srv.Split(dbName, coll, rs[0].ID); err != nil {
				t.Fatal(err)
			}
			// Changes after the split, on both sides of it.
			for i := 80; i < 90; i++ {
				doc := map[string]any{"id": fmt.Sprintf("d%02d", i), "pk": fmt.Sprintf("p%d", i), "tenant": "t1", "n": i}
				if _, err := w.srv.Upsert(dbName, coll, doc); err != nil {
					t.Fatal(err)
				}
			}
			q.After = first.Next
			rest, _ := snapAll(t, cont, q)
			for _, d := range first.Docs {
				if _, ok := rest[d.ID]; !ok {
					rest[d.ID] = d
				}
			}
			checkSnapshot(t, rest, containerDocs(t, w.client(), coll), "t1")
			gone := 0
			for _, rq := range w.srv.Requests(emulator.KindChangeFeed) {
				if rq.Status == http.StatusGone {
					gone++
				}
			}
			if gone == 0 {
				t.Error("no read hit the split range: the test did not split under the snapshot")
			}
		})
	}
}

// fanout is the publish target of TestSnapshotDifferential: every client
// gets its group's envelopes, held until its snapshot is loaded.
type fanout struct {
	mu      sync.Mutex
	clients []*snapClient
	sent    map[string]bool // id@version of every change published
}

type snapClient struct {
	group  string
	rep    *replica.Replica
	held   []*wire.Envelope // nil once live
	live   bool
	err    error
	loaded []string // id@version of the snapshot's documents
}

func (f *fanout) Publish(_ context.Context, b *publish.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sent == nil {
		f.sent = map[string]bool{}
	}
	for _, c := range b.Envelope.Changes {
		f.sent[c.ID+"@"+c.V] = true
	}
	for _, c := range f.clients {
		if b.Envelope.Group != c.group {
			continue
		}
		env := b.Envelope
		if !c.live {
			c.held = append(c.held, &env)
			continue
		}
		if err := c.rep.Apply(&env); err != nil && c.err == nil {
			c.err = err
		}
	}
	return nil
}

// join connects a client of tenant: it holds its group's envelopes, loads
// the snapshot in pages, applies what it held, then follows live.
func (f *fanout) join(t *testing.T, cont *cosmos.Container, coll, tenant string) *snapClient {
	c := &snapClient{group: "tenant-" + tenant, rep: replica.New()}
	f.mu.Lock()
	f.clients = append(f.clients, c)
	f.mu.Unlock()
	q := changefeed.SnapshotQuery{Collection: coll, Match: tenantMatch(tenant), Limit: 15}
	for {
		p, err := cont.Snapshot(context.Background(), q)
		if err != nil {
			t.Error(err)
			return c
		}
		for _, d := range p.Docs {
			var doc []byte
			if !d.Deleted {
				if doc, err = wire.AppendValue(nil, d.Doc); err != nil {
					t.Error(err)
				}
			}
			c.rep.Load("group:"+c.group, coll, d.ID, doc, d.Version)
			c.loaded = append(c.loaded, d.ID+"@"+d.Version)
		}
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, env := range c.held {
		if err := c.rep.Apply(env); err != nil && c.err == nil {
			c.err = err
		}
	}
	c.held, c.live = nil, true
	return c
}

// diff compares a client's replica with its tenant's live documents.
func (c *snapClient) diff(t *testing.T, coll string, truth map[string]truthDoc) string {
	docs, dirty := c.rep.Snapshot()
	got := map[string]any{}
	for k, ds := range docs {
		for _, d := range ds {
			if d.Audience == "group:"+c.group {
				got[strings.TrimPrefix(k, coll+"/")] = testkit.NormJSON(t, d.Doc)
			}
		}
	}
	var problems []string
	for id, w := range truth {
		if w.deleted || "tenant-"+fmt.Sprint(w.doc["tenant"]) != c.group {
			continue
		}
		b, _ := json.Marshal(w.doc)
		want := testkit.NormJSON(t, b)
		if g, ok := got[id]; !ok {
			problems = append(problems, id+" missing")
		} else if !reflect.DeepEqual(g, want) {
			problems = append(problems, fmt.Sprintf("%s is %v, want %v", id, g, want))
		}
		delete(got, id)
	}
	for id := range got {
		problems = append(problems, id+" extra")
	}
	for k := range dirty {
		problems = append(problems, k+" would be refetched")
	}
	sort.Strings(problems)
	if len(problems) > 5 {
		problems = append(problems[:5], fmt.Sprintf("… %d more", len(problems)-5))
	}
	return strings.Join(problems, "; ")
}

// TestSnapshotDifferential: a writer creates, updates (arrays that grow and
// shrink, so a patch applied onto a version it was not computed from shows),
// moves between tenants (when the tenant is not the partition key) and
// soft-deletes documents, hard-deleting some later, while clients join at
// random moments, each loading the snapshot of its tenant in pages and then
// following its group; a feed range splits meanwhile. At the end each client
// holds exactly its tenant's documents, with no gap left open and no patch
// that failed to apply, and every version a snapshot gave is one the stream
// sent, even though the stream and the snapshots read the change feed at
// different moments (the stream skips versions a snapshot may have read).
//
// The split's child leases start new pipelines: a shadow store (here in
// memory) gives them the audience each document was last sent to, without
// which a move right after the split would not reach the old group.
func TestSnapshotDifferential(t *testing.T) {
	for _, byTenant := range []bool{false, true} {
		t.Run(fmt.Sprintf("partitionKeyTenant=%v", byTenant), func(t *testing.T) {
			w := newWorld(t, 3)
			coll := collName
			if byTenant {
				coll = "bytenant"
				if err := w.srv.CreateContainer(dbName, coll, emulator.ContainerSpec{PartitionKeyPaths: []string{"/tenant"}, Partitions: 3}); err != nil {
					t.Fatal(err)
				}
			}
			out := &fanout{}
			shadows := &memShadows{recs: map[string]publish.ShadowRecord{}}
			cfg := w.config("s", lease.NewMemoryStore())
			cfg.Container = coll
			cfg.Feed.DeleteField = "/_deleted"
			cfg.Feed.PollInterval = 10 * time.Millisecond
			cfg.Publisher = out
			cfg.ShadowStore = shadows
			cfg.NewMapper = func() (*publish.Mapper, error) {
				return publish.NewMapper([]publish.Mapping{{Collection: coll, Hub: "h", Group: "tenant-{/tenant}"}},
					publish.MapperOptions{ShadowSize: 10000, Logger: logger(), Store: shadows})
			}
			cont := w.startSnap(cfg)

			tenants := []string{"t0", "t1", "t2"}
			seed := testkit.Seed(t)
			wr := newSnapWriter(w, coll, byTenant, tenants, seed)
			for range 60 {
				wr.step()
			}
			// The writer goes on until every client has joined, then for
			// 600 more changes, so clients also follow live changes.
			stop := make(chan struct{})
			writer := testkit.Go(t, func() error {
				stopped := (<-chan struct{})(stop)
				splitDone := false
				after := -1
				for after != 0 {
					select {
					case <-stopped:
						stopped, after = nil, 200
					case <-time.After(2 * time.Millisecond):
					}
					for range 3 {
						wr.step()
					}
					if wr.writes > 800 && !splitDone {
						// A range splits while clients join.
						splitDone = true
						rs, _ := w.srv.PartitionKeyRanges(dbName, coll)
						if _, err := w.srv.Split(dbName, coll, rs[0].ID); err != nil {
							return err
						}
					}
					if after > 0 {
						after--
					}
				}
				return nil
			})
			rng := rand.New(rand.NewPCG(seed, 7))
			var clients []*snapClient
			var cmu sync.Mutex
			var joins []<-chan error
			for i := range 12 {
				delay := time.Duration(rng.IntN(2000)) * time.Millisecond
				tenant := tenants[i%len(tenants)]
				joins = append(joins, testkit.Go(t, func() error {
					time.Sleep(delay) // a random moment to join: not a wait for a condition
					c := out.join(t, cont, coll, tenant)
					cmu.Lock()
					clients = append(clients, c)
					cmu.Unlock()
					return nil
				}))
			}
			for _, j := range joins {
				testkit.Recv(t, j, patience, "a client to join")
			}
			close(stop)
			testkit.Recv(t, writer, patience, "the writer to stop")

			testkit.Eventually(t, patience, "every client to hold its tenant's documents", func() string {
				truth := containerDocs(t, w.client(), coll)
				for i, c := range clients {
					if d := c.diff(t, coll, truth); d != "" {
						return fmt.Sprintf("client %d (%s): %s", i, c.group, d)
					}
				}
				return ""
			})
			var patches, gaps int
			for i, c := range clients {
				st := c.rep.Counts()
				if c.err != nil || st.Refetches != 0 {
					t.Errorf("client %d (%s): %v, %d refetch markers", i, c.group, c.err, st.Refetches)
				}
				// Every version a snapshot gave is one the stream sent
				// (every write here changes what is sent): a version the
				// stream skipped would have the client apply the next
				// patch onto a document it was not computed from.
				for _, v := range c.loaded {
					if !out.sent[v] {
						t.Errorf("client %d (%s): the snapshot gave %s, a version the stream never sent", i, c.group, v)
					}
				}
				patches += st.Patches
				gaps += st.Gaps
			}
			if patches == 0 {
				t.Error("no patch applied: the test did not exercise the version rule")
			}
			t.Logf("%d clients, %d writes, %d patches applied, %d gaps settled", len(clients), wr.writes, patches, gaps)
		})
	}
}

// memShadows is a publish.ShadowStore in memory, shared by the leases of
// one worker.
type memShadows struct {
	mu   sync.Mutex
	recs map[string]publish.ShadowRecord
}

func (m *memShadows) Load(_ context.Context, key string) (publish.ShadowRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[key]
	return r, ok, nil
}

func (m *memShadows) Save(_ context.Context, recs []publish.ShadowRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		if r.Prefix {
			continue // no truncates in Cosmos DB
		}
		if cur, ok := m.recs[r.Key]; !ok || wire.CompareVersions(r.V, cur.V) > 0 {
			m.recs[r.Key] = r
		}
	}
	return nil
}

// snapWriter changes documents at random.
type snapWriter struct {
	w        *world
	coll     string
	byTenant bool
	tenants  []string
	rng      *rand.Rand
	seq      int
	live     []map[string]any
	deleted  []softDeleted
	writes   int
}

// softDeleted is a document flagged deleted, hard-deleted a while later:
// the latest-version feed never shows a hard delete, so one that follows
// the flag before the stream read it would hide the delete from everyone.
type softDeleted struct {
	doc map[string]any
	at  time.Time
}

func newSnapWriter(w *world, coll string, byTenant bool, tenants []string, seed uint64) *snapWriter {
	return &snapWriter{w: w, coll: coll, byTenant: byTenant, tenants: tenants, rng: rand.New(rand.NewPCG(seed, 1))}
}

func (s *snapWriter) put(doc map[string]any) {
	s.writes++
	if _, err := s.w.srv.Upsert(dbName, s.coll, doc); err != nil {
		s.w.t.Error(err)
	}
}

func (s *snapWriter) step() {
	r := s.rng.IntN(100)
	switch {
	case r < 20 || len(s.live) < 10:
		s.seq++
		doc := map[string]any{"id": fmt.Sprintf("d%04d", s.seq), "pk": fmt.Sprintf("p%d", s.seq),
			"tenant": s.tenants[s.rng.IntN(len(s.tenants))], "n": 0, "tags": []any{}, "meta": map[string]any{"v": 0}}
		s.live = append(s.live, doc)
		s.put(doc)
	case r < 75:
		doc := s.live[s.rng.IntN(len(s.live))]
		doc["n"] = doc["n"].(int) + 1
		tags := doc["tags"].([]any)
		if len(tags) > 0 && s.rng.IntN(2) == 0 {
			tags = tags[1:]
		} else {
			tags = append(tags, fmt.Sprintf("x%d", s.rng.IntN(1000)))
		}
		doc["tags"] = slicesClone(tags)
		if s.rng.IntN(3) == 0 {
			doc["meta"] = map[string]any{"v": s.rng.IntN(5), "k": fmt.Sprint(s.rng.IntN(3))}
		}
		s.put(doc)
	case r < 87 && !s.byTenant:
		doc := s.live[s.rng.IntN(len(s.live))]
		doc["tenant"] = s.tenants[s.rng.IntN(len(s.tenants))]
		s.put(doc)
	case r < 95:
		i := s.rng.IntN(len(s.live))
		doc := s.live[i]
		s.live = append(s.live[:i], s.live[i+1:]...)
		doc["_deleted"] = true
		s.deleted = append(s.deleted, softDeleted{doc: doc, at: time.Now()})
		s.put(doc)
	case len(s.deleted) > 0 && time.Since(s.deleted[0].at) > time.Second:
		doc := s.deleted[0].doc
		s.deleted = s.deleted[1:]
		pk := doc["pk"]
		if s.byTenant {
			pk = doc["tenant"]
		}
		s.writes++
		if err := s.w.srv.Delete(dbName, s.coll, pk, doc["id"].(string)); err != nil {
			s.w.t.Error(err)
		}
	}
}

func slicesClone(s []any) []any { return append([]any(nil), s...) }
