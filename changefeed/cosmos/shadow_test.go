package cosmos_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/pgshadow"
	"github.com/changecast/changecast/schema/wire"
)

// opsRecorder remembers the wire changes of one document, in order.
type opsRecorder struct {
	next publish.Publisher
	id   string
	mu   sync.Mutex
	ops  []wire.Entry
}

func (r *opsRecorder) Publish(ctx context.Context, b *publish.Batch) error {
	if err := r.next.Publish(ctx, b); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range b.Envelope.Changes {
		if c.ID == r.id {
			r.ops = append(r.ops, c)
		}
	}
	return nil
}

func (r *opsRecorder) last() (wire.Entry, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ops) == 0 {
		return wire.Entry{}, 0
	}
	return r.ops[len(r.ops)-1], len(r.ops)
}

// TestPersistentShadowAcrossOwners: with publish.shadowStore, the next owner
// of a lease (here after the first worker stopped) sends a patch against
// the version the first one published; without it, the whole document.
func TestPersistentShadowAcrossOwners(t *testing.T) {

	for _, persistent := range []bool{true, false} {
		t.Run(fmt.Sprintf("store=%v", persistent), func(t *testing.T) {
			w := newWorld(t, 1)
			store := lease.NewMemoryStore()
			rec := &opsRecorder{next: w, id: "doc"}
			var shadow publish.ShadowStore
			if persistent {
				url := testkit.Postgres(t) // only the store needs PostgreSQL
				ctx := context.Background()
				pool := testkit.Pool(t, url)
				table := fmt.Sprintf("shadow_test_%d", time.Now().UnixNano())
				t.Cleanup(func() { pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
				var err error
				if shadow, err = pgshadow.New(ctx, pool, table); err != nil {
					t.Fatal(err)
				}
			}
			config := func(owner string) workerConfig {
				c := w.config(owner, store)
				c.Publisher = rec
				c.NewMapper = func() (*publish.Mapper, error) {
					return publish.NewMapper(mappings, publish.MapperOptions{ShadowSize: 100, Logger: logger(), Store: shadow})
				}
				c.ShadowStore = shadow
				return c
			}
			// Padding keeps a patch (a few fields) well below the whole
			// document whatever _ts does, so the op says which was sent.
			padding := map[string]any{"padding": strings.Repeat("x", 1000)}
			a := w.start(config("a"))
			w.write("doc", padding)
			w.waitDelivered()
			first, _ := rec.last()
			if err := a.stop(); err != nil {
				t.Fatal(err)
			}
			w.start(config("b"))
			w.write("doc", padding)
			w.waitDelivered()
			got, n := rec.last()
			if persistent {
				if got.Op != wire.OpPatch || got.PV != first.V {
					t.Fatalf("after the takeover: %+v (after %d changes), want a patch from v%s", got, n, first.V)
				}
			} else if got.Op != wire.OpUpsert {
				t.Fatalf("without a store the new owner has no previous version: %+v", got)
			}
		})
	}
}
