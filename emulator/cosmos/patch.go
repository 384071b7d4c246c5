package cosmos

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

type patchBody struct {
	Condition  string `json:"condition"`
	Operations []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
		From  string          `json:"from"`
	} `json:"operations"`
}

// applyPatch applies a partial-document update (add, set, replace, remove,
// incr, move) to a copy of doc. A "condition" ("FROM c WHERE …") that
// does not hold gives 412, as on the service.
func applyPatch(doc map[string]any, body []byte) (map[string]any, *reply) {
	var pb patchBody
	if err := json.Unmarshal(body, &pb); err != nil {
		return nil, errReply(http.StatusBadRequest, 0, "the patch body is not valid JSON: %v", err)
	}
	if len(pb.Operations) == 0 || len(pb.Operations) > 10 {
		return nil, errReply(http.StatusBadRequest, 0, "a patch needs 1 to 10 operations")
	}
	if pb.Condition != "" {
		q, err := parseQuery("SELECT * " + pb.Condition)
		if err != nil {
			return nil, errReply(http.StatusBadRequest, 0, "invalid patch condition: %v", err)
		}
		out, _ := q.run([]queryRow{{value: doc, json: []byte("{}")}}, nil)
		if len(out) == 0 {
			return nil, errReply(http.StatusPreconditionFailed, 0, "One of the specified pre-condition is not met.")
		}
	}
	var cp map[string]any
	b, _ := json.Marshal(doc)
	_ = json.Unmarshal(b, &cp)
	for _, op := range pb.Operations {
		var val any
		if len(op.Value) > 0 {
			if err := json.Unmarshal(op.Value, &val); err != nil {
				return nil, errReply(http.StatusBadRequest, 0, "invalid patch value: %v", err)
			}
		}
		path := splitPointer(op.Path)
		if len(path) == 0 {
			return nil, errReply(http.StatusBadRequest, 0, "invalid patch path %q", op.Path)
		}
		var err string
		switch strings.ToLower(op.Op) {
		case "add":
			err = pointerSet(cp, path, val, "add")
		case "set":
			err = pointerSet(cp, path, val, "set")
		case "replace":
			err = pointerSet(cp, path, val, "replace")
		case "remove":
			_, err = pointerRemove(cp, path)
		case "incr":
			cur, ok := pointerGet(cp, path)
			if !ok {
				err = pointerSet(cp, path, val, "set")
				break
			}
			a, ok1 := cur.(float64)
			d, ok2 := val.(float64)
			if !ok1 || !ok2 {
				err = "incr needs numbers"
				break
			}
			err = pointerSet(cp, path, a+d, "replace")
		case "move":
			from := splitPointer(op.From)
			v, e := pointerRemove(cp, from)
			if e != "" {
				err = e
				break
			}
			err = pointerSet(cp, path, v, "set")
		default:
			err = "unknown patch operation " + op.Op
		}
		if err != "" {
			return nil, errReply(http.StatusBadRequest, 0, "patch %s %s: %s", op.Op, op.Path, err)
		}
	}
	return cp, nil
}

func splitPointer(p string) []string {
	if !strings.HasPrefix(p, "/") {
		return nil
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts
}

func pointerGet(doc map[string]any, path []string) (any, bool) {
	var cur any = doc
	for _, seg := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// pointerSet writes at path. mode "add" inserts into arrays (or appends
// with "-"), "set" creates or overwrites, "replace" requires the target.
func pointerSet(doc map[string]any, path []string, val any, mode string) string {
	parent, ok := pointerGet(doc, path[:len(path)-1])
	if !ok {
		return "the parent of the path does not exist"
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		if _, exists := p[last]; !exists && mode == "replace" {
			return "the path does not exist"
		}
		p[last] = val
		return ""
	case []any:
		var i int
		if last == "-" {
			i = len(p)
		} else {
			n, err := strconv.Atoi(last)
			if err != nil || n < 0 || n > len(p) {
				return "invalid array index"
			}
			i = n
		}
		var next []any
		if mode == "add" || i == len(p) {
			next = append(append(append([]any{}, p[:i]...), val), p[i:]...)
		} else {
			next = append([]any{}, p...)
			next[i] = val
		}
		grand, _ := pointerGet(doc, path[:len(path)-2])
		switch g := grand.(type) {
		case map[string]any:
			g[path[len(path)-2]] = next
		case []any:
			j, _ := strconv.Atoi(path[len(path)-2])
			g[j] = next
		}
		return ""
	}
	return "the parent of the path is not an object or array"
}

func pointerRemove(doc map[string]any, path []string) (any, string) {
	parent, ok := pointerGet(doc, path[:len(path)-1])
	if !ok {
		return nil, "the path does not exist"
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		v, ok := p[last]
		if !ok {
			return nil, "the path does not exist"
		}
		delete(p, last)
		return v, ""
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) {
			return nil, "invalid array index"
		}
		v := p[i]
		next := append(append([]any{}, p[:i]...), p[i+1:]...)
		grand, _ := pointerGet(doc, path[:len(path)-2])
		switch g := grand.(type) {
		case map[string]any:
			g[path[len(path)-2]] = next
		case []any:
			j, _ := strconv.Atoi(path[len(path)-2])
			g[j] = next
		}
		return v, ""
	}
	return nil, "the path does not exist"
}
