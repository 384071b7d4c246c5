package lease_test

import (
	"context"
	"fmt"

	"github.com/changecast/changecast/lease"
)

// A PostgreSQL source elects one streaming instance per slot with a single
// lease; a Cosmos source would bootstrap one ForRange lease per feed range.
func ExampleManager() {
	store := lease.NewMemoryStore()
	ctx, cancel := context.WithCancel(context.Background())
	m, err := lease.NewManager(lease.Config{
		Store:  store,
		Prefix: "orders",
		Owner:  "pod-0",
		Bootstrap: func(context.Context) ([]*lease.Lease, error) {
			return []*lease.Lease{lease.ForPartition("orders", "changecast_slot")}, nil
		},
		Worker: lease.WorkerFunc(func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			fmt.Printf("streaming %s from %q\n", l.Token, l.Continuation)
			// ... read, publish, and only then:
			if err := cp.Checkpoint(ctx, "0/16B3748"); err != nil {
				return err // IsLost(err): drop in-flight work
			}
			cancel() // for the example: shut down
			<-ctx.Done()
			return nil
		}),
	})
	if err != nil {
		panic(err)
	}
	if err := m.Run(ctx); err != nil {
		panic(err)
	}
	ls, _ := store.List(context.Background(), "orders"+lease.Separator)
	fmt.Printf("%s owner=%q continuation=%s\n", ls[0].ID, ls[0].Owner, ls[0].Continuation)
	// Output:
	// streaming changecast_slot from ""
	// orders..changecast_slot owner="" continuation=0/16B3748
}
