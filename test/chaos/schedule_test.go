package chaos_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The chaos schedule is planned up front from a seed, so a run can be
// repeated (CHAOS_SEED); only what the processes do in between is left to
// the machine.

type eventKind string

const (
	evKill      eventKind = "kill"       // SIGKILL a worker (the active one, or slot), restart it after restartAfter
	evRestart   eventKind = "restart"    // start a killed worker again
	evPGRestart eventKind = "pg-restart" // restart PostgreSQL (pg.sh restart)
	evSplit     eventKind = "split"      // split a Cosmos DB partition key range
	evDrop      eventKind = "drop"       // close a client's connections, keep it away for away
)

type event struct {
	at           time.Duration
	kind         eventKind
	slot         int // evKill with killActive false, evRestart: the worker slot
	restartAfter time.Duration
	client       int
	away         time.Duration
}

func (e event) String() string {
	switch e.kind {
	case evKill:
		return fmt.Sprintf("%s kill (restart after %s)", secs(e.at), secs(e.restartAfter))
	case evDrop:
		return fmt.Sprintf("%s drop client %d for %s", secs(e.at), e.client, secs(e.away))
	}
	return fmt.Sprintf("%s %s", secs(e.at), e.kind)
}

// count is how many events of kind a plan holds.
func count(evs []event, kind eventKind) int {
	n := 0
	for _, e := range evs {
		if e.kind == kind {
			n++
		}
	}
	return n
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

type planConfig struct {
	duration time.Duration
	clients  int
	workers  int
	// killActive kills the worker that is streaming (PostgreSQL);
	// otherwise a worker slot drawn from the seed (Cosmos DB).
	killActive bool
	pgRestart  bool
	split      bool
	// long are the clients kept away for longAway once: longer than the
	// history keeps, so they must resync.
	long     []int
	longAway time.Duration
}

// makePlan draws the schedule of a run: worker kills (each followed by a
// restart, at most one worker down at a time), one PostgreSQL restart or
// one split around the middle, every client dropping 1–3 times (more in
// longer runs: up to one every 30 s; away 4 s at most) and the long
// clients kept away longAway once. Everything ends 5 s
// before the run does.
func makePlan(seed uint64, c planConfig) []event {
	rng := rand.New(rand.NewPCG(seed, seed^0x5deece66d))
	d := c.duration
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var evs []event
	// The middle event: no kill within 5 s before it or 8 s after it, so
	// each is seen on its own.
	var mid time.Duration = -1
	if c.pgRestart || c.split {
		mid = between(d*2/5, d*3/5)
		kind := evPGRestart
		if c.split {
			kind = evSplit
		}
		evs = append(evs, event{at: mid, kind: kind})
	}
	for at := between(5*time.Second, 10*time.Second); ; {
		restart := between(time.Second, 5*time.Second)
		if mid >= 0 && at+restart >= mid-5*time.Second && at <= mid+8*time.Second {
			at = mid + 8*time.Second + between(0, 2*time.Second)
		}
		if at+restart > d-8*time.Second {
			break
		}
		evs = append(evs, event{at: at, kind: evKill, slot: rng.IntN(max(c.workers, 1)), restartAfter: restart})
		at += restart + between(5*time.Second, 10*time.Second)
	}
	for i := 0; i < c.clients; i++ {
		var busy [2]time.Duration // the long drop, if any
		if slices.Contains(c.long, i) && d >= c.longAway+15*time.Second {
			at := between(4*time.Second, d-c.longAway-10*time.Second)
			evs = append(evs, event{at: at, kind: evDrop, client: i, away: c.longAway})
			busy = [2]time.Duration{at - 2*time.Second, at + c.longAway + 6*time.Second}
		}
		n := 1 + rng.IntN(max(3, int(d/(30*time.Second))))
		for range n {
			at := between(2*time.Second, d-10*time.Second)
			away := between(0, 2*time.Second)
			if rng.IntN(3) == 0 {
				away = between(2*time.Second, 4*time.Second)
			}
			if at >= busy[0] && at <= busy[1] {
				continue
			}
			evs = append(evs, event{at: at, kind: evDrop, client: i, away: away})
		}
	}
	slices.SortStableFunc(evs, func(a, b event) int { return int(a.at - b.at) })
	return evs
}

// describe summarizes a plan in a few lines.
func describe(evs []event) string {
	var kills, others, longs []string
	drops := 0
	for _, e := range evs {
		switch {
		case e.kind == evKill:
			kills = append(kills, fmt.Sprintf("%s (+%s)", secs(e.at), secs(e.restartAfter)))
		case e.kind == evDrop && e.away >= 10*time.Second:
			longs = append(longs, fmt.Sprintf("client %d at %s", e.client, secs(e.at)))
			drops++
		case e.kind == evDrop:
			drops++
		default:
			others = append(others, e.String())
		}
	}
	return fmt.Sprintf("schedule: %d kills at %s; %s; %d client drops, long ones: %s",
		len(kills), strings.Join(kills, ", "), strings.Join(others, ", "), drops, strings.Join(longs, ", "))
}

// TestPlan checks the schedule's promises: repeatable from its seed,
// done 5 s before the end, one worker down at a time, nothing killed
// around the middle event, every client dropped, the long clients away
// for the whole longAway.
func TestPlan(t *testing.T) {
	for _, d := range []time.Duration{60 * time.Second, 240 * time.Second} {
		for seed := uint64(1); seed <= 50; seed++ {
			c := planConfig{duration: d, clients: 20, workers: 2, killActive: true, pgRestart: true,
				long: []int{1, 6, 11}, longAway: 30 * time.Second}
			p := makePlan(seed, c)
			if !slices.Equal(p, makePlan(seed, c)) {
				t.Fatalf("seed %d: two plans differ", seed)
			}
			var mid time.Duration
			var kills int
			var end time.Duration // the last kill's restart
			dropped := map[int]int{}
			long := map[int]bool{}
			for _, e := range p {
				switch e.kind {
				case evPGRestart:
					mid = e.at
				case evKill:
					kills++
					if e.at < end {
						t.Fatalf("seed %d: a kill at %v while a worker is down until %v", seed, e.at, end)
					}
					end = e.at + e.restartAfter
					if end > d-5*time.Second {
						t.Fatalf("seed %d: restart at %v, after %v", seed, end, d-5*time.Second)
					}
				case evDrop:
					dropped[e.client]++
					if e.at+e.away > d-5*time.Second {
						t.Fatalf("seed %d: %v ends after %v", seed, e, d-5*time.Second)
					}
					if e.away == c.longAway {
						long[e.client] = true
					}
				}
			}
			for _, e := range p {
				if e.kind == evKill && e.at+e.restartAfter >= mid-5*time.Second && e.at <= mid+8*time.Second {
					t.Fatalf("seed %d: %v too close to the restart at %v", seed, e, mid)
				}
			}
			if mid == 0 || kills < 2 || len(dropped) != 20 || len(long) != 3 {
				t.Fatalf("seed %d, %v: restart at %v, %d kills, %d clients dropped, %d long:\n%s", seed, d, mid, kills, len(dropped), len(long), describe(p))
			}
		}
	}
}

// TestRepairs checks the bound on repairs: a reload per planned history
// loss (a drop longer than the history keeps) and no refetch.
func TestRepairs(t *testing.T) {
	plan := []event{
		{kind: evDrop, client: 1, away: 30 * time.Second},
		{kind: evDrop, client: 1, away: 2 * time.Second},
		{kind: evDrop, client: 2, away: 4 * time.Second},
		{kind: evKill},
	}
	report := func(i, reloads, refetches int) clientReport {
		return clientReport{I: i, Client: map[string]int{"reloads": reloads}, Stats: map[string]int{"refetches": refetches}}
	}
	if got := repairs([]clientReport{report(0, 0, 0), report(1, 1, 0), report(2, 0, 0)}, plan, 15*time.Second); len(got) != 0 {
		t.Errorf("repairs the plan explains were flagged: %v", got)
	}
	got := repairs([]clientReport{report(0, 1, 0), report(1, 2, 0), report(2, 0, 1)}, plan, 15*time.Second)
	if len(got) != 3 || !strings.Contains(got[0], "client 0 reloaded") || !strings.Contains(got[1], "client 1 reloaded its snapshot 2 times; the plan lost its history 1 times") ||
		!strings.Contains(got[2], "client 2 refetched 1") {
		t.Errorf("repairs beyond the plan: %q", got)
	}
}
