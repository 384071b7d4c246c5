package postgres

import (
	"strconv"
	"testing"
)

// TestWindowsBoundBulkTransactions: a transaction's record keeps at most
// maxTxnKeys keys; past that its collection is "wide", and a window of
// that collection the transaction was invisible to reads its whole round
// again (as after a truncate), while a window of another collection is
// untouched and a window that saw the transaction is not affected.
func TestWindowsBoundBulkTransactions(t *testing.T) {
	var r txnRecord
	r.reset(7)
	for i := range maxTxnKeys + 10 {
		r.add(docKey{"public.big", strconv.Itoa(i)})
	}
	r.add(docKey{"public.small", "1"})
	if len(r.keys) != maxTxnKeys || len(r.wide) != 2 {
		t.Fatalf("record of a bulk transaction: %d keys, wide %v", len(r.keys), r.wide)
	}

	ws := &windows{}
	big, small, seen := ws.register("public.big", false), ws.register("public.other", false), ws.register("public.big", false)
	invisible := &xidSnapshot{xmin: 7, xmax: 8, xip: map[uint32]bool{7: true}}
	ws.setSnapshot(big, invisible, nil)
	ws.setSnapshot(small, invisible, nil)
	ws.setSnapshot(seen, &xidSnapshot{xmin: 8, xmax: 8}, nil)
	ws.commit(&r, 100, nil)
	if !big.all {
		t.Fatal("a window of the bulk-loaded collection was not made to read its round again")
	}
	if small.all || len(small.stale) != 0 {
		t.Fatalf("a window of another collection: all %v, stale %v", small.all, small.stale)
	}
	if seen.all || len(seen.stale) != 0 {
		t.Fatalf("a window whose SELECT saw the transaction: all %v, %d stale", seen.all, len(seen.stale))
	}
	r.reset(8)
	if len(r.keys) != 0 || len(r.wide) != 0 || r.xid != 8 {
		t.Fatalf("after reset: %+v", r)
	}
}
