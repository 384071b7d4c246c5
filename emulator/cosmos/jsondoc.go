package cosmos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// member is one top-level property of a JSON object, kept in the order the
// client sent it: the service preserves user property order and appends
// its system properties, and diff-based consumers notice the difference.
type member struct {
	key string
	raw json.RawMessage
}

// systemProps are written by the service; values a client sends for them
// (e.g. when replacing a document it read) are discarded.
var systemProps = map[string]bool{
	"_rid": true, "_self": true, "_etag": true, "_attachments": true, "_ts": true, "_lsn": true,
	"_docs": true, "_sprocs": true, "_triggers": true, "_udfs": true, "_conflicts": true, "_colls": true, "_users": true,
}

// parseObject decodes a JSON object into ordered members (without system
// properties) and a generic value for query evaluation.
func parseObject(body []byte) ([]member, map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("the request body is not valid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("the request body must be a JSON object")
	}
	var members []member
	seen := map[string]int{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("the request body is not valid JSON: %w", err)
		}
		key, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("the request body is not valid JSON: %w", err)
		}
		if systemProps[key] {
			continue
		}
		if i, dup := seen[key]; dup {
			members[i].raw = raw // last one wins, as in most JSON parsers
			continue
		}
		seen[key] = len(members)
		members = append(members, member{key: key, raw: raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("the request body is not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("the request body has trailing data")
	}
	return members, membersToMap(members), nil
}

func membersToMap(ms []member) map[string]any {
	m := make(map[string]any, len(ms))
	for _, x := range ms {
		var v any
		_ = json.Unmarshal(x.raw, &v)
		m[x.key] = v
	}
	return m
}

// mapToMembers is used after a patch rewrites the value: known keys keep
// their order, new keys are appended.
func mapToMembers(prev []member, m map[string]any) []member {
	out := make([]member, 0, len(m))
	done := map[string]bool{}
	for _, p := range prev {
		if v, ok := m[p.key]; ok {
			raw, _ := json.Marshal(v)
			out = append(out, member{key: p.key, raw: raw})
			done[p.key] = true
		}
	}
	var extra []string
	for k := range m {
		if !done[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		raw, _ := json.Marshal(m[k])
		out = append(out, member{key: k, raw: raw})
	}
	return out
}

// encodeObject writes members followed by extra (system) members.
func encodeObject(ms []member, extra ...member) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, list := range [][]member{ms, extra} {
		for _, m := range list {
			if !first {
				b.WriteByte(',')
			}
			first = false
			k, _ := json.Marshal(m.key)
			b.Write(k)
			b.WriteByte(':')
			b.Write(m.raw)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

func strMember(k, v string) member {
	raw, _ := json.Marshal(v)
	return member{key: k, raw: raw}
}

func intMember(k string, v int64) member {
	return member{key: k, raw: json.RawMessage(strconv.FormatInt(v, 10))}
}

// splitPKPath turns "/a/b" into ["a","b"]. Paths may quote a segment
// ("/\"a b\"") as the service allows.
func splitPKPath(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
			parts[i] = s[1 : len(s)-1]
		}
	}
	return parts
}

// valueAtPath walks a decoded document; missing values are pkUndefined.
func valueAtPath(doc map[string]any, path []string) any {
	var cur any = doc
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return pkUndefined{}
		}
		v, ok := m[seg]
		if !ok {
			return pkUndefined{}
		}
		cur = v
	}
	return cur
}

// parsePartitionKeyHeader decodes x-ms-documentdb-partitionkey, a JSON
// array with one value per partition key path; {} stands for "undefined"
// (the document has no value at that path).
func parsePartitionKeyHeader(v string) ([]any, error) {
	var arr []any
	if err := json.Unmarshal([]byte(v), &arr); err != nil {
		return nil, fmt.Errorf("the partition key header %q is not a JSON array: %w", v, err)
	}
	for i, c := range arr {
		switch x := c.(type) {
		case map[string]any:
			if len(x) != 0 {
				return nil, fmt.Errorf("partition key component %d is an object", i)
			}
			arr[i] = pkUndefined{}
		case []any:
			return nil, fmt.Errorf("partition key component %d is an array", i)
		}
	}
	return arr, nil
}

// pkString is a canonical form of a partition key value, used as the
// logical-partition part of a document's identity.
func pkString(components []any) string {
	parts := make([]string, len(components))
	for i, c := range components {
		if _, ok := c.(pkUndefined); ok {
			parts[i] = "{}"
			continue
		}
		b, _ := json.Marshal(c)
		parts[i] = string(b)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// validateID applies the service's rules for database and container ids:
// at most 255 characters, none of '/', '\\', '?', '#'.
func validateID(id string) error {
	if id == "" {
		return errors.New("the input content is invalid because the required property, id, is missing or empty")
	}
	if utf8.RuneCountInString(id) > 255 {
		return errors.New("the id is longer than 255 characters")
	}
	if strings.ContainsAny(id, "/\\?#") {
		return errors.New("the id contains an invalid character ('/', '\\\\', '?' or '#')")
	}
	return nil
}

// maxItemIDBytes is the service's limit on a document id (its quotas page:
// 1,023 bytes).
const maxItemIDBytes = 1023

// validateItemID applies the rules the service enforces on a document's id
// when it is written. The service documents '/', '\\', '?' and '#' as
// restricted, yet accepts them on create/upsert (users report creating
// such documents); a document whose id holds '/' is then listed by queries
// and the change feed but cannot be addressed by its URL (see
// route.unaddressable). Trailing spaces are valid.
func validateItemID(id string) error {
	if id == "" {
		return errors.New("the input content is invalid because the required property, id, is missing or empty")
	}
	if len(id) > maxItemIDBytes {
		return fmt.Errorf("the id is %d bytes long; at most %d are allowed", len(id), maxItemIDBytes)
	}
	return nil
}
