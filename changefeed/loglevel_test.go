package changefeed

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/changecast/changecast/internal/testkit"
)

// loud returns the lines of a text log at WARN or ERROR.
func loud(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN ") || strings.Contains(l, "level=ERROR ") {
			out = append(out, l)
		}
	}
	return out
}

func bufferLogger() (*slog.Logger, *testkit.Buffer) {
	b := &testkit.Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// The processor returns its failures to the lease manager, which logs each
// event once (one line per event: the processor, the runner and the
// manager each logged the same failure at ERROR, and a lost lease at WARN
// even when a checkpoint reset caused it).
func TestProcessorLeavesTheLoudLineToTheLeaseManager(t *testing.T) {
	t.Run("source failure", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			log, logs := bufferLogger()
			boom := errors.New("boom")
			err := NewProcessor(ProcessorConfig{Logger: log}, &fakeSource{events: changes(2), err: boom}, &fakeConsumer{auto: true}).Run(context.Background())
			if !errors.Is(err, boom) {
				t.Fatalf("Run = %v", err)
			}
			if l := loud(logs.String()); len(l) > 0 {
				t.Errorf("the processor logged loud lines:\n%s", strings.Join(l, "\n"))
			}
		})
	})
	t.Run("lease lost", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			log, logs := bufferLogger()
			ctx, cancel := context.WithCancelCause(context.Background())
			done := make(chan error)
			go func() {
				done <- NewProcessor(ProcessorConfig{Logger: log}, &fakeSource{events: changes(3)}, &fakeConsumer{hang: true}).Run(ctx)
			}()
			synctest.Wait()
			cancel(lostErr{})
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if l := loud(logs.String()); len(l) > 0 {
				t.Errorf("the processor logged loud lines:\n%s", strings.Join(l, "\n"))
			}
		})
	})
}
