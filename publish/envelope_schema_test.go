package publish_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/history"
	"github.com/changecast/changecast/schema/wire"
)

// envelopeSchema compiles `changecast envelope schema`
// (wire.EnvelopeJSONSchema).
func envelopeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := wire.EnvelopeJSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	return testkit.JSONSchema(t, raw)[0]
}

// The envelope JSON Schema accepts the envelopes the pipeline really sends
// (through a history, so with epoch and offset), of every op: upsert,
// patch, delete (a routing move and a delete), refetch (too large) and
// truncate; and it refuses envelopes that break the contract.
func TestEnvelopeSchemaValidatesPipelineEnvelopes(t *testing.T) {
	schema := envelopeSchema(t)
	ch := func(id string, op changefeed.Op, v string, after map[string]any) changefeed.Event {
		return changefeed.Event{Change: &changefeed.Change{Collection: "c", ID: id, Op: op, Version: v, After: after,
			CommitTime: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}}
	}
	pos := func(p string) changefeed.Event { return changefeed.Event{Position: changefeed.Position(p)} }
	// A note long enough that a patch is smaller than the document.
	note := strings.Repeat("n", 300)
	src := &fakeSource{events: []changefeed.Event{
		ch("1", changefeed.Insert, "1", map[string]any{"id": 1, "g": "a", "s": "new", "note": note}), pos("p1"),
		ch("1", changefeed.Update, "2", map[string]any{"id": 1, "g": "a", "s": "paid", "note": note}), pos("p2"),
		ch("1", changefeed.Update, "3", map[string]any{"id": 1, "g": "b", "s": "paid", "note": note}), pos("p3"),
		ch("2", changefeed.Insert, "4", map[string]any{"id": 2, "g": "a", "s": strings.Repeat("x", 4000)}), pos("p4"),
		ch("1", changefeed.Delete, "5", nil), pos("p5"),
		{Change: &changefeed.Change{Collection: "c", Op: changefeed.Truncate, Version: "6"}}, pos("p6"),
	}}
	m, err := publish.NewMapper([]publish.Mapping{{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}},
		publish.MapperOptions{ShadowSize: 1000, MaxChangeBytes: 2000, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	stop := start(t, src, history.NewPublisher(history.NewMemory(history.Limits{}), rec), m, publish.PipelineConfig{})
	testkit.Until(t, 10*time.Second, "the stream to be published", func() bool { return src.last() == "p6" })
	if err := stop(nil); err != nil {
		t.Fatal(err)
	}

	ops := map[string]bool{}
	rec.mu.Lock()
	batches := rec.batches
	rec.mu.Unlock()
	for _, b := range batches {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b.Payload))
		if err != nil {
			t.Fatalf("envelope %s: %v", b.Payload, err)
		}
		if err := schema.Validate(v); err != nil {
			t.Errorf("the pipeline's envelope does not validate against `changecast envelope schema`: %v\n%s", err, b.Payload)
		}
		var env wire.Envelope
		if err := json.Unmarshal(b.Payload, &env); err != nil {
			t.Fatal(err)
		}
		if env.Epoch == "" || env.Offset == 0 {
			t.Errorf("envelope without epoch and offset through a history: %s", b.Payload)
		}
		for _, c := range env.Changes {
			ops[c.Op] = true
		}
	}
	for _, op := range []string{wire.OpUpsert, wire.OpPatch, wire.OpDelete, wire.OpRefetch, wire.OpTruncate} {
		if !ops[op] {
			t.Errorf("no %s among the pipeline's envelopes (ops %v): the test should cover every op", op, ops)
		}
	}

	for name, env := range map[string]string{
		"an unknown op":       `{"source":"s","hub":"h","changes":[{"op":"merge","collection":"c","id":"1","v":"1"}]}`,
		"a change without v":  `{"source":"s","hub":"h","changes":[{"op":"upsert","collection":"c","id":"1","doc":{}}]}`,
		"no hub":              `{"source":"s","changes":[]}`,
		"changes not a list":  `{"source":"s","hub":"h","changes":{"op":"delete"}}`,
		"a string offset":     `{"source":"s","hub":"h","epoch":"e","offset":"7","changes":[]}`,
		"a version as number": `{"source":"s","hub":"h","changes":[{"op":"delete","collection":"c","id":"1","v":5}]}`,
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(env))
		if err != nil {
			t.Fatal(err)
		}
		if schema.Validate(v) == nil {
			t.Errorf("the schema accepts an envelope with %s: %s", name, env)
		}
	}
}
