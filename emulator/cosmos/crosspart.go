package cosmos

import (
	"strings"
)

// The gateway decides from a query's text, before running it, whether it
// can serve the query without a partition key. Its rules, as its errors
// and the SDKs' own emulator tests show them:
//
//   - A query with neither x-ms-documentdb-partitionkey nor
//     x-ms-documentdb-partitionkeyrangeid, whose WHERE does not pin every
//     partition key path with a top-level equality, is cross-partition. It
//     needs x-ms-documentdb-query-enablecrosspartition: true.
//   - A cross-partition query that needs state across partitions (TOP,
//     ORDER BY, OFFSET/LIMIT, aggregates, DISTINCT, GROUP BY) is refused
//     with 400/1004; SDKs that can run it ask for a query plan first and
//     then query each partition key range.
//
// The real gateway decides "cross-partition" per logical partition, not by
// how many physical partitions the container has (azcosmos's own tests
// expect the error on a freshly created container), and so does the
// emulator.

// Gateway messages, verbatim from the service's responses quoted in SDK
// issues (the service appends an ActivityId line, which is left out).
const (
	msgCrossPartitionDisabled  = "Cross partition query is required but disabled. Please set x-ms-documentdb-query-enablecrosspartition to true, specify x-ms-documentdb-partitionkey, or revise your query to avoid this exception."
	msgCrossPartitionNotServed = "The provided cross partition query can not be directly served by the gateway. This is a first chance (internal) exception that all newer clients will know how to handle gracefully. This exception is traced, but unless you see it bubble up as an exception (which only happens on older SDK clients), then you can safely ignore this message."
	// subCrossPartitionNotServed is the substatus the service sends with
	// msgCrossPartitionNotServed.
	subCrossPartitionNotServed = 1004
)

// queryScope is what the gateway reads from a query's text.
type queryScope struct {
	// feature is the first clause that needs state across partitions, ""
	// when the query is only filters and projections.
	feature string
	// pins maps a property path ("a/b") to the value a top-level WHERE
	// equality fixes it to.
	pins map[string]any
}

// analyzeQuery scans a query's tokens for the clauses the gateway cannot
// serve across partitions and for partition key equalities in WHERE. It
// reads only what the tokenizer yields, so it also sees clauses (DISTINCT,
// GROUP BY) that the emulator's own query subset does not run.
func analyzeQuery(q string, params map[string]any) (queryScope, error) {
	toks, err := tokenize(q)
	if err != nil {
		return queryScope{}, err
	}
	var sc queryScope
	isSym := func(i int, s string) bool {
		return i >= 0 && i < len(toks) && toks[i].kind == tSym && toks[i].text == s
	}
	isKw := func(i int, kw string) bool {
		return i >= 0 && i < len(toks) && toks[i].kind == tIdent && strings.EqualFold(toks[i].text, kw) && !isSym(i-1, ".")
	}
	alias, where, whereEnd, depth := "", -1, len(toks)-1, 0
	for i, t := range toks {
		switch {
		case isSym(i, "("):
			depth++
		case isSym(i, ")"):
			depth--
		}
		if t.kind != tIdent || isSym(i-1, ".") {
			continue
		}
		kw := strings.ToUpper(t.text)
		feature := ""
		switch {
		case kw == "TOP" || kw == "DISTINCT":
			feature = kw
		case (kw == "ORDER" || kw == "GROUP") && isKw(i+1, "BY"):
			feature = kw + " BY"
		case kw == "OFFSET":
			feature = "OFFSET LIMIT"
		case aggregates[kw] && isSym(i+1, "("):
			feature = "aggregate " + kw
		}
		if sc.feature == "" {
			sc.feature = feature
		}
		if depth != 0 {
			continue
		}
		switch {
		case kw == "FROM" && i+1 < len(toks) && toks[i+1].kind == tIdent:
			alias = toks[i+1].text
			if isKw(i+2, "AS") && i+3 < len(toks) && toks[i+3].kind == tIdent {
				alias = toks[i+3].text
			} else if i+2 < len(toks) && toks[i+2].kind == tIdent && !clauseKeyword(toks[i+2].text) {
				alias = toks[i+2].text
			}
		case kw == "WHERE":
			where = i + 1
		case where >= 0 && whereEnd == len(toks)-1 && clauseKeyword(kw) && kw != "WHERE":
			whereEnd = i
		}
	}
	if where >= 0 && alias != "" {
		sc.pins = pinsOf(toks[where:whereEnd], alias, params)
	}
	return sc, nil
}

func clauseKeyword(s string) bool {
	switch strings.ToUpper(s) {
	case "WHERE", "ORDER", "GROUP", "OFFSET", "LIMIT", "JOIN":
		return true
	}
	return false
}

// pinsOf reads the top-level conjuncts of a WHERE clause of the form
// alias.path = value (or value = alias.path), looking into parenthesised
// conjunctions. A top-level OR pins nothing.
func pinsOf(toks []token, alias string, params map[string]any) map[string]any {
	toks = unwrapParens(toks)
	var conj [][]token
	depth, start := 0, 0
	for i, t := range toks {
		switch {
		case t.kind == tSym && t.text == "(":
			depth++
		case t.kind == tSym && t.text == ")":
			depth--
		case depth == 0 && t.kind == tIdent && strings.EqualFold(t.text, "OR"):
			return nil
		case depth == 0 && t.kind == tIdent && strings.EqualFold(t.text, "AND"):
			conj = append(conj, toks[start:i])
			start = i + 1
		}
	}
	conj = append(conj, toks[start:])
	pins := map[string]any{}
	for _, c := range conj {
		c = unwrapParens(c)
		if len(conj) > 1 {
			for k, v := range pinsOf(c, alias, params) {
				pins[k] = v
			}
			continue
		}
		eq := -1
		for i, t := range c {
			if t.kind == tSym && t.text == "=" {
				eq = i
				break
			}
		}
		if eq < 0 {
			continue
		}
		if path, ok := pathOf(c[:eq], alias); ok {
			if v, ok := literalOf(c[eq+1:], params); ok {
				pins[path] = v
			}
		} else if path, ok := pathOf(c[eq+1:], alias); ok {
			if v, ok := literalOf(c[:eq], params); ok {
				pins[path] = v
			}
		}
	}
	return pins
}

// unwrapParens drops parentheses that enclose the whole token list.
func unwrapParens(toks []token) []token {
	for len(toks) >= 2 && toks[0].kind == tSym && toks[0].text == "(" {
		depth := 0
		closeAt := -1
		for i, t := range toks {
			if t.kind == tSym && t.text == "(" {
				depth++
			} else if t.kind == tSym && t.text == ")" {
				depth--
				if depth == 0 {
					closeAt = i
					break
				}
			}
		}
		if closeAt != len(toks)-1 {
			return toks
		}
		toks = toks[1 : len(toks)-1]
	}
	return toks
}

// pathOf reads alias.a.b or alias["a"]["b"] as "a/b".
func pathOf(toks []token, alias string) (string, bool) {
	if len(toks) < 2 || toks[0].kind != tIdent || toks[0].text != alias {
		return "", false
	}
	var segs []string
	for i := 1; i < len(toks); {
		switch {
		case toks[i].kind == tSym && toks[i].text == "." && i+1 < len(toks) && toks[i+1].kind == tIdent:
			segs = append(segs, toks[i+1].text)
			i += 2
		case toks[i].kind == tSym && toks[i].text == "[" && i+2 < len(toks) && toks[i+1].kind == tString &&
			toks[i+2].kind == tSym && toks[i+2].text == "]":
			segs = append(segs, toks[i+1].text)
			i += 3
		default:
			return "", false
		}
	}
	return strings.Join(segs, "/"), len(segs) > 0
}

// literalOf reads one literal or @parameter.
func literalOf(toks []token, params map[string]any) (any, bool) {
	if len(toks) == 2 && toks[0].kind == tSym && toks[0].text == "-" && toks[1].kind == tNumber {
		return -toks[1].num, true
	}
	if len(toks) != 1 {
		return nil, false
	}
	t := toks[0]
	switch t.kind {
	case tString:
		return t.text, true
	case tNumber:
		return t.num, true
	case tParam:
		v, ok := params[t.text]
		return v, ok
	case tIdent:
		switch strings.ToLower(t.text) {
		case "true":
			return true, true
		case "false":
			return false, true
		case "null":
			return nil, true
		}
	}
	return nil, false
}

// pinsPartitionKey tells whether the pins fix every partition key path,
// which makes the query single-partition.
func (sc queryScope) pinsPartitionKey(pkPaths [][]string) bool {
	if len(pkPaths) == 0 {
		return false
	}
	for _, p := range pkPaths {
		if _, ok := sc.pins[strings.Join(p, "/")]; !ok {
			return false
		}
	}
	return true
}
