package changefeed

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestTrackerOutOfOrderAcks(t *testing.T) {
	var tr Tracker
	// Events: change, change, commit(p1), change, commit(p2), heartbeat(p3).
	a := tr.Add("")
	b := tr.Add("")
	c1 := tr.Add("p1")
	d := tr.Add("")
	c2 := tr.Add("p2")
	h := tr.Add("p3")
	for _, x := range []uint64{c1, c2, h, d} {
		tr.Ack(x)
	}
	if p, moved := tr.Advance(); moved || p != "" {
		t.Fatalf("moved to %q before the first change was acked", p)
	}
	tr.Ack(b)
	if _, moved := tr.Advance(); moved {
		t.Fatal("moved with change a unacked")
	}
	tr.Ack(a)
	if p, moved := tr.Advance(); !moved || p != "p3" || tr.Pending() != 0 {
		t.Fatalf("watermark %q moved=%v pending=%d", p, moved, tr.Pending())
	}
}

func TestTrackerRandom(t *testing.T) {
	var tr Tracker
	rng := rand.New(rand.NewPCG(1, 2))
	var open []uint64
	pos := map[uint64]Position{}
	acked := map[uint64]bool{}
	first := uint64(0)
	var want Position
	for i := 0; i < 20000; i++ {
		p := Position("")
		if i%3 == 2 {
			p = Position(fmt.Sprintf("%08d", i))
		}
		tk := tr.Add(p)
		pos[tk] = p
		open = append(open, tk)
		for len(open) > 0 && rng.IntN(2) == 0 {
			j := rng.IntN(len(open))
			tr.Ack(open[j])
			acked[open[j]] = true
			open = append(open[:j], open[j+1:]...)
		}
		got, _ := tr.Advance()
		// The watermark is the last position of the acked prefix.
		for acked[first] {
			if pos[first] != "" {
				want = pos[first]
			}
			first++
		}
		if got != want {
			t.Fatalf("step %d: watermark %q, want %q", i, got, want)
		}
	}
}
