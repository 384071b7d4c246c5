package changefeed

import (
	"context"
	"errors"

	"github.com/changecast/changecast/schema/template"
)

// Snapshotter reads the current documents of a collection with exact
// versions. A document returned at version v is the document after its
// last change at or before v, which is the wire contract's rule: a client
// holding it applies the stream's later changes (a patch from pv to v'
// with pv <= v < v') with no gap and no refetch.
type Snapshotter interface {
	Snapshot(ctx context.Context, q SnapshotQuery) (*SnapshotPage, error)
}

// SnapshotQuery selects documents of one collection.
type SnapshotQuery struct {
	Collection string
	// Match keeps the documents whose fields have these texts (the text
	// wire.ScalarString gives the value): a mapping's group or user
	// template inverted for one group or user. Empty: every document.
	Match []FieldMatch
	// ID, when set, selects the one document with this source id.
	ID string
	// After resumes after the last document of the previous page
	// (SnapshotPage.Next); empty starts at the first.
	After string
	// Limit bounds the documents of a page.
	Limit int
}

// FieldMatch is one field of a document and the text its value has.
type FieldMatch struct {
	Field template.Pointer
	Value string
}

// SnapshotDoc is one document of a snapshot, or, when Deleted, the news
// that a document of the page is gone at Version: the stream may still
// carry changes of it from before Version, which a client holding this
// delete ignores instead of finding them a gap.
type SnapshotDoc struct {
	ID      string // the source's id (as Change.ID)
	Version string
	Doc     map[string]any // as the stream decodes it (Change.After); nil when Deleted
	Deleted bool
}

// SnapshotPage is a page of a snapshot, in the source's key order.
type SnapshotPage struct {
	Docs []SnapshotDoc
	// Next resumes after this page (SnapshotQuery.After); empty on the
	// last page.
	Next string
}

// ErrNotStreaming is what a Snapshotter returns when this instance does
// not stream the collection's feed now (a standby, or a reconnect):
// snapshots are exact only against the stream they are read beside.
// Callers answer 503 and let the client retry.
var ErrNotStreaming = errors.New("changefeed: this instance does not stream the feed now; retry")

// ErrUnsupported is what a Snapshotter returns when its source cannot serve
// snapshots at all (an old server): callers answer 501, not retry.
var ErrUnsupported = errors.New("changefeed: snapshots are not supported by this source")
