package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/internal/testkit"
)

// TestTransientErrorsGetLouder: a server that cannot be reached is retried,
// not fatal; the source is not ready meanwhile, logs at WARN first and at
// ERROR once the failure has lasted ErrorAfter, with durations as text.
// Needs no server: nothing listens on the address.
func TestTransientErrorsGetLouder(t *testing.T) {
	var logs testkit.Buffer
	src := postgres.New(postgres.Config{URL: "postgres://postgres@" + testkit.FreeAddr(t) + "/x?connect_timeout=2", Slot: "s", Publication: "p",
		Tables: []string{"public.t"}, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ErrorAfter: 300 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := testkit.Go(t, func() error { return src.Run(ctx, make(chan changefeed.Event)) })
	testkit.Until(t, 20*time.Second, "an ERROR after ErrorAfter", func() bool { return strings.Contains(logs.String(), `"level":"ERROR"`) })
	if src.Ready() {
		t.Error("ready while the server cannot be reached")
	}
	cancel()
	if err := testkit.Recv(t, done, 10*time.Second, "Run to return"); err != nil {
		t.Fatalf("Run = %v, want nil after a cancel (the failure is transient)", err)
	}
	out := logs.String()
	if w, e := strings.Index(out, `"level":"WARN"`), strings.Index(out, `"level":"ERROR"`); w < 0 || w > e {
		t.Errorf("want WARN lines before the first ERROR:\n%s", out)
	}
	if !strings.Contains(out, `"next_in":"`) || strings.Contains(out, `"next_in":2`) {
		t.Errorf("next_in is not a duration's text:\n%s", out)
	}
	if n := strings.Count(out, `"level":"ERROR"`); n != 1 {
		t.Errorf("%d ERROR lines within the first 30 s of failing, want 1:\n%s", n, out)
	}
}

// TestSlotHeldAfterResetIsExpected: right after the server ended the
// session (a checkpoint reset), the ended walsender may hold the slot a
// moment longer (55006, as Run wraps it): expected, not a WARN; later, or
// any other error, is a failure.
func TestSlotHeldAfterResetIsExpected(t *testing.T) {
	inUse := fmt.Errorf("slot s is in use by another connection: %w", &pgconn.PgError{Code: "55006", Message: `replication slot "s" is active for PID 1`})
	if !postgres.HeldAfterReset(inUse, time.Second) {
		t.Error("55006 a second after the end: not taken for the ended walsender")
	}
	if postgres.HeldAfterReset(inUse, time.Minute) {
		t.Error("55006 a minute after the end: still taken for the ended walsender")
	}
	if postgres.HeldAfterReset(&pgconn.PgError{Code: "28P01"}, time.Second) || postgres.HeldAfterReset(errors.New("dial tcp: refused"), 0) {
		t.Error("another error taken for the slot held after a reset")
	}
}
