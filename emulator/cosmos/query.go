package cosmos

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// The emulator serves a subset of the Cosmos DB NoSQL query language, enough
// for lease stores, tests and demos:
//
//	SELECT [TOP n] * | VALUE expr | expr [AS name], ...
//	FROM alias | FROM root [AS] alias
//	[WHERE expr] [ORDER BY expr [ASC|DESC], ...] [OFFSET n LIMIT m]
//
// Expressions: AND OR NOT, = != <> < <= > >=, IN (...), + - * / % ||,
// string/number/bool/null/undefined literals, @parameters, property paths
// (c.a.b, c["a"]) and the functions STARTSWITH ENDSWITH CONTAINS LOWER
// UPPER LENGTH CONCAT IS_DEFINED IS_NULL IS_STRING IS_NUMBER IS_BOOL
// IS_ARRAY IS_OBJECT ARRAY_CONTAINS ARRAY_LENGTH ABS. SELECT VALUE may be
// an aggregate: COUNT SUM MIN MAX AVG.
//
// Like the real gateway, the emulator refuses cross-partition queries that
// need state across partitions (crosspart.go); with a partition key, or
// per range as SDKs with a query plan send them, it serves them.

// undefinedT is the query language's "undefined" (a missing property).
type undefinedT struct{}

var undef = undefinedT{}

// sqlQuery is a parsed query.
type sqlQuery struct {
	top     int // -1 when absent
	star    bool
	value   sqlExpr // SELECT VALUE expr
	agg     string  // SELECT VALUE COUNT(...) etc.
	aggArg  sqlExpr
	fields  []projField
	alias   string
	where   sqlExpr
	orderBy []orderTerm
	offset  int
	limit   int // -1 when absent
}

type projField struct {
	name string
	expr sqlExpr
}

type orderTerm struct {
	expr sqlExpr
	desc bool
}

// sqlExpr evaluates against one document bound to the FROM alias.
type sqlExpr func(env *sqlEnv) any

type sqlEnv struct {
	alias  string
	doc    any
	params map[string]any
}

// ---- tokenizer ----

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tParam
	tSym
)

type token struct {
	kind tokKind
	text string
	num  float64
}

func tokenize(q string) ([]token, error) {
	var out []token
	rs := []rune(q)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '-' && i+1 < len(rs) && rs[i+1] == '-': // line comment
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case unicode.IsLetter(c) || c == '_':
			j := i
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_') {
				j++
			}
			out = append(out, token{kind: tIdent, text: string(rs[i:j])})
			i = j
		case c == '@':
			j := i + 1
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_') {
				j++
			}
			out = append(out, token{kind: tParam, text: string(rs[i:j])})
			i = j
		case unicode.IsDigit(c) || (c == '.' && i+1 < len(rs) && unicode.IsDigit(rs[i+1])):
			j := i
			for j < len(rs) && (unicode.IsDigit(rs[j]) || rs[j] == '.' || rs[j] == 'e' || rs[j] == 'E' ||
				((rs[j] == '+' || rs[j] == '-') && (rs[j-1] == 'e' || rs[j-1] == 'E'))) {
				j++
			}
			f, err := strconv.ParseFloat(string(rs[i:j]), 64)
			if err != nil {
				return nil, fmt.Errorf("invalid number %q", string(rs[i:j]))
			}
			out = append(out, token{kind: tNumber, num: f, text: string(rs[i:j])})
			i = j
		case c == '\'' || c == '"':
			var sb strings.Builder
			j := i + 1
			for ; j < len(rs) && rs[j] != c; j++ {
				if rs[j] == '\\' && j+1 < len(rs) {
					j++
					switch rs[j] {
					case 'n':
						sb.WriteRune('\n')
					case 't':
						sb.WriteRune('\t')
					case 'r':
						sb.WriteRune('\r')
					default:
						sb.WriteRune(rs[j])
					}
					continue
				}
				sb.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated string literal")
			}
			out = append(out, token{kind: tString, text: sb.String()})
			i = j + 1
		default:
			two := ""
			if i+1 < len(rs) {
				two = string(rs[i : i+2])
			}
			switch two {
			case "!=", "<>", "<=", ">=", "||":
				out = append(out, token{kind: tSym, text: two})
				i += 2
				continue
			}
			if strings.ContainsRune("()[],.=<>*+-/%", c) {
				out = append(out, token{kind: tSym, text: string(c)})
				i++
				continue
			}
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	return append(out, token{kind: tEOF}), nil
}

// ---- parser ----

type sqlParser struct {
	toks []token
	pos  int
}

func (p *sqlParser) peek() token { return p.toks[p.pos] }
func (p *sqlParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}
func (p *sqlParser) isKw(kw string) bool {
	t := p.peek()
	return t.kind == tIdent && strings.EqualFold(t.text, kw)
}
func (p *sqlParser) acceptKw(kw string) bool {
	if p.isKw(kw) {
		p.pos++
		return true
	}
	return false
}
func (p *sqlParser) isSym(s string) bool {
	t := p.peek()
	return t.kind == tSym && t.text == s
}
func (p *sqlParser) acceptSym(s string) bool {
	if p.isSym(s) {
		p.pos++
		return true
	}
	return false
}
func (p *sqlParser) expectSym(s string) error {
	if !p.acceptSym(s) {
		return fmt.Errorf("syntax error: expected %q near %q", s, p.peek().text)
	}
	return nil
}

var reserved = map[string]bool{"select": true, "from": true, "where": true, "order": true, "by": true, "and": true,
	"or": true, "not": true, "in": true, "value": true, "top": true, "as": true, "asc": true, "desc": true,
	"offset": true, "limit": true, "true": true, "false": true, "null": true, "undefined": true, "between": true}

var aggregates = map[string]bool{"COUNT": true, "SUM": true, "MIN": true, "MAX": true, "AVG": true}

// parseQuery parses the supported SQL subset.
func parseQuery(q string) (*sqlQuery, error) {
	toks, err := tokenize(q)
	if err != nil {
		return nil, err
	}
	p := &sqlParser{toks: toks}
	out := &sqlQuery{top: -1, limit: -1}
	// SELECT VALUE c over FROM c returns the documents themselves, which
	// keeps their property order; it is served like SELECT *.
	valueIdent := ""
	if !p.acceptKw("SELECT") {
		return nil, errors.New("syntax error: query must start with SELECT")
	}
	if p.acceptKw("TOP") {
		t := p.next()
		if t.kind != tNumber || t.num < 0 || t.num != math.Trunc(t.num) {
			return nil, errors.New("syntax error: TOP needs a non-negative integer")
		}
		out.top = int(t.num)
	}
	switch {
	case p.acceptSym("*"):
		out.star = true
	case p.acceptKw("VALUE"):
		t := p.peek()
		if t.kind == tIdent && aggregates[strings.ToUpper(t.text)] && p.toks[p.pos+1].text == "(" {
			p.pos += 2
			out.agg = strings.ToUpper(t.text)
			if out.aggArg, err = p.parseExpr(); err != nil {
				return nil, err
			}
			if err := p.expectSym(")"); err != nil {
				return nil, err
			}
		} else {
			start := p.pos
			if out.value, err = p.parseExpr(); err != nil {
				return nil, err
			}
			if p.pos == start+1 && p.toks[start].kind == tIdent {
				valueIdent = p.toks[start].text
			}
		}
	default:
		for {
			start := p.pos
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			name := ""
			if p.acceptKw("AS") {
				t := p.next()
				if t.kind != tIdent {
					return nil, errors.New("syntax error: expected a name after AS")
				}
				name = t.text
			} else {
				// c.a.b projects as "b", like the service.
				for i := p.pos - 1; i >= start; i-- {
					if t := p.toks[i]; t.kind == tIdent || t.kind == tString {
						name = t.text
						break
					}
				}
			}
			if name == "" {
				name = fmt.Sprintf("$%d", len(out.fields)+1)
			}
			out.fields = append(out.fields, projField{name: name, expr: e})
			if !p.acceptSym(",") {
				break
			}
		}
	}
	if !p.acceptKw("FROM") {
		return nil, errors.New("syntax error: expected FROM")
	}
	t := p.next()
	if t.kind != tIdent || reserved[strings.ToLower(t.text)] {
		return nil, errors.New("syntax error: expected a collection alias after FROM")
	}
	out.alias = t.text
	p.acceptKw("AS")
	if t := p.peek(); t.kind == tIdent && !reserved[strings.ToLower(t.text)] {
		out.alias = t.text
		p.pos++
	}
	if valueIdent != "" && valueIdent == out.alias {
		out.star, out.value = true, nil
	}
	if p.acceptKw("WHERE") {
		if out.where, err = p.parseExpr(); err != nil {
			return nil, err
		}
	}
	if p.acceptKw("ORDER") {
		if !p.acceptKw("BY") {
			return nil, errors.New("syntax error: expected BY after ORDER")
		}
		for {
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			term := orderTerm{expr: e}
			if p.acceptKw("DESC") {
				term.desc = true
			} else {
				p.acceptKw("ASC")
			}
			out.orderBy = append(out.orderBy, term)
			if !p.acceptSym(",") {
				break
			}
		}
	}
	if p.acceptKw("OFFSET") {
		t := p.next()
		if t.kind != tNumber || !p.acceptKw("LIMIT") {
			return nil, errors.New("syntax error: expected OFFSET n LIMIT m")
		}
		l := p.next()
		if l.kind != tNumber {
			return nil, errors.New("syntax error: expected OFFSET n LIMIT m")
		}
		out.offset, out.limit = int(t.num), int(l.num)
	}
	if p.peek().kind != tEOF {
		return nil, fmt.Errorf("syntax error near %q", p.peek().text)
	}
	return out, nil
}

func (p *sqlParser) parseExpr() (sqlExpr, error) { return p.parseOr() }

func (p *sqlParser) parseOr() (sqlExpr, error) {
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.acceptKw("OR") {
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(e *sqlEnv) any {
			x, y := a(e), b(e)
			if x == true || y == true {
				return true
			}
			if x == false && y == false {
				return false
			}
			return undef
		}
	}
	return l, nil
}

func (p *sqlParser) parseAnd() (sqlExpr, error) {
	l, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for p.acceptKw("AND") {
		r, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(e *sqlEnv) any {
			x, y := a(e), b(e)
			if x == false || y == false {
				return false
			}
			if x == true && y == true {
				return true
			}
			return undef
		}
	}
	return l, nil
}

func (p *sqlParser) parseNot() (sqlExpr, error) {
	if p.acceptKw("NOT") {
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return func(e *sqlEnv) any {
			if b, ok := x(e).(bool); ok {
				return !b
			}
			return undef
		}, nil
	}
	return p.parseCompare()
}

func (p *sqlParser) parseCompare() (sqlExpr, error) {
	l, err := p.parseAdd()
	if err != nil {
		return nil, err
	}
	negate := false
	if p.isKw("NOT") && p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1].text, "IN") {
		p.pos++
		negate = true
	}
	if p.acceptKw("IN") {
		if err := p.expectSym("("); err != nil {
			return nil, err
		}
		var list []sqlExpr
		for !p.isSym(")") {
			x, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			list = append(list, x)
			if !p.acceptSym(",") {
				break
			}
		}
		if err := p.expectSym(")"); err != nil {
			return nil, err
		}
		a := l
		return func(e *sqlEnv) any {
			v := a(e)
			if _, ok := v.(undefinedT); ok {
				return undef
			}
			for _, x := range list {
				if c, ok := compareValues(v, x(e)); ok && c == 0 {
					return !negate
				}
			}
			return negate
		}, nil
	}
	t := p.peek()
	if t.kind == tSym {
		switch t.text {
		case "=", "!=", "<>", "<", "<=", ">", ">=":
			p.pos++
			r, err := p.parseAdd()
			if err != nil {
				return nil, err
			}
			op, a, b := t.text, l, r
			return func(e *sqlEnv) any {
				c, ok := compareValues(a(e), b(e))
				if !ok {
					return undef
				}
				switch op {
				case "=":
					return c == 0
				case "!=", "<>":
					return c != 0
				case "<":
					return c < 0
				case "<=":
					return c <= 0
				case ">":
					return c > 0
				default:
					return c >= 0
				}
			}, nil
		}
	}
	return l, nil
}

func (p *sqlParser) parseAdd() (sqlExpr, error) {
	l, err := p.parseMul()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tSym || (t.text != "+" && t.text != "-" && t.text != "||") {
			return l, nil
		}
		p.pos++
		r, err := p.parseMul()
		if err != nil {
			return nil, err
		}
		l = arith(t.text, l, r)
	}
}

func (p *sqlParser) parseMul() (sqlExpr, error) {
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tSym || (t.text != "*" && t.text != "/" && t.text != "%") {
			return l, nil
		}
		p.pos++
		r, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		l = arith(t.text, l, r)
	}
}

func arith(op string, a, b sqlExpr) sqlExpr {
	return func(e *sqlEnv) any {
		x, y := a(e), b(e)
		if op == "||" {
			xs, ok1 := x.(string)
			ys, ok2 := y.(string)
			if ok1 && ok2 {
				return xs + ys
			}
			return undef
		}
		xf, ok1 := x.(float64)
		yf, ok2 := y.(float64)
		if !ok1 || !ok2 {
			return undef
		}
		switch op {
		case "+":
			return xf + yf
		case "-":
			return xf - yf
		case "*":
			return xf * yf
		case "/":
			if yf == 0 {
				return undef
			}
			return xf / yf
		default:
			if yf == 0 {
				return undef
			}
			return math.Mod(xf, yf)
		}
	}
}

func (p *sqlParser) parseUnary() (sqlExpr, error) {
	if p.acceptSym("-") {
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return func(e *sqlEnv) any {
			if f, ok := x(e).(float64); ok {
				return -f
			}
			return undef
		}, nil
	}
	return p.parsePostfix()
}

func (p *sqlParser) parsePostfix() (sqlExpr, error) {
	base, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.acceptSym("."):
			t := p.next()
			if t.kind != tIdent {
				return nil, errors.New("syntax error: expected a property name after '.'")
			}
			base = member1(base, func(*sqlEnv) any { return t.text })
		case p.acceptSym("["):
			idx, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			if err := p.expectSym("]"); err != nil {
				return nil, err
			}
			base = member1(base, idx)
		default:
			return base, nil
		}
	}
}

func member1(base, key sqlExpr) sqlExpr {
	return func(e *sqlEnv) any {
		switch v := base(e).(type) {
		case map[string]any:
			k, ok := key(e).(string)
			if !ok {
				return undef
			}
			if x, ok := v[k]; ok {
				return x
			}
		case []any:
			f, ok := key(e).(float64)
			if ok && f >= 0 && int(f) < len(v) && f == math.Trunc(f) {
				return v[int(f)]
			}
		}
		return undef
	}
}

func (p *sqlParser) parsePrimary() (sqlExpr, error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		f := t.num
		return func(*sqlEnv) any { return f }, nil
	case tString:
		s := t.text
		return func(*sqlEnv) any { return s }, nil
	case tParam:
		name := t.text
		return func(e *sqlEnv) any {
			if v, ok := e.params[name]; ok {
				return v
			}
			return undef
		}, nil
	case tSym:
		switch t.text {
		case "(":
			x, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			return x, p.expectSym(")")
		case "[":
			var items []sqlExpr
			for !p.isSym("]") {
				x, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				items = append(items, x)
				if !p.acceptSym(",") {
					break
				}
			}
			if err := p.expectSym("]"); err != nil {
				return nil, err
			}
			return func(e *sqlEnv) any {
				out := make([]any, 0, len(items))
				for _, x := range items {
					if v := x(e); v != undef {
						out = append(out, v)
					}
				}
				return out
			}, nil
		}
	case tIdent:
		switch strings.ToLower(t.text) {
		case "true":
			return func(*sqlEnv) any { return true }, nil
		case "false":
			return func(*sqlEnv) any { return false }, nil
		case "null":
			return func(*sqlEnv) any { return nil }, nil
		case "undefined":
			return func(*sqlEnv) any { return undef }, nil
		}
		if p.acceptSym("(") {
			var args []sqlExpr
			for !p.isSym(")") {
				x, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				args = append(args, x)
				if !p.acceptSym(",") {
					break
				}
			}
			if err := p.expectSym(")"); err != nil {
				return nil, err
			}
			return builtin(t.text, args)
		}
		name := t.text
		return func(e *sqlEnv) any {
			if name == e.alias {
				return e.doc
			}
			return undef
		}, nil
	}
	return nil, fmt.Errorf("syntax error near %q", t.text)
}

func builtin(name string, args []sqlExpr) (sqlExpr, error) {
	fn := strings.ToUpper(name)
	arity := map[string][2]int{
		"STARTSWITH": {2, 3}, "ENDSWITH": {2, 3}, "CONTAINS": {2, 3}, "LOWER": {1, 1}, "UPPER": {1, 1},
		"LENGTH": {1, 1}, "CONCAT": {2, 99}, "IS_DEFINED": {1, 1}, "IS_NULL": {1, 1}, "IS_STRING": {1, 1},
		"IS_NUMBER": {1, 1}, "IS_BOOL": {1, 1}, "IS_ARRAY": {1, 1}, "IS_OBJECT": {1, 1},
		"ARRAY_CONTAINS": {2, 3}, "ARRAY_LENGTH": {1, 1}, "ABS": {1, 1},
	}
	a, ok := arity[fn]
	if !ok {
		return nil, fmt.Errorf("function %s is not supported by the fake gateway", name)
	}
	if len(args) < a[0] || len(args) > a[1] {
		return nil, fmt.Errorf("function %s takes %d to %d arguments", fn, a[0], a[1])
	}
	return func(e *sqlEnv) any {
		v := make([]any, len(args))
		for i, x := range args {
			v[i] = x(e)
		}
		str := func(i int) (string, bool) { s, ok := v[i].(string); return s, ok }
		switch fn {
		case "STARTSWITH", "ENDSWITH", "CONTAINS":
			s, ok1 := str(0)
			sub, ok2 := str(1)
			if !ok1 || !ok2 {
				return undef
			}
			if len(v) == 3 && v[2] == true {
				s, sub = strings.ToLower(s), strings.ToLower(sub)
			}
			switch fn {
			case "STARTSWITH":
				return strings.HasPrefix(s, sub)
			case "ENDSWITH":
				return strings.HasSuffix(s, sub)
			}
			return strings.Contains(s, sub)
		case "LOWER", "UPPER":
			s, ok := str(0)
			if !ok {
				return undef
			}
			if fn == "LOWER" {
				return strings.ToLower(s)
			}
			return strings.ToUpper(s)
		case "LENGTH":
			s, ok := str(0)
			if !ok {
				return undef
			}
			return float64(len([]rune(s)))
		case "CONCAT":
			var sb strings.Builder
			for i := range v {
				s, ok := str(i)
				if !ok {
					return undef
				}
				sb.WriteString(s)
			}
			return sb.String()
		case "IS_DEFINED":
			return v[0] != undef
		case "IS_NULL":
			return v[0] == nil
		case "IS_STRING":
			_, ok := v[0].(string)
			return ok
		case "IS_NUMBER":
			_, ok := v[0].(float64)
			return ok
		case "IS_BOOL":
			_, ok := v[0].(bool)
			return ok
		case "IS_ARRAY":
			_, ok := v[0].([]any)
			return ok
		case "IS_OBJECT":
			_, ok := v[0].(map[string]any)
			return ok
		case "ARRAY_CONTAINS":
			arr, ok := v[0].([]any)
			if !ok {
				return undef
			}
			partial := len(v) == 3 && v[2] == true
			for _, x := range arr {
				if c, ok := compareValues(x, v[1]); ok && c == 0 {
					return true
				}
				if partial && objectContains(x, v[1]) {
					return true
				}
			}
			return false
		case "ARRAY_LENGTH":
			arr, ok := v[0].([]any)
			if !ok {
				return undef
			}
			return float64(len(arr))
		case "ABS":
			f, ok := v[0].(float64)
			if !ok {
				return undef
			}
			return math.Abs(f)
		}
		return undef
	}, nil
}

func objectContains(x, want any) bool {
	xm, ok1 := x.(map[string]any)
	wm, ok2 := want.(map[string]any)
	if !ok1 || !ok2 {
		return false
	}
	for k, wv := range wm {
		if c, ok := compareValues(xm[k], wv); !ok || c != 0 {
			return false
		}
	}
	return true
}

// typeRank orders values of different types, as ORDER BY does.
func typeRank(v any) int {
	switch v.(type) {
	case undefinedT:
		return 0
	case nil:
		return 1
	case bool:
		return 2
	case float64:
		return 3
	case string:
		return 4
	case []any:
		return 5
	default:
		return 6
	}
}

// compareValues compares two values of the same primitive type; ok is
// false when they are not comparable (the result is then undefined).
// Arrays and objects compare for equality only.
func compareValues(a, b any) (int, bool) {
	switch x := a.(type) {
	case nil:
		if b == nil {
			return 0, true
		}
	case bool:
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0, true
			case !x:
				return -1, true
			}
			return 1, true
		}
	case float64:
		if y, ok := b.(float64); ok {
			switch {
			case x < y:
				return -1, true
			case x > y:
				return 1, true
			}
			return 0, true
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true
		}
	case []any, map[string]any:
		if typeRank(a) == typeRank(b) {
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if string(ja) == string(jb) {
				return 0, true
			}
			return 1, true
		}
	}
	return 0, false
}

// queryRow is one input document for a query.
type queryRow struct {
	value map[string]any
	json  []byte // the document as the service returns it
}

// run evaluates the query over rows and returns the result values as
// JSON, in order.
func (q *sqlQuery) run(rows []queryRow, params map[string]any) ([]json.RawMessage, error) {
	env := &sqlEnv{alias: q.alias, params: params}
	var kept []queryRow
	for _, r := range rows {
		env.doc = r.value
		if q.where == nil || q.where(env) == true {
			kept = append(kept, r)
		}
	}
	if len(q.orderBy) > 0 {
		keys := make([][]any, len(kept))
		for i, r := range kept {
			env.doc = r.value
			for _, t := range q.orderBy {
				keys[i] = append(keys[i], t.expr(env))
			}
		}
		idx := make([]int, len(kept))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(i, j int) int {
			for k, t := range q.orderBy {
				c := typeRank(keys[i][k]) - typeRank(keys[j][k])
				if c == 0 {
					c, _ = compareValues(keys[i][k], keys[j][k])
				}
				if t.desc {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return 0
		})
		sorted := make([]queryRow, len(kept))
		for i, j := range idx {
			sorted[i] = kept[j]
		}
		kept = sorted
	}
	if q.agg != "" {
		v := aggregate(q.agg, q.aggArg, kept, env)
		if v == undef {
			return []json.RawMessage{}, nil
		}
		b, _ := json.Marshal(v)
		return []json.RawMessage{b}, nil
	}
	if q.offset > 0 || q.limit >= 0 {
		lo := min(q.offset, len(kept))
		hi := len(kept)
		if q.limit >= 0 {
			hi = min(lo+q.limit, len(kept))
		}
		kept = kept[lo:hi]
	}
	if q.top >= 0 && len(kept) > q.top {
		kept = kept[:q.top]
	}
	out := make([]json.RawMessage, 0, len(kept))
	for _, r := range kept {
		env.doc = r.value
		switch {
		case q.star:
			out = append(out, r.json)
		case q.value != nil:
			v := q.value(env)
			if v == undef {
				continue
			}
			b, _ := json.Marshal(v)
			out = append(out, b)
		default:
			var ms []member
			for _, f := range q.fields {
				v := f.expr(env)
				if v == undef {
					continue
				}
				b, _ := json.Marshal(v)
				ms = append(ms, member{key: f.name, raw: b})
			}
			out = append(out, encodeObject(ms))
		}
	}
	return out, nil
}

func aggregate(fn string, arg sqlExpr, rows []queryRow, env *sqlEnv) any {
	var n int
	var sum float64
	var best any = undef
	for _, r := range rows {
		env.doc = r.value
		v := arg(env)
		if v == undef {
			continue
		}
		switch fn {
		case "COUNT":
			n++
		case "SUM", "AVG":
			f, ok := v.(float64)
			if !ok {
				return undef
			}
			sum += f
			n++
		case "MIN", "MAX":
			if best == undef {
				best = v
				continue
			}
			c := typeRank(v) - typeRank(best)
			if c == 0 {
				c, _ = compareValues(v, best)
			}
			if (fn == "MIN" && c < 0) || (fn == "MAX" && c > 0) {
				best = v
			}
		}
	}
	switch fn {
	case "COUNT":
		return float64(n)
	case "SUM":
		return sum
	case "AVG":
		if n == 0 {
			return undef
		}
		return sum / float64(n)
	}
	return best
}
