package wire

import "encoding/json"

// Ops of an Entry in an Envelope.
const (
	// OpPatch: a client holding the document at version PV applies Patch
	// (RFC 6902) and is then at V.
	OpPatch = "patch"
	// OpUpsert: Doc is the whole document at version V.
	OpUpsert = "upsert"
	// OpDelete: the document is gone (or no longer visible to this group).
	OpDelete = "delete"
	// OpRefetch: the change could not be sent as data (Reason says why);
	// the client fetches the document itself.
	OpRefetch = "refetch"
	// OpTruncate: every document of Collection is gone (no ID).
	OpTruncate = "truncate"
)

// Envelope is the one argument of every hub invocation: a batch of changes
// for one hub and one group, user, or the whole hub. It is the public wire
// contract; field names never change.
type Envelope struct {
	Source string `json:"source" jsonschema:"required" jsonschema_description:"Where the batch came from, e.g. postgres:app/changecast or cosmos:orders-db/orders."`
	Hub    string `json:"hub" jsonschema:"required"`
	Group  string `json:"group,omitempty" jsonschema_description:"Set when the batch was sent to a group."`
	User   string `json:"user,omitempty" jsonschema_description:"Set when the batch was sent to a user."`
	// Epoch and Offset place the envelope in its stream's history (the
	// audience: hub and group, hub and user, or the whole hub): offsets
	// are contiguous per stream; a new epoch means the history was lost.
	Epoch   string  `json:"epoch,omitempty" jsonschema_description:"With a history: the stream's epoch. A new epoch means the history was lost (a restarted memory store, a flushed Redis): resync from a snapshot."`
	Offset  uint64  `json:"offset,omitempty" jsonschema_description:"With a history: this envelope's offset in its stream, contiguous from 1 within an epoch; a client that sees a gap fetches {negotiate.path}/changes."`
	Changes []Entry `json:"changes" jsonschema:"required"`
}

// Entry is one document change inside an Envelope (an element of its
// "changes" array).
type Entry struct {
	Op         string          `json:"op" jsonschema:"required,enum=patch,enum=upsert,enum=delete,enum=refetch,enum=truncate"`
	Collection string          `json:"collection" jsonschema:"required"`
	ID         string          `json:"id,omitempty" jsonschema_description:"Document id; absent only for truncate. Composite keys are a JSON array text."`
	V          string          `json:"v" jsonschema:"required" jsonschema_description:"Version: dot-separated decimal integers (Postgres commitLSN.index, Cosmos _lsn); compare segment by segment as big integers."`
	PV         string          `json:"pv,omitempty" jsonschema_description:"With patch: the version the patch applies to."`
	Patch      json.RawMessage `json:"patch,omitempty" jsonschema_description:"With patch: RFC 6902 operations."`
	Doc        json.RawMessage `json:"doc,omitempty" jsonschema_description:"With upsert: the whole document."`
	TS         string          `json:"ts,omitempty" jsonschema_description:"Commit time, RFC 3339."`
	Reason     string          `json:"reason,omitempty" jsonschema_description:"With refetch: why the data was not sent (too_large, unencodable, unchanged_toast, publish_failed)."`
}
