package cosmos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

// systemFields are the Cosmos properties a change carries that are not part
// of the document a client holds: _lsn exists only in the change feed, and
// _rid, _self and _attachments are addressing noise. _etag and _ts are kept:
// clients use them for conditional writes and display.
var systemFields = []string{"_lsn", "_rid", "_self", "_attachments"}

// decoder turns change feed items into changes.
type decoder struct {
	collection string
	deleteAt   template.Pointer // nil: no soft deletes
}

// decode turns one change feed item into a change. Latest-version mode
// cannot tell an insert from an update, so every document is an update (the
// pipeline sends a whole document when it has no previous version to diff
// against); a document whose soft-delete field is true is a delete. An item
// that is not a JSON object becomes a change with Err set, which the
// pipeline turns into a refetch marker, so the stream never stalls on it.
func (d *decoder) decode(raw []byte) *changefeed.Change {
	ch := &changefeed.Change{Collection: d.collection, Op: changefeed.Update}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	err := dec.Decode(&doc)
	if err == nil && doc == nil {
		err = errors.New("not a JSON object")
	}
	if err != nil {
		// Salvage what identifies the change so the marker names it.
		var head struct {
			ID  any         `json:"id"`
			LSN json.Number `json:"_lsn"`
		}
		_ = json.Unmarshal(raw, &head)
		ch.ID, _ = wire.ScalarString(head.ID)
		ch.Version = head.LSN.String()
		ch.Err = fmt.Errorf("cosmos: change feed item: %w", err)
		return ch
	}
	if n, ok := doc["_lsn"].(json.Number); ok {
		ch.Version = n.String()
	}
	if ch.Version == "" {
		// Without its version a change cannot be ordered against the
		// client's copy: send it as a refetch marker, never as data.
		ch.Err = errors.New("cosmos: change feed item has no _lsn")
	}
	if n, ok := doc["_ts"].(json.Number); ok {
		if s, err := n.Int64(); err == nil {
			ch.CommitTime = time.Unix(s, 0).UTC()
		}
	}
	ch.ID, _ = wire.ScalarString(doc["id"])
	if ch.ID == "" {
		ch.Err = errors.Join(ch.Err, errors.New("cosmos: change feed item has no id"))
	}
	if ch.Err != nil {
		return ch
	}
	for _, f := range systemFields {
		delete(doc, f)
	}
	if d.deleteAt != nil {
		if v, ok := d.deleteAt.Get(doc); ok && v == true {
			ch.Op, ch.Before = changefeed.Delete, doc
			return ch
		}
	}
	ch.After = doc
	return ch
}
