package lease

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Separator joins a lease prefix and a lease token into a lease id, as the
// .NET and Java change feed processors do ("{prefix}..{token}"). Listing
// Prefix+Separator therefore finds a processor's leases but not its
// bookkeeping documents ("{prefix}.info", "{prefix}.lock").
const Separator = ".."

// Schema versions of the lease document, as in the .NET processor: 0 names a
// partition by id (a Cosmos partition key range id, a Postgres slot); 1 names
// an effective-partition-key (EPK) range.
const (
	SchemaPartition = 0
	SchemaRange     = 1
)

// ModeIncremental is the Cosmos latest-version change feed mode as the .NET
// processor writes it in a lease's Mode.
const ModeIncremental = "Incremental Feed"

// Lease is one unit of ownership: a feed range (or a partition) of a change
// feed, the instance that currently reads it, and where reading resumes.
//
// A Lease value is a copy of what a Store holds at ETag; the Store never
// changes a Lease it returned, and every write takes the copy the caller read
// and fails if the stored lease has moved on since (compare-and-set).
//
// The JSON encoding is the .NET/Java change feed processor's lease document
// (schema version 1 for ranges, 0 for partitions) so existing tooling such as
// KEDA's Cosmos scaler can read it.
type Lease struct {
	// ID is Prefix + Separator + Token, unique in the store.
	ID string
	// Token names the range: "{min}-{max}" for a range, the partition id
	// otherwise (.NET's LeaseToken).
	Token string
	// Range is what the lease covers.
	Range FeedRange
	// Owner is the instance that holds the lease; "" means nobody.
	Owner string
	// Continuation is where reading resumes, opaque to this package: a
	// Cosmos continuation (the .NET processor stores the raw quoted ETag) or
	// a PostgreSQL LSN. "" means the source's start position applies.
	Continuation string
	// Timestamp is the last write (acquire, renew, checkpoint), set by the
	// store's clock. An owned lease whose Timestamp is older than the
	// expiry interval is free for anyone to take.
	Timestamp time.Time
	// Properties are user key/values carried along, including to the
	// children of a split.
	Properties map[string]string
	// Mode is the change feed mode (ModeIncremental); "" when not Cosmos.
	Mode string
	// Schema is SchemaRange or SchemaPartition (the document's "version").
	Schema int
	// ETag identifies the stored version of this lease; every write
	// compares it. Opaque: a Cosmos _etag, or a version number.
	ETag string
	// PartitionKey is the document's "partitionKey" in a Cosmos lease
	// container partitioned on /partitionKey (the newer .NET default; a
	// random GUID there, the id when changecast creates it); "" otherwise.
	PartitionKey string
	// ReadAt is the store's clock when this copy was read or written. With
	// Timestamp it gives the lease's age measured on one clock, so instances
	// whose clocks disagree still agree on expiry. Not stored.
	ReadAt time.Time
}

// FeedRange is a half-open effective-partition-key range [Min, Max) of a
// Cosmos container (uppercase hex; "" is the lowest key and "FF" the end),
// or, when Partition is set, one partition named by id.
type FeedRange struct {
	Min, Max  string
	Partition string
}

// IsZero reports whether the range is unset (bookkeeping documents).
func (r FeedRange) IsZero() bool { return r == FeedRange{} }

// ForRange returns a new, unowned lease for the EPK range [min, max) under
// prefix (the processor name, or the .NET style
// "{processor}{host}_{dbRid}_{collRid}").
func ForRange(prefix, min, max string) *Lease {
	tok := min + "-" + max
	return &Lease{
		ID:     prefix + Separator + tok,
		Token:  tok,
		Range:  FeedRange{Min: min, Max: max},
		Schema: SchemaRange,
	}
}

// ForPartition returns a new, unowned lease for one partition (a Cosmos
// partition key range id, a PostgreSQL slot) under prefix.
func ForPartition(prefix, partition string) *Lease {
	return &Lease{
		ID:     prefix + Separator + partition,
		Token:  partition,
		Range:  FeedRange{Partition: partition},
		Schema: SchemaPartition,
	}
}

// Prefix returns the part of ID before the last Separator, or "" if there is
// none.
func (l *Lease) Prefix() string {
	i := strings.LastIndex(l.ID, Separator)
	if i < 0 {
		return ""
	}
	return l.ID[:i]
}

// Age is how long ago the lease was last written, on the store's clock.
func (l *Lease) Age() time.Duration { return l.ReadAt.Sub(l.Timestamp) }

// Expired reports whether anyone may take the lease: it has no owner, or its
// owner has not renewed it for longer than expiry.
func (l *Lease) Expired(expiry time.Duration) bool {
	return l.Owner == "" || l.Age() > expiry
}

// Clone returns a deep copy.
func (l *Lease) Clone() *Lease {
	c := *l
	c.Properties = maps.Clone(l.Properties)
	return &c
}

// timestampFormat writes "timestamp" with at most 7 fractional digits, the
// precision of .NET's DateTime (100 ns ticks), which its lease parser reads
// without a fallback.
const timestampFormat = "2006-01-02T15:04:05.9999999Z"

// document is the .NET/Java lease document (cosmos.md §3.1). Owner and
// ContinuationToken are written as null when empty, as .NET does.
type document struct {
	ID                string            `json:"id"`
	Version           int               `json:"version"`
	LeaseToken        string            `json:"LeaseToken"`
	FeedRange         *documentRange    `json:"FeedRange,omitempty"`
	Owner             *string           `json:"Owner"`
	ContinuationToken *string           `json:"ContinuationToken"`
	Timestamp         string            `json:"timestamp,omitempty"`
	Properties        map[string]string `json:"properties"`
	Mode              string            `json:"Mode,omitempty"`
	ETag              string            `json:"_etag,omitempty"`
	PartitionKey      string            `json:"partitionKey,omitempty"`
	TS                int64             `json:"_ts,omitempty"` // server time in Cosmos; read only
}

type documentRange struct {
	Range     *documentEPK `json:"Range,omitempty"`
	PKRangeID string       `json:"PKRangeId,omitempty"`
}

type documentEPK struct {
	Min string `json:"min"`
	Max string `json:"max"`
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// MarshalJSON writes the .NET/Java lease document. It has a value receiver
// so that Lease values and pointers encode alike.
func (l Lease) MarshalJSON() ([]byte, error) {
	d := document{
		ID:                l.ID,
		Version:           l.Schema,
		LeaseToken:        l.Token,
		Owner:             nonEmpty(l.Owner),
		ContinuationToken: nonEmpty(l.Continuation),
		Properties:        l.Properties,
		Mode:              l.Mode,
		ETag:              l.ETag,
		PartitionKey:      l.PartitionKey,
	}
	if d.Properties == nil {
		d.Properties = map[string]string{}
	}
	if !l.Timestamp.IsZero() {
		d.Timestamp = l.Timestamp.UTC().Format(timestampFormat)
	}
	switch {
	case l.Range.Partition != "":
		d.FeedRange = &documentRange{PKRangeID: l.Range.Partition}
	case !l.Range.IsZero():
		d.FeedRange = &documentRange{Range: &documentEPK{Min: l.Range.Min, Max: l.Range.Max}}
	}
	return json.Marshal(d)
}

// UnmarshalJSON reads a .NET/Java lease document. A version 0 document
// without FeedRange names its partition by LeaseToken; a missing timestamp
// falls back to _ts, as in .NET.
func (l *Lease) UnmarshalJSON(b []byte) error {
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		return err
	}
	*l = Lease{
		ID:           d.ID,
		Token:        d.LeaseToken,
		Properties:   d.Properties,
		Mode:         d.Mode,
		Schema:       d.Version,
		ETag:         d.ETag,
		PartitionKey: d.PartitionKey,
	}
	if d.Owner != nil {
		l.Owner = *d.Owner
	}
	if d.ContinuationToken != nil {
		l.Continuation = *d.ContinuationToken
	}
	switch {
	case d.Timestamp != "":
		t, err := time.Parse(time.RFC3339Nano, d.Timestamp)
		if err != nil {
			return fmt.Errorf("lease %s: timestamp %q: %w", d.ID, d.Timestamp, err)
		}
		l.Timestamp = t
	case d.TS != 0:
		l.Timestamp = time.Unix(d.TS, 0).UTC()
	}
	switch {
	case d.FeedRange != nil && d.FeedRange.Range != nil:
		l.Range = FeedRange{Min: d.FeedRange.Range.Min, Max: d.FeedRange.Range.Max}
	case d.FeedRange != nil && d.FeedRange.PKRangeID != "":
		l.Range = FeedRange{Partition: d.FeedRange.PKRangeID}
	case d.Version == SchemaPartition && d.LeaseToken != "":
		l.Range = FeedRange{Partition: d.LeaseToken}
	}
	return nil
}
