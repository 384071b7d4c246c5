package publish_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/history"
	"github.com/changecast/changecast/schema/wire"
)

// TestResetRenewsStreamsAndForgets: a changefeed.Reset (a slot recreated)
// is handled after everything before it was published: every stream of
// the history starts a new epoch and gets an empty envelope carrying it
// (so does the hub-wide stream), the shadow store forgets every document,
// and the next change of a document the pipeline had sent goes out whole,
// not as a patch from a version that may no longer be the row's.
func TestResetRenewsStreamsAndForgets(t *testing.T) {
	upd := func(v string, n int) changefeed.Event {
		return changefeed.Event{Change: &changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: v,
			After: map[string]any{"id": 1, "g": "a", "n": n, "text": strings.Repeat("so that a patch is smaller than the document ", 4)}}}
	}
	src := &fakeSource{events: []changefeed.Event{
		upd("1", 1), {Position: "p1"},
		upd("2", 2), {Position: "p2"},
		{Change: &changefeed.Change{Op: changefeed.Reset, Version: "10"}}, {Position: "p10"},
		upd("11", 3), {Position: "p11"},
	}}
	rec := &recorder{}
	store := &memShadow{}
	pub := history.NewPublisher(history.NewMemory(history.Limits{}), rec)
	m, err := publish.NewMapper([]publish.Mapping{{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}},
		publish.MapperOptions{ShadowSize: 1000, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, src, pub, m, publish.PipelineConfig{ShadowStore: store})
	testkit.Until(t, 10*time.Second, "the change after the reset", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.batches) > 0 && strings.Contains(string(rec.batches[len(rec.batches)-1].Payload), `"v":"11"`)
	})

	if err := stop(nil); err != nil {
		t.Fatal(err)
	}

	type sent struct {
		group, epoch string
		offset       uint64
		ops          []string
	}
	var got []sent
	for _, b := range rec.batches {
		var env wire.Envelope
		if err := json.Unmarshal(b.Payload, &env); err != nil {
			t.Fatal(err)
		}
		s := sent{group: env.Group, epoch: env.Epoch, offset: env.Offset}
		for _, c := range env.Changes {
			s.ops = append(s.ops, c.Op)
		}
		got = append(got, s)
	}
	// Before the reset: v1 whole, v2 as a patch, in the first epoch; then
	// one notice per stream (no changes, offset 1 of a new epoch); then v11
	// whole, after its stream's notice.
	var ops []string
	epochs := map[string]string{} // group → epoch of its notice
	first := got[0].epoch
	for _, s := range got {
		if len(s.ops) == 0 {
			if s.offset != 1 || s.epoch == first {
				t.Errorf("notice %+v: want offset 1 of a new epoch (not %s)", s, first)
			}
			epochs[s.group] = s.epoch
			continue
		}
		ops = append(ops, s.ops...)
		if len(epochs) > 0 && s.epoch != epochs[s.group] {
			t.Errorf("%+v after the reset is not in its stream's new epoch %s", s, epochs[s.group])
		}
	}
	if _, ok := epochs["a"]; !ok || len(epochs) != 2 {
		t.Errorf("notices went to %v, want the renewed stream a and the hub-wide stream", epochs)
	}
	if strings.Join(ops, ",") != "upsert,patch,upsert" {
		t.Errorf("changes %v, want upsert, patch, then upsert after the reset (nothing diffed across it): %+v", ops, got)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	forgot := false
	for _, r := range store.saved {
		if r.Prefix && r.V == "10" {
			forgot = true
		}
	}
	if !forgot {
		t.Errorf("the shadow store got no record forgetting every document at the reset: %+v", store.saved)
	}
}
