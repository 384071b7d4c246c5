package browser_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/changecast/changecast/internal/testkit"
)

// TestConsole opens changecast's web console (/console/, the demo with
// server.adminToken) in headless Chromium with the token in the URL
// fragment (having checked that a wrong one makes it ask for the token),
// while the demo page is connected, and checks that it shows the
// slot streaming and the hub with its connection and the tenant's group,
// and the last change; then resets the checkpoint to "now" through the
// page, confirming its dialog, and checks that the admin API did it: the
// page shows the slot's new position, which is past every WAL written
// before the click, and the slot confirms it. Set
// CHANGECAST_CONSOLE_SCREENSHOT=docs/console.png to keep a screenshot.
func TestConsole(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	p, _ := d.openPage(t)
	defer p.quit(t)
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'paid' WHERE id = 2`)
	waitFor(t, 15*time.Second, "the change to be published", d.cc, func() bool {
		return metric(d.ops, "changecast_changes_published_total") >= 1
	})
	// The running worker exports the end-to-end lag of what it published.
	if n := metric(d.ops, "changecast_e2e_lag_seconds_count"); n < 1 {
		t.Errorf("changecast_e2e_lag_seconds_count = %v after a change was published, want at least 1", n)
	}
	shot := os.Getenv("CHANGECAST_CONSOLE_SCREENSHOT")
	if shot != "" {
		// The charts sample every 10 s: give them some traffic to show.
		for i := range 25 {
			testkit.Exec(t, d.db, `UPDATE orders SET qty = qty + 1 WHERE id = $1`, 1+i%4)
			time.Sleep(2 * time.Second)
		}
		if !filepath.IsAbs(shot) {
			shot = filepath.Join(d.root, shot)
		}
	}
	// WAL the slot has not confirmed: only a reset takes it past this
	// before the next heartbeat.
	testkit.Exec(t, d.db, `CREATE TABLE console_other AS SELECT generate_series(1, 1000) AS x`)
	var before string
	mustScan(t, d.db, &before, `SELECT pg_current_wal_lsn()::text`)
	var slot string
	mustScan(t, d.db, &slot, `SELECT slot_name FROM pg_replication_slots WHERE database = current_database()`)

	args := []string{filepath.Join(d.root, "test", "browser", "console.mjs"), d.ops + "/console/#token=" + d.adminToken, slot}
	if shot != "" {
		args = append(args, shot)
	}
	c := start(t, d.node, append(os.Environ(), "CONSOLE_SHOT_DELAY_MS=6000"), args...)
	var res struct {
		OK, Refused                                 bool
		Error, Stream, Hub, Changes, Dialog, Result string
		Stored                                      struct {
			Token bool
			Hash  string
		}
	}
	c.read(t, 90*time.Second, &res)
	if !res.OK {
		t.Fatalf("console.mjs: %s\n%s", res.Error, c.logs())
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("console: %s", b)
	if cells := strings.Split(res.Stream, "\t"); len(cells) < 3 || cells[0] != slot || cells[1] == "–" || !strings.HasPrefix(cells[2], "streaming") {
		t.Errorf("the streams table shows %q, want slot %s streaming, with its owner (the demo's lease.store is memory)", res.Stream, slot)
	}
	if f := strings.Fields(res.Hub); len(f) < 4 || f[0] != "orders" || f[1] != "1" || !strings.Contains(res.Hub, "tenant-acme (1/1)") {
		t.Errorf("the hubs table shows %q, want hub orders with 1 connection, in group tenant-acme", res.Hub)
	}
	if !strings.Contains(res.Changes, "public.orders") || !strings.Contains(res.Changes, "group tenant-acme") {
		t.Errorf("the last changes show %q, want the change to public.orders for tenant-acme", res.Changes)
	}
	if !res.Stored.Token || res.Stored.Hash != "" {
		t.Errorf("the page kept the token %v and left the fragment %q: want it in sessionStorage, the fragment gone", res.Stored.Token, res.Stored.Hash)
	}
	if !res.Refused {
		t.Errorf("with a wrong token the console did not ask for the token again")
	}
	if !strings.Contains(res.Dialog, "Reset the checkpoint to now") {
		t.Errorf("the confirmation said %q", res.Dialog)
	}
	// "Slot <slot> now at <LSN>." comes from the admin API's answer.
	var moved string
	if f := strings.Fields(strings.TrimSuffix(res.Result, ".")); len(f) == 5 && f[0] == "Slot" && f[1] == slot {
		moved = f[4]
	}
	at, err := pglogrepl.ParseLSN(moved)
	if err != nil {
		t.Fatalf("the page shows %q after the reset, want the slot's new position", res.Result)
	}
	if from, _ := pglogrepl.ParseLSN(before); at < from {
		t.Errorf("the reset moved the slot to %s, before the WAL written before the click (%s)", at, before)
	}
	var confirmed string
	mustScan(t, d.db, &confirmed, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot)
	if got, _ := pglogrepl.ParseLSN(confirmed); got < at {
		t.Errorf("slot confirms %s, want at least %s (the reset)", got, at)
	}
	if err := c.wait(10 * time.Second); err != nil {
		t.Errorf("console.mjs: %v", err)
	}
}
