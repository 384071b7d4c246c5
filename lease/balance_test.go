package lease

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	const exp = time.Minute
	now := time.Now()
	mk := func(spec string) []*Lease {
		// spec: one letter per lease: its owner; '.' unowned, uppercase
		// expired.
		var out []*Lease
		for i, c := range spec {
			l := &Lease{ID: fmt.Sprintf("p..%d", i), ReadAt: now, Timestamp: now}
			switch {
			case c == '.':
			case c >= 'A' && c <= 'Z':
				l.Owner = string(c + 'a' - 'A')
				l.Timestamp = now.Add(-2 * exp)
			default:
				l.Owner = string(c)
			}
			out = append(out, l)
		}
		return out
	}
	none := func(string) bool { return false }
	for _, tc := range []struct {
		name    string
		leases  string
		running []int
		max     int
		take    int  // how many picks
		steal   bool // the pick is a steal
		from    string
	}{
		{name: "empty", leases: ""},
		{name: "all free, alone", leases: "........", take: 8},
		{name: "expired count as free", leases: "AAAA", take: 4},
		{name: "fair share of free", leases: "bbbb....", take: 4},
		{name: "cap", leases: "........", max: 3, take: 3},
		{name: "a newcomer steals from the first of equals", leases: "bbbccc", take: 1, steal: true, from: "b"},
		{name: "balanced 3-3-2 as me", leases: "mmbbbcc", running: []int{0, 1}, take: 0},
		{name: "steal one from the most loaded", leases: "bbbbbcc", take: 1, steal: true, from: "b"},
		{name: "steal one even when needing many", leases: "bbbbbbbb", take: 1, steal: true, from: "b"},
		{name: "no steal from an equal", leases: "b", take: 0},
		{name: "no steal when at target", leases: "bbbmm", running: []int{3, 4}, take: 0},
		{name: "free before steal", leases: "bbbbbb.", take: 1},
		{name: "take back own leases", leases: "mmbb", running: []int{0}, take: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := mk(tc.leases)
			running := none
			if tc.running != nil {
				running = func(id string) bool {
					return slices.ContainsFunc(tc.running, func(i int) bool { return id == fmt.Sprintf("p..%d", i) })
				}
			}
			picks := plan(ls, "m", running, exp, tc.max, rand.New(rand.NewPCG(1, 2)))
			if len(picks) != tc.take {
				t.Fatalf("%d picks %v, want %d", len(picks), picks, tc.take)
			}
			for _, p := range picks {
				if p.steal != tc.steal || (tc.steal && p.lease.Owner != tc.from) {
					t.Fatalf("pick %+v, want steal=%v from %q", p, tc.steal, tc.from)
				}
				if running(p.lease.ID) {
					t.Fatalf("picked running lease %s", p.lease.ID)
				}
			}
		})
	}
}
