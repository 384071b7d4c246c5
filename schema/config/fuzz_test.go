package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: any config file is a valid config or errors that each name
// the problem (*LoadError: unreadable, not YAML, an unknown key;
// *FieldError: a field's path); never a panic. A config that parses is
// valid on its own (Validate passes again) and its defaults are applied
// once for all (applying them again changes nothing that Validate sees).
func FuzzParse(f *testing.F) {
	for _, p := range []string{"../../demo/demo.yaml", "../../demo/cosmos.yaml", "../../deploy/kubernetes/config/worker.yaml"} {
		if b, err := os.ReadFile(filepath.FromSlash(p)); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		hubBase + "hub: {negotiate: {auth: {anonymous: true}}}",
		hubBase + "hub: {limits: {maxReadsPerCaller: -1}, negotiate: {auth: {anonymous: true}}}",
		"source: {postgres: {url: ${PG_URL:-postgres://x}, tables: [public.t]}}\nmappings: [{collection: public.t, hub: h}]\npublish: {batch: {maxChanges: ${N}}}",
		"a: &a [*a, *a]", "source: [", "mappings: {}", "", "history: {store: redis}", "source: {cosmos: {endpoint: x}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Parse(raw, func(k string) (string, bool) {
			if k == "N" {
				return "7", true
			}
			return "", false
		})
		if err != nil {
			var leaves []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				leaves = j.Unwrap()
			} else {
				leaves = []error{err}
			}
			for _, e := range leaves {
				var le *LoadError
				var fe *FieldError
				if !errors.As(e, &le) && !(errors.As(e, &fe) && fe.Path != "") {
					t.Fatalf("an error that names no field and is no load error: %T %v", e, e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed config is invalid: %v", err)
		}
		c.ApplyDefaults()
		if err := c.Validate(); err != nil {
			t.Fatalf("defaults applied twice make it invalid: %v", err)
		}
	})
}
