package config

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkShape walks the YAML tree against the Go type it will be decoded
// into and reports, with the path of each, the keys no field has ("did you
// mean" the nearest one) and the values of the wrong kind, in the file's
// words rather than the decoder's ("field colection not found in type
// config.Mapping"). It also records the path of every value that held an
// unset ${VAR}, so a later "is required" can name the variable.
type shapeCheck struct {
	unsetVars map[*yaml.Node][]string // from interpolate
	unsetAt   map[string][]string     // filled: path → unset variables
	p         *problems
	// budget bounds the nodes visited: aliases can make a small file a
	// huge tree ("billion laughs"); the decoder refuses those, and the
	// walk must not hang on them first.
	budget int
}

// maxShapeNodes is far above any real config file.
const maxShapeNodes = 100_000

func checkShape(n *yaml.Node, t reflect.Type, path string, unsetVars map[*yaml.Node][]string, unsetAt map[string][]string, p *problems) {
	c := &shapeCheck{unsetVars: unsetVars, unsetAt: unsetAt, p: p, budget: maxShapeNodes}
	c.walk(n, t, path)
	if c.budget < 0 {
		p.add(path, "the file expands to more than %d values (aliases?)", maxShapeNodes)
	}
}

func (c *shapeCheck) walk(n *yaml.Node, t reflect.Type, path string) {
	if c.budget--; c.budget < 0 {
		return
	}
	p, unsetVars := c.p, c.unsetVars
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if vars, ok := unsetVars[n]; ok {
		c.unsetAt[path] = vars
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the field at its zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			p.add(path, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.add(path, "want a mapping of keys, got %s", describe(n))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // a merge key: its keys are checked where they are defined
				continue
			}
			sub := join(path, k.Value)
			f, ok := fields[k.Value]
			if !ok {
				if near := nearest(k.Value, fields); near != "" {
					p.add(sub, "unknown key (did you mean %s?)", near)
				} else {
					p.add(sub, "unknown key (known: %s)", strings.Join(sortedKeys(fields), ", "))
				}
				continue
			}
			c.walk(v, f, sub)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.add(path, "want a list, got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			c.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			p.add(path, "want %s, got %s", kindName(t), describe(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			if vars, ok := unsetVars[n]; ok && n.Value == "" {
				p.add(path, "%s not set", unsetPhrase(vars))
				return
			}
			p.add(path, "want %s, got %q", kindName(t), n.Value)
		}
	}
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// yamlFields maps each YAML key of struct type t to its field's type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // the decoder's default key
		}
		m[name] = f.Type
	}
	return m
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return "a " + t.Kind().String()
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]reflect.Type) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// nearest is the known key a misspelling most likely meant: the closest by
// edit distance (case-insensitive), if it is close enough to be a typo.
func nearest(key string, known map[string]reflect.Type) string {
	best, bestD := "", 0
	for _, k := range sortedKeys(known) {
		d := editDistance(strings.ToLower(key), strings.ToLower(k))
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(best)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// nameUnset rewrites the problems of fields whose value came from an unset
// ${VAR}: "${DATABASE_URL} is not set" tells the fix, "is required" does
// not.
func nameUnset(err error, unsetAt map[string][]string) error {
	var joined interface{ Unwrap() []error }
	if len(unsetAt) == 0 || !errors.As(err, &joined) {
		return err
	}
	errs := joined.Unwrap()
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) {
			if vars, ok := unsetAt[fe.Path]; ok {
				e = &FieldError{Path: fe.Path, Msg: unsetPhrase(vars) + " not set"}
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// unsetPhrase is "${A} is" or "${A}, ${B} are".
func unsetPhrase(vars []string) string {
	refs := make([]string, len(vars))
	for i, v := range vars {
		refs[i] = "${" + v + "}"
	}
	if len(refs) > 1 {
		return strings.Join(refs, ", ") + " are"
	}
	return refs[0] + " is"
}

// validListen checks a host:port listen address (host may be empty for
// every interface).
func validListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:9090 or :9090)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}
