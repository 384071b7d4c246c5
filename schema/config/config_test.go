package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/schema/wire"
)

const goodConfig = `
source:
  postgres: {url: "${PG_URL}", tables: [public.orders]}
mappings:
  - collection: public.orders
    hub: orders
    group: "tenant-{/tenant}"
    exclude: [/password_hash]
publish:
  batch: {maxChanges: "${N:-7}", maxDelay: 20ms}
`

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseDefaultsAndInterpolation(t *testing.T) {
	c, err := Parse([]byte(goodConfig), env(map[string]string{"PG_URL": "postgres://x/db"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.Postgres.URL != "postgres://x/db" {
		t.Errorf("url = %q", c.Source.Postgres.URL)
	}
	if c.Publish.Batch.MaxChanges != 7 || c.Publish.Batch.MaxDelay.D().Milliseconds() != 20 {
		t.Errorf("batch = %+v", c.Publish.Batch)
	}
	if c.Source.Postgres.Slot != DefaultSlot || c.Publish.Target != "stdout" || c.Mappings[0].Method != DefaultMethod ||
		c.Publish.Batch.MaxBytes != DefaultMaxBytes || c.Lease.Store != "memory" {
		t.Errorf("defaults not applied: %+v", c)
	}
	// A value that looks like YAML stays a string: interpolation works on
	// values, not text.
	c, err = Parse([]byte(goodConfig), env(map[string]string{"PG_URL": "a: [b", "N": "9"}))
	if err != nil || c.Source.Postgres.URL != "a: [b" || c.Publish.Batch.MaxChanges != 9 {
		t.Fatalf("c=%+v err=%v", c, err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unclosed brace", `
source: {postgres: {url: u, tables: [public.t]}}
mappings:
  - {collection: public.t, hub: h}
  - {collection: public.t, hub: h, group: "{/tenant"}`, `mappings[1].group: "{/tenant" has no closing brace`},
		{"no source", `mappings: [{collection: c, hub: h}]`, "source: set one of postgres or cosmos"},
		{"bad table", `
source: {postgres: {url: u, tables: [orders]}}
mappings: [{collection: c, hub: h}]`, `source.postgres.tables[0]: "orders" is not schema.table`},
		{"bad pointer", `
source: {postgres: {url: u, tables: [public.t]}}
mappings: [{collection: c, hub: h, exclude: [secret]}]`, `mappings[0].exclude[0]: "secret" is not a JSON Pointer`},
		{"bad target", `
source: {postgres: {url: u, tables: [public.t]}}
mappings: [{collection: c, hub: h}]
publish: {target: kafka}`, `publish.target: "kafka" is not stdout, hub or signalr`},
		{"batch too big", `
source: {postgres: {url: u, tables: [public.t]}}
mappings: [{collection: c, hub: h}]
publish: {batch: {maxBytes: 2000000}}`, "publish.batch.maxBytes: must be between 1024 and 1000000"},
		{"bad hub", `
source: {postgres: {url: u, tables: [public.t]}}
mappings: [{collection: c, hub: "1x"}]`, `mappings[0].hub: "1x" is not a valid hub name`},
		{"missing url", `
source: {postgres: {url: "${NOPE}", tables: [public.t]}}
mappings: [{collection: c, hub: h}]`, "source.postgres.url: ${NOPE} is not set"},
		{"bad duration", `
source: {postgres: {url: u, tables: [public.t]}}
mappings: [{collection: c, hub: h}]
publish: {batch: {maxDelay: soon}}`, `publish.batch.maxDelay: "soon" is not a duration`},
		{"unknown key", `
source: {postgres: {url: u, tables: [public.t], slots: x}}
mappings: [{collection: c, hub: h}]`, "source.postgres.slots: unknown key (did you mean slot?)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			var fe *FieldError
			var le *LoadError
			if !errors.As(err, &fe) && !errors.As(err, &le) {
				t.Fatalf("err %T is neither FieldError nor LoadError", err)
			}
		})
	}
}

func TestJSONSchemas(t *testing.T) {
	for name, f := range map[string]func() ([]byte, error){"config": JSONSchema, "envelope": wire.EnvelopeJSONSchema} {
		b, err := f()
		if err != nil {
			t.Fatal(err)
		}
		var s map[string]any
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s schema is not JSON: %v", name, err)
		}
		props, _ := s["properties"].(map[string]any)
		key := map[string]string{"config": "mappings", "envelope": "changes"}[name]
		if _, ok := props[key]; !ok {
			t.Errorf("%s schema lacks property %s: %s", name, key, b[:200])
		}
	}
}

func TestSnapshotNeedsInvertibleTemplate(t *testing.T) {
	yes := `
source: {postgres: {url: u, tables: [public.t]}}
mappings:
  - {collection: public.t, hub: h, group: "{/a}-{/b}", snapshot: true}`
	_, err := Parse([]byte(yes), env(nil))
	if err == nil || !strings.Contains(err.Error(), `mappings[0].group: "{/a}-{/b}" cannot be inverted`) {
		t.Fatalf("err = %v", err)
	}
	c, err := Parse([]byte(strings.Replace(yes, "snapshot: true", "snapshot: false", 1)), env(nil))
	if err != nil || c.Mappings[0].Snapshots() {
		t.Fatalf("snapshot: false: %v, %v", err, c)
	}
	c, err = Parse([]byte(strings.Replace(yes, ", snapshot: true", "", 1)), env(nil))
	if err != nil || c.Mappings[0].Snapshots() {
		t.Fatalf("unset with two fields: %v", err)
	}
	c, err = Parse([]byte(strings.Replace(strings.Replace(yes, ", snapshot: true", "", 1), "{/a}-{/b}", "t-{/a}", 1)), env(nil))
	if err != nil || !c.Mappings[0].Snapshots() {
		t.Fatalf("unset with one field: %v", err)
	}
}

func TestHistoryChecksNameTheField(t *testing.T) {
	base := `
source: {postgres: {url: u, tables: [public.t]}}
mappings: [{collection: public.t, hub: h}]
`
	for yaml, want := range map[string]string{
		"history: {store: redis}":                         "history.redis.url: is required",
		"history: {store: redis, redis: {url: http://x}}": `history.redis.url: "http://x" is not a redis://`,
		"history: {store: disk}":                          `history.store: "disk" is not memory, redis or off`,
		"history: {maxBytes: 10}":                         "history.maxBytes: must be at least",
		"history: {file: /no/such/dir/h}":                 `history.file: the directory of "/no/such/dir/h" does not exist`,
		"history: {store: off, file: /tmp/h}":             "history.file: is only for store: memory",
	} {
		_, err := Parse([]byte(base+yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", yaml, err, want)
		}
	}
	c, err := Parse([]byte(base), env(nil))
	if err != nil || c.History.Store != "memory" || c.History.MaxMessages != 10000 || c.History.MaxAge.D() != 10*time.Minute {
		t.Fatalf("defaults: %+v %v", c.History, err)
	}
}

// TestMaxDelayDefaults: no linger by default (adaptive batching alone),
// 100ms for Azure SignalR, and an explicit 0s is honoured there too.
func TestMaxDelayDefaults(t *testing.T) {
	for _, tc := range []struct {
		target, batch string
		want          time.Duration
	}{
		{"hub", "", DefaultMaxDelay},
		{"stdout", "", 0},
		{"signalr", "", DefaultSignalRMaxDelay},
		{"signalr", "batch: {maxDelay: 0s}", 0},
		{"hub", "batch: {maxDelay: 5ms}", 5 * time.Millisecond},
	} {
		src := "source:\n  postgres: {url: \"postgres://x/db\", tables: [public.t]}\nmappings:\n  - {collection: public.t, hub: h}\n" +
			"hub: {negotiate: {auth: {anonymous: true}}}\npublish:\n  target: " + tc.target + "\n" +
			"  signalr: {connectionString: \"Endpoint=http://127.0.0.1;Port=1;AccessKey=abcdefghijabcdefghijabcdefghij0123456789abcdefgh;Version=1.0;\"}\n"
		if tc.batch != "" {
			src += "  " + tc.batch + "\n"
		}
		c, err := Parse([]byte(src), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Publish.Batch.MaxDelay; got == nil || got.D() != tc.want {
			t.Errorf("target %s, %q: maxDelay %v, want %v", tc.target, tc.batch, got, tc.want)
		}
	}
}

// source.cosmos.routingIndex: on unless set false, a boolean in the schema.
func TestCosmosRoutingIndex(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want bool
	}{{"", true}, {"routingIndex: true, ", true}, {"routingIndex: false, ", false}} {
		src := "source:\n  cosmos: {" + tc.set + "endpoint: \"https://a\", key: k, database: d, container: c}\nmappings:\n  - {collection: c, hub: h}\n"
		c, err := Parse([]byte(src), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Source.Cosmos.Indexed(); got != tc.want {
			t.Errorf("%q: indexed %v, want %v", tc.set, got, tc.want)
		}
	}
	if _, err := Parse([]byte("source:\n  cosmos: {routingIndex: maybe, endpoint: \"https://a\", key: k, database: d, container: c}\nmappings:\n  - {collection: c, hub: h}\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "maybe") {
		t.Errorf("a non-boolean routingIndex: %v", err)
	}
	b, err := JSONSchema()
	if err != nil || !strings.Contains(string(b), `"routingIndex": {`) {
		t.Fatalf("schema lacks routingIndex: %v", err)
	}
}
