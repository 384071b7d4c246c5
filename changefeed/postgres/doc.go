// Package postgres is the PostgreSQL change source: logical replication
// from a permanent slot with the pgoutput plugin (protocol 1), through pgx
// and pglogrepl.
//
// Start from Slot: it is the changefeed.Partitions a changefeed.Runner
// runs (one lease per slot, so several instances elect one streamer), and
// it makes a Source per lease holder. New(Config) alone gives the Source,
// for a changefeed.Processor without leases. On every (re)connect it checks wal_level, the tables, their
// replica identity and key columns (problems come back as *FatalError),
// creates the publication before the slot when missing, and resumes at the
// slot's confirmed_flush_lsn.
//
// Decoding is pure (decode.go): pgoutput text values become JSON values
// without loss, TOAST-unchanged columns are filled from the old tuple under
// REPLICA IDENTITY FULL and otherwise reported in Change.Unchanged (never a
// placeholder). The flush LSN sent to the server is only what Checkpoint was
// given, i.e. what was published; heartbeat messages give quiet
// publications an LSN to confirm.
package postgres
