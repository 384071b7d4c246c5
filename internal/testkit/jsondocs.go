package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// NormJSON decodes JSON with numbers as exact rationals, so 12.50 and 12.5
// compare equal but 0.1 and 0.10000000000000001 do not.
func NormJSON(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	return NormNumbers(v)
}

// NormNumbers turns json.Numbers into exact rationals, in place.
func NormNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		r, ok := new(big.Rat).SetString(x.String())
		if !ok {
			return x.String()
		}
		return r.RatString()
	case map[string]any:
		for k, e := range x {
			x[k] = NormNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = NormNumbers(e)
		}
	}
	return v
}

// DBDocs reads every row of table as to_jsonb, keyed by "collection/id".
func DBDocs(t testing.TB, db *pgx.Conn, table, idCol string) map[string][]byte {
	t.Helper()
	rows, err := db.Query(context.Background(), fmt.Sprintf("SELECT %s::text, to_jsonb(x)::text FROM %s x", idCol, table))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for rows.Next() {
		var id, doc string
		if err := rows.Scan(&id, &doc); err != nil {
			t.Fatal(err)
		}
		out[table+"/"+id] = []byte(doc)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
