package cosmos

import (
	"testing"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/template"
)

func TestDecode(t *testing.T) {
	del, _ := template.ParsePointer("/_deleted")
	d := decoder{collection: "orders", deleteAt: del}
	cases := []struct {
		name    string
		raw     string
		op      changefeed.Op
		id, v   string
		poison  bool
		hasKeys []string
		noKeys  []string
	}{
		{name: "document", raw: `{"id":"o1","_lsn":42,"_ts":1700000000,"_rid":"x","_self":"y","_etag":"\"e\"","_attachments":"a","n":1.50}`,
			op: changefeed.Update, id: "o1", v: "42", hasKeys: []string{"id", "_etag", "_ts", "n"}, noKeys: []string{"_lsn", "_rid", "_self", "_attachments"}},
		{name: "soft delete", raw: `{"id":"o2","_lsn":43,"_deleted":true}`, op: changefeed.Delete, id: "o2", v: "43"},
		{name: "numeric id", raw: `{"id":7,"_lsn":44}`, op: changefeed.Update, id: "7", v: "44"},
		{name: "no _lsn", raw: `{"id":"o3","n":1}`, id: "o3", poison: true},
		{name: "no id", raw: `{"_lsn":45}`, v: "45", poison: true},
		{name: "not an object", raw: `[1,2]`, poison: true},
		{name: "not JSON", raw: `{"id":"o4","_lsn":46,`, poison: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := d.decode([]byte(c.raw))
			if (ch.Err != nil) != c.poison {
				t.Fatalf("Err = %v, poison %v", ch.Err, c.poison)
			}
			if ch.ID != c.id || ch.Version != c.v || ch.Collection != "orders" {
				t.Fatalf("id %q v %q collection %q, want %q %q", ch.ID, ch.Version, ch.Collection, c.id, c.v)
			}
			if c.poison {
				if ch.After != nil {
					t.Fatalf("a poison change carries data: %v", ch.After)
				}
				return
			}
			if c.name == "document" && ch.CommitTime.Unix() != 1700000000 {
				t.Errorf("commit time %v, want _ts", ch.CommitTime)
			}
			if ch.Op != c.op {
				t.Fatalf("op %s, want %s", ch.Op, c.op)
			}
			doc := ch.After
			if ch.Op == changefeed.Delete {
				doc = ch.Before
			}
			for _, k := range c.hasKeys {
				if _, ok := doc[k]; !ok {
					t.Errorf("document lacks %s: %v", k, doc)
				}
			}
			for _, k := range c.noKeys {
				if _, ok := doc[k]; ok {
					t.Errorf("document keeps %s: %v", k, doc)
				}
			}
		})
	}
}
