package chaos_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/internal/testkit"
)

// appToken is an app user's token, as the app's login would mint it.
func appToken(t testing.TB, sub, tid string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "tid": tid, "iss": appIssuer, "aud": appAudience,
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(appSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// historyKeeps is the workers' history.maxAge: a client away longer has
// lost its streams' history and must reload.
const historyKeeps = 15 * time.Second

// waitServing waits until the balancer serves snapshots (a worker is
// ready and reads beside its stream) rather than 503, and fails the test
// unless the answer is then 200: both sources serve snapshots, so a 404 or
// 501 is a regression, not a reason to skip the run.
func waitServing(t *testing.T, bal *balancer) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var status int
	testkit.Eventually(t, 60*time.Second, "a worker to serve snapshots through the balancer", func() string {
		req, _ := http.NewRequest("GET", bal.URL+"/snapshot?hub="+hubName+"&limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+appToken(t, "probe", "probe"))
		resp, err := c.Do(req)
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		status = resp.StatusCode
		if status == http.StatusServiceUnavailable {
			return "503"
		}
		return ""
	})
	if status != http.StatusOK {
		t.Fatalf("GET /api/snapshot answered %d, want 200: the clients build their replicas from snapshots", status)
	}
}

// chaos runs a plan against the processes of a run.
type chaos struct {
	t     *testing.T
	start time.Time
	slots []*workerSlot
	yaml  string // the workers' config
	bal   *balancer
	nc    *nodeClients
	// pgRestart restarts PostgreSQL; split splits a range. Either may be nil.
	pgRestart func() error
	split     func() (string, error)

	kills, restarts, pgRestarts, splits, drops int
}

func (c *chaos) logf(format string, args ...any) {
	c.t.Logf("%6.1fs  %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

// run carries out the plan from now on; it returns when every event is
// done (PostgreSQL back, every killed worker started again).
func (c *chaos) run(plan []event, killActive bool) {
	t := c.t
	c.start = time.Now()
	queue := slices.Clone(plan)
	var async sync.WaitGroup
	defer async.Wait()
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		// Waiting here is what makes the chaos: the schedule's times.
		if d := time.Until(c.start.Add(e.at)); d > 0 {
			time.Sleep(d)
		}
		switch e.kind {
		case evDrop:
			c.drops++
			c.nc.drop(e.client, e.away)
			if e.away >= 10*time.Second {
				c.logf("client %d dropped, away for %s", e.client, secs(e.away))
			}
		case evKill:
			s := c.victim(e, killActive)
			if s == nil {
				c.logf("kill: no worker alive")
				continue
			}
			s.p.kill()
			c.kills++
			c.logf("SIGKILL %s (%s); restart in %s", s.name, s.p.name, secs(e.restartAfter))
			r := event{at: time.Since(c.start) + e.restartAfter, kind: evRestart, slot: slices.Index(c.slots, s)}
			i, _ := slices.BinarySearchFunc(queue, r, func(a, b event) int { return int(a.at - b.at) })
			queue = slices.Insert(queue, i, r)
		case evRestart:
			s := c.slots[e.slot]
			if !s.alive() {
				s.start(t, c.yaml)
				c.restarts++
				c.logf("started %s again (%s)", s.name, s.p.name)
			}
		case evPGRestart:
			c.pgRestarts++
			c.logf("PostgreSQL restart")
			async.Add(1)
			go func() {
				defer async.Done()
				start := time.Now()
				if err := c.pgRestart(); err != nil {
					t.Errorf("PostgreSQL restart: %v", err)
					return
				}
				c.logf("PostgreSQL back after %s", secs(time.Since(start)))
			}()
		case evSplit:
			children, err := c.split()
			if err != nil {
				t.Errorf("split: %v", err)
				continue
			}
			c.splits++
			c.logf("split: ranges %s", children)
		}
	}
}

// victim is the worker a kill event stops: the one that streams (it
// answers ready; waiting a little for one when a takeover is under way),
// or the event's slot.
func (c *chaos) victim(e event, killActive bool) *workerSlot {
	if !killActive {
		if s := c.slots[e.slot%len(c.slots)]; s.alive() {
			return s
		}
	}
	var ready []*workerSlot
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ready = c.bal.readySlots()
		if len(ready) > 0 {
			break
		}
	}
	for _, s := range ready {
		if s.alive() {
			return s
		}
	}
	for _, s := range c.slots {
		if s.alive() {
			return s
		}
	}
	return nil
}

// writerStats counts what a writer did.
type writerStats struct {
	txs, errors, reconnects atomic.Int64
}

// steady calls step rate times a second until ctx ends; a failing step
// (the database restarting) is counted, and reconnect is called until it
// succeeds before the next.
func steady(ctx context.Context, rate int, st *writerStats, step func() error, reconnect func() error) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	broken := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if broken {
			if reconnect() != nil {
				continue
			}
			st.reconnects.Add(1)
			broken = false
		}
		if err := step(); err != nil {
			st.errors.Add(1)
			broken = true
			continue
		}
		st.txs.Add(1)
	}
}
