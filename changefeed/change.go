package changefeed

import (
	"context"
	"time"
)

// Op is what happened to a document.
type Op string

const (
	Insert   Op = "insert"
	Update   Op = "update"
	Delete   Op = "delete"
	Truncate Op = "truncate" // every row of Collection; no ID, Before or After
	// Reset says the stream lost continuity with what was published
	// before it (a PostgreSQL slot invalidated or dropped and created
	// anew): every document may have changed or gone without the stream
	// saying so. Consumers forget what they sent and make clients reload
	// (a new epoch for every stream). No Collection, ID, Before or After;
	// Version orders it before every later change.
	Reset Op = "reset"
)

// Position is a source's resumable position: a PostgreSQL LSN ("0/16B3748")
// or a Cosmos continuation token. Empty means none.
type Position string

// Change is one document change read from a source.
type Change struct {
	Collection string // "schema.table" or the Cosmos container
	ID         string // document id: one key value as text, or a JSON array text for composite keys
	Op         Op
	// PrevID is set on an update that changed the document's key: to
	// clients the document PrevID is gone and ID is new.
	PrevID string
	// Before is the previous version when the source has it (Postgres
	// REPLICA IDENTITY FULL); under DEFAULT it may hold only the key
	// columns, and then BeforePartial is true.
	Before        map[string]any
	BeforePartial bool
	// BeforeRoutes is set when Before, though partial, holds every field
	// the collection's mappings route and key by (a Cosmos routing index
	// entry: the fields of the version clients hold): where that version
	// went can be rendered from it.
	BeforeRoutes bool
	// PrevUnknown is set when the source cannot tell where the version
	// clients hold went (no before-image, no routing index entry): a
	// consumer that does not know either must tell every possible holder.
	PrevUnknown bool
	// BeforeVersion, when set, is the version clients hold (a Cosmos
	// routing index entry's _lsn): a stored copy of another version (a
	// shadow store filled by another pipeline) is no base for a patch.
	BeforeVersion string
	After         map[string]any // nil for delete
	// Unchanged lists top-level fields of After the source could not read
	// (Postgres unchanged TOAST values); they equal the previous version's.
	Unchanged []string
	// Refresh marks a document republished from a snapshot (a
	// resnapshot): the pipeline sends it whole, even when it did not change
	// since it was last sent.
	Refresh bool
	// Version orders the versions of one document: dot-separated decimal
	// integers (Postgres "commitLSN.index", Cosmos "_lsn").
	Version    string
	CommitTime time.Time
	// Err, when set, says the source could not decode this change; the
	// pipeline sends a refetch marker for ID instead of data.
	Err error
}

// Event is what a source emits: a change, a resume point, or both.
type Event struct {
	Change *Change // nil for a pure checkpoint marker (e.g. a commit or a heartbeat)
	// Position, when set, is where the source can resume once this event and
	// every event before it have been published.
	Position Position
}

// Source streams one change feed (a Postgres slot, a Cosmos lease's feed
// range).
type Source interface {
	// Run emits events in source order until ctx ends (then it returns nil)
	// or the source fails for good. It resumes from the last position given
	// to Checkpoint (or the store's). Sending on out blocks when the pipeline
	// is full, which is how backpressure pauses reading.
	Run(ctx context.Context, out chan<- Event) error
	// Checkpoint records that every event up to and including pos has been
	// published. It may be called from any goroutine.
	Checkpoint(ctx context.Context, pos Position) error
}
