package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/changecast/changecast/schema/config"
)

// ShadowStore keeps the last published version of each document outside the
// process, so that a restarted worker, or the new owner of a lease, goes on
// sending patches instead of whole documents. It is optional; without it
// the shadow lives in memory only.
//
// Records are saved only after their batch was published and before the
// checkpoint moves past them, so a stored version was always delivered: a
// replay after a restart at or below it is skipped, never lost. Save must
// keep the newest version per key (batches of different targets complete in
// any order).
type ShadowStore interface {
	// Load returns the record of key; ok is false when there is none.
	Load(ctx context.Context, key string) (rec ShadowRecord, ok bool, err error)
	// Save stores records, keeping per key only the newest version; a
	// record with Prefix set deletes every key with that prefix older than
	// its version.
	Save(ctx context.Context, recs []ShadowRecord) error
}

// ShadowRecord is one document's last published version under one mapping.
type ShadowRecord struct {
	Key      string // mapping fingerprint + "/" + document id
	V        string
	Doc      []byte // the projected document as sent; nil: deleted at V
	Audience Audience
	Prefix   bool // a truncate: forget every key starting with Key
}

// fingerprint names a mapping in stored keys. It changes when the mapping
// changes (its projection, routing…), so a changed mapping starts from whole
// documents instead of diffing against documents shaped by the old one.
func fingerprint(m config.Mapping) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%q|%q|%q|%q|%q|%q|%q|%q", m.Collection, m.Hub, m.Group, m.User, m.Method, m.Key, m.Include, m.Exclude)))
	return hex.EncodeToString(h[:8])
}
