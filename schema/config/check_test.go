package config

import (
	"errors"
	"strings"
	"testing"
)

// Every problem of a file's shape is said with its path, in the file's
// words: the decoder's own messages ("line 9: field colection not found in
// type config.Mapping", Go type names) tell an operator neither where nor
// what to write.
func TestShapeErrorsNameThePath(t *testing.T) {
	const base = `
source: {postgres: {url: u, tables: [public.t]}}
`
	cases := []struct {
		name, yaml string
		env        map[string]string
		want       []string // every line of the error, in order
	}{
		{"misspelt key", base + `
mappings:
  - colection: public.t
    hub: h`, nil, []string{"mappings[0].colection: unknown key (did you mean collection?)"}},
		{"wrong type", base + `
mappings: [{collection: c, hub: h}]
publish: {batch: {maxChanges: lots}}`, nil, []string{`publish.batch.maxChanges: want an integer, got "lots"`}},
		{"wrong bool", base + `
mappings: [{collection: c, hub: h, snapshot: maybe}]`, nil, []string{`mappings[0].snapshot: want true or false, got "maybe"`}},
		{"list for a mapping", base + `
mappings: [{collection: c, hub: h}]
publish: [stdout]`, nil, []string{`publish: want a mapping of keys, got a list`}},
		{"scalar for a list", `
source: {postgres: {url: u, tables: public.t}}
mappings: [{collection: c, hub: h}]`, nil, []string{`source.postgres.tables: want a list, got "public.t"`}},
		{"far-off key lists the known ones", base + `
mappings: [{collection: c, hub: h}]
server: {zzzzzzzz: 1}`, nil, []string{"server.zzzzzzzz: unknown key (known: adminToken, listen)"}},
		{"several at once", base + `
mappings:
  - {colection: c, hub: h}
  - {collection: c, hbu: h}
publish: {batch: {maxChanges: lots}}`, nil, []string{
			"mappings[0].colection: unknown key (did you mean collection?)",
			"mappings[1].hbu: unknown key (did you mean hub?)",
			`publish.batch.maxChanges: want an integer, got "lots"`,
		}},
		{"duration", base + `
mappings: [{collection: c, hub: h}]
lease: {expiry: forever}`, nil, []string{`lease.expiry: "forever" is not a duration (write e.g. 10ms, 5s, 1m)`}},
		{"unset variable", `
source: {postgres: {url: "${DATABASE_URL}", tables: [public.t]}}
mappings: [{collection: c, hub: h}]`, nil, []string{"source.postgres.url: ${DATABASE_URL} is not set"}},
		{"unset variable of an integer", base + `
mappings: [{collection: c, hub: h}]
publish: {batch: {maxChanges: "${BATCH}"}}`, nil, []string{"publish.batch.maxChanges: ${BATCH} is not set"}},
		{"server.listen", base + `
mappings: [{collection: c, hub: h}]
server: {listen: nonsense}`, nil, []string{`server.listen: "nonsense" is not host:port (e.g. 127.0.0.1:9090 or :9090)`}},
		{"server.listen port", base + `
mappings: [{collection: c, hub: h}]
server: {listen: "localhost:http2"}`, nil, []string{`server.listen: "localhost:http2": port "http2" is not a number from 0 to 65535`}},
		{"hub.listen", base + `
mappings: [{collection: c, hub: h}]
publish: {target: hub}
hub: {listen: "8080", negotiate: {auth: {anonymous: true}}}`, nil, []string{`hub.listen: "8080" is not host:port (e.g. 127.0.0.1:9090 or :9090)`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), env(c.env))
			if err == nil {
				t.Fatal("no error")
			}
			if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("err =\n%v\nwant\n%s", err, strings.Join(c.want, "\n"))
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err %T holds no *FieldError", err)
			}
		})
	}
}

// A set variable, an empty listen and a good one pass.
func TestShapeAcceptsGoodValues(t *testing.T) {
	_, err := Parse([]byte(`
source: {postgres: {url: "${DATABASE_URL}", tables: [public.t]}}
mappings: [{collection: c, hub: h, snapshot: false}]
publish: {batch: {maxChanges: "${N}"}}
server: {listen: ":9090"}`), env(map[string]string{"DATABASE_URL": "postgres://x/y", "N": "7"}))
	if err != nil {
		t.Fatal(err)
	}
}

func TestDecodeHubNamesThePath(t *testing.T) {
	_, err := DecodeHub([]byte("negotiate: {pth: /x}\n"), env(nil))
	if err == nil || err.Error() != "hub.negotiate.pth: unknown key (did you mean path?)" {
		t.Fatalf("err = %v", err)
	}
}

// FuzzParseShape: any bytes give a config or an error of the documented kinds,
// never a panic (the shape walk follows the file's own tree: aliases,
// merge keys, deep nesting).
func FuzzParseShape(f *testing.F) {
	f.Add([]byte("source: {postgres: {url: u, tables: [public.t]}}\nmappings: [{collection: c, hub: h}]\n"))
	f.Add([]byte("mappings: [{colection: c, hub: h}]\npublish: {batch: {maxChanges: lots}}\n"))
	f.Add([]byte("a: &x {b: 1}\nsource: *x\nmappings: [{<<: *x}]\n"))
	f.Add([]byte("server: {listen: \"${X:-nonsense}\"}\nhub: [1, [2, {3: 4}]]\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := Parse(raw, env(map[string]string{"X": "1"}))
		if err == nil {
			return
		}
		var joined interface{ Unwrap() []error }
		errs := []error{err}
		if errors.As(err, &joined) {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			var fe *FieldError
			var le *LoadError
			if !errors.As(e, &fe) && !errors.As(e, &le) {
				t.Fatalf("error %T %q is neither a FieldError nor a LoadError", e, e)
			}
		}
	})
}
