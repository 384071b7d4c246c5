package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/admin"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/schema/wire"
)

// TestStatus: GET /admin/status, behind the bearer token, reports the
// changes the target accepted (not those it refused), the WARN and ERROR
// records logged (not INFO), a sample of the metrics, and why the streams
// could not be read, as JSON.
func TestStatus(t *testing.T) {
	reg := prometheus.NewRegistry()
	published := prometheus.NewCounter(prometheus.CounterOpts{Name: "changecast_changes_published_total"})
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "changecast_stream_lag_seconds"}, []string{"stream"})
	reg.MustRegister(published, lag)
	published.Add(7)
	lag.WithLabelValues("s1").Set(1.5)
	lag.WithLabelValues("s2").Set(4)

	mon := admin.NewMonitor(reg)
	mon.Hubs = func() any { return []map[string]any{{"hub": "orders", "connections": 3}} }
	fail := errors.New("refused")
	pub := mon.Publisher(publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		if b.Audience.Group == "bad" {
			return fail
		}
		return nil
	}))
	for _, g := range []string{"g1", "bad"} {
		b, err := publish.NewBatch(publish.Audience{Hub: "orders", Group: g, Method: "m"}, wire.Envelope{Changes: []wire.Entry{
			{Op: "upsert", Collection: "public.orders", ID: "1", V: "10.1", Doc: json.RawMessage(`{"secret":1}`), TS: "2026-01-01T00:00:00Z"},
			{Op: "delete", Collection: "public.orders", ID: "2", V: "10.2"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(context.Background(), b); (err != nil) != (g == "bad") {
			t.Fatalf("publish to %s: %v", g, err)
		}
	}
	log := slog.New(mon.LogHandler(slog.DiscardHandler)).With("part", "test")
	log.Info("not kept")
	log.Warn("slow target", "wait", "2s")
	log.WithGroup("g").Error("publish failed", "err", fail)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- mon.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The streams cannot be read: nothing listens there.
	cfg := &config.Config{Source: config.Source{Postgres: &config.PostgresSource{URL: "postgres://u@127.0.0.1:1/db?connect_timeout=2", Slot: "s"}},
		Lease: config.Lease{Processor: "p"}}
	srv := httptest.NewServer(admin.Handler("tok", cfg, mon))
	defer srv.Close()
	get := func(token string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := get("wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d, want 401", resp.StatusCode)
	}
	var st struct {
		Processor, Source, StreamsError string
		Hubs                            []map[string]any
		Changes                         []map[string]any
		Errors                          []admin.LogRecord
		Series                          []admin.Sample
		StreamLag                       map[string]float64
	}
	testkit.Until(t, 10*time.Second, "a sample of the metrics", func() bool {
		resp := get("tok")
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status: %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return len(st.Series) > 0
	})
	if st.Processor != "p" || st.Source != "postgres" || st.StreamsError == "" {
		t.Errorf("processor %q source %q streamsError %q: want p, postgres and why the slot could not be read", st.Processor, st.Source, st.StreamsError)
	}
	if len(st.Hubs) != 1 || st.Hubs[0]["hub"] != "orders" {
		t.Errorf("hubs %v", st.Hubs)
	}
	if len(st.Changes) != 2 || st.Changes[0]["id"] != "2" || st.Changes[0]["op"] != "delete" || st.Changes[1]["v"] != "10.1" ||
		st.Changes[1]["group"] != "g1" || st.Changes[1]["committed"] != "2026-01-01T00:00:00Z" {
		t.Errorf("changes (newest first, accepted only) %v", st.Changes)
	}
	for _, c := range st.Changes {
		if _, ok := c["doc"]; ok {
			t.Errorf("a change carries document contents: %v", c)
		}
	}
	if len(st.Errors) != 2 || st.Errors[0].Message != "publish failed" || st.Errors[0].Level != "ERROR" ||
		st.Errors[0].Attrs["g.err"] != "refused" || st.Errors[0].Attrs["part"] != "test" || st.Errors[1].Attrs["wait"] != "2s" {
		t.Errorf("errors (WARN and ERROR, newest first) %+v", st.Errors)
	}
	if len(st.Series) != 1 || st.Series[0].Lag != 4 || st.StreamLag["s1"] != 1.5 {
		t.Errorf("series %+v, stream lag %v: want one sample with the largest lag 4, s1 at 1.5", st.Series, st.StreamLag)
	}
}
