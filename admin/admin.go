package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/schema/config"
)

// ArgError is a request the operation refuses as asked (a bad --to, an
// operation the source cannot do): the CLI exits 2, the HTTP API answers
// 400. Any other error is a failure to carry it out (exit 1, HTTP 500).
type ArgError struct{ Msg string }

func (e *ArgError) Error() string { return e.Msg }

func argErrorf(format string, args ...any) error { return &ArgError{Msg: fmt.Sprintf(format, args...)} }

// IsArgError reports whether err is an *ArgError.
func IsArgError(err error) bool {
	var a *ArgError
	return errors.As(err, &a)
}

// Duration is a time.Duration that JSON writes as Go text ("12s").
type Duration time.Duration

// MarshalJSON writes d as text, rounded to the second.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + d.String() + `"`), nil
}

func (d Duration) String() string { return time.Duration(d).Round(time.Second).String() }

// LeasesOptions tunes Leases.
type LeasesOptions struct {
	// NoLag skips the lag: Cosmos DB's estimate (one change feed read per
	// lease), PostgreSQL's WAL distance.
	NoLag bool
	// Store, when set, is the running worker's lease store, read instead
	// of opening cfg's: with lease.store memory the leases live only there.
	Store lease.Store
}

// LeaseReport is what Leases returns: for a PostgreSQL source the slot,
// for a Cosmos DB source its leases.
type LeaseReport struct {
	Processor string       `json:"processor"`
	Slot      *SlotStatus  `json:"slot,omitempty"`
	Prefix    string       `json:"prefix,omitempty"` // Cosmos: the leases' id prefix
	Leases    []LeaseState `json:"leases,omitempty"`
}

// SlotStatus is a PostgreSQL slot: the stream position is the slot itself
// (confirmed_flush_lsn); the lease, with lease.store postgres, only says
// which instance streams.
type SlotStatus struct {
	Slot              string `json:"slot"`
	Exists            bool   `json:"exists"`
	Active            bool   `json:"active"`
	ConfirmedFlushLSN string `json:"confirmedFlushLSN,omitempty"`
	// LagBytes is the WAL between the server's position and the slot's;
	// nil when unknown.
	LagBytes  *int64 `json:"lagBytes,omitempty"`
	WALStatus string `json:"walStatus,omitempty"`
	// RetainedBytes is the WAL the slot keeps on the server (from its
	// restart_lsn); SafeWALBytes what may still be written before the
	// server invalidates the slot (max_slot_wal_keep_size), nil when
	// unlimited or unknown.
	RetainedBytes *int64 `json:"retainedBytes,omitempty"`
	SafeWALBytes  *int64 `json:"safeWALBytes,omitempty"`
	// Owner and LeaseAge come from the lease (lease.store postgres).
	Owner    string   `json:"owner,omitempty"`
	LeaseAge Duration `json:"leaseAge,omitempty"`
	// LeaseError says why the lease could not be read, if it could not.
	LeaseError string `json:"leaseError,omitempty"`
}

// LeaseState is one Cosmos lease.
type LeaseState struct {
	Token string          `json:"token"`
	Owner string          `json:"owner,omitempty"`
	Range lease.FeedRange `json:"range"`
	// Continuation describes the lease's position (cosmos.Describe).
	Continuation string   `json:"continuation"`
	Lag          *int64   `json:"lag,omitempty"` // estimated changes not yet delivered; nil unknown
	LagError     string   `json:"lagError,omitempty"`
	Age          Duration `json:"age"`
}

// Leases reports where each stream of cfg's processor is and who reads it.
// A Cosmos source needs a shared lease store: a memory store lives inside
// the running worker.
func Leases(ctx context.Context, cfg *config.Config, o LeasesOptions) (*LeaseReport, error) {
	if cfg.Source.Postgres != nil {
		return pgLeases(ctx, cfg, o)
	}
	return cosmosLeases(ctx, cfg, o)
}

// Reset is what ResetCheckpoint did.
type Reset struct {
	Processor string `json:"processor"`
	// PostgreSQL: the slot and the position it now confirms.
	Slot string `json:"slot,omitempty"`
	LSN  string `json:"lsn,omitempty"`
	// Cosmos DB: how many leases were rewritten, and to what.
	Leases int    `json:"leases,omitempty"`
	To     string `json:"to,omitempty"`
	// Resnapshot: the worker streaming the slot was asked to republish
	// every row.
	Resnapshot bool `json:"resnapshot,omitempty"`
}

// ResetOptions say what ResetCheckpoint does.
type ResetOptions struct {
	// To is where every stream moves: beginning, now, an RFC 3339 time
	// (Cosmos DB) or an LSN (PostgreSQL).
	To string
	// Resnapshot republishes the current rows of every mapped table as
	// whole documents through the pipeline while streaming goes on, the
	// stream not moving (PostgreSQL).
	Resnapshot bool
}

// ResetCheckpoint moves every stream of cfg's processor: a PostgreSQL slot
// forward to "now" or an LSN (a slot never moves back: what it confirmed,
// the server may have recycled); every Cosmos lease to "beginning", "now"
// or an RFC 3339 time. Running workers pick the new position up. With
// Resnapshot it republishes every row instead (PostgreSQL).
func ResetCheckpoint(ctx context.Context, cfg *config.Config, o ResetOptions) (*Reset, error) {
	switch {
	case !o.Resnapshot && o.To == "":
		return nil, argErrorf("--to is required: beginning, now, an RFC 3339 time (Cosmos DB) or an LSN (PostgreSQL); or --resnapshot (PostgreSQL)")
	case o.Resnapshot && o.To != "":
		return nil, argErrorf("give --to or --resnapshot, not both")
	case o.Resnapshot && cfg.Source.Postgres != nil:
		return pgResnapshot(ctx, cfg)
	case o.Resnapshot:
		return nil, argErrorf("--resnapshot is for PostgreSQL sources; a Cosmos DB processor republishes every document with --to beginning")
	case cfg.Source.Postgres != nil:
		return pgReset(ctx, cfg, o.To)
	}
	return cosmosReset(ctx, cfg, o.To)
}
