package lease

import (
	"math/rand/v2"
	"time"
)

// pick is one lease the balancer wants, and whether taking it is a steal.
type pick struct {
	lease *Lease
	steal bool
}

// plan is the equal-partitions balancing strategy of the .NET processor
// (cosmos.md §3.5), as a pure function over one listing:
//
//   - leases owned by me that I do not run (a restart with a stable owner
//     name, or a lease I lost by a conflict but still own) are taken back
//     first: they already count as mine;
//   - target = ceil(leases / instances), at least 1, at most maxLeases
//     when > 0; instances are the owners of live leases plus me (an instance
//     that holds nothing is invisible to the others until it takes one);
//   - below target, take free (unowned or expired) leases, in random order
//     so that instances starting together spread instead of colliding;
//   - only if none is free, steal ONE lease from the most loaded owner, and
//     only if it holds more than target (more than target-1 when I need
//     more than one), so that a balanced state (counts differing by at
//     most one) is stable.
//
// Stealing one lease per cycle bounds the duplicates a rebalance causes: the
// victim keeps working until its next renew or checkpoint fails.
func plan(leases []*Lease, me string, running func(id string) bool, expiry time.Duration, maxLeases int, rnd *rand.Rand) []pick {
	if len(leases) == 0 {
		return nil
	}
	counts := map[string]int{me: 0}
	byOwner := map[string][]*Lease{}
	var free []*Lease
	var picks []pick
	for _, l := range leases {
		if l.Expired(expiry) {
			if !running(l.ID) {
				free = append(free, l)
			}
			continue
		}
		counts[l.Owner]++
		byOwner[l.Owner] = append(byOwner[l.Owner], l)
		if l.Owner == me && !running(l.ID) {
			picks = append(picks, pick{lease: l})
		}
	}

	target := 1
	if n, w := len(leases), len(counts); n > w {
		target = (n + w - 1) / w
	}
	if maxLeases > 0 && target > maxLeases {
		target = maxLeases
	}
	need := target - counts[me]
	if need <= 0 {
		return picks
	}
	if len(free) > 0 {
		rnd.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		for _, l := range free[:min(need, len(free))] {
			picks = append(picks, pick{lease: l})
		}
		return picks
	}

	victim, most := "", 0
	for o, n := range counts {
		// Ties go to the smaller name so that every instance picks the
		// same victim from the same listing.
		if o != me && (n > most || n == most && o < victim) {
			victim, most = o, n
		}
	}
	limit := target
	if need > 1 {
		limit--
	}
	if victim != "" && most > limit {
		vl := byOwner[victim]
		picks = append(picks, pick{lease: vl[rnd.IntN(len(vl))], steal: true})
	}
	return picks
}
