package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/changecast/changecast/schema/template"
	"github.com/invopop/jsonschema"
	"go.yaml.in/yaml/v3"
)

// Config is the whole changecast configuration file. Load reads it; the zero
// values of optional fields are replaced by the defaults documented on each
// field (ApplyDefaults), and Validate reports every problem with the path of
// the field that holds it.
type Config struct {
	Source   Source    `yaml:"source" json:"source" jsonschema:"required" jsonschema_description:"Where changes come from: exactly one of postgres or cosmos."`
	Lease    Lease     `yaml:"lease,omitempty" json:"lease,omitempty" jsonschema_description:"Where stream positions (checkpoints) and ownership are kept."`
	Mappings []Mapping `yaml:"mappings" json:"mappings" jsonschema:"required,minItems=1" jsonschema_description:"Which collections go to which hub, group or user."`
	Publish  Publish   `yaml:"publish,omitempty" json:"publish,omitempty" jsonschema_description:"Where batches of changes are sent."`
	Hub      Hub       `yaml:"hub,omitempty" json:"hub,omitempty" jsonschema_description:"The built-in SignalR-compatible hub (publish.target: hub)."`
	Server   Server    `yaml:"server,omitempty" json:"server,omitempty" jsonschema_description:"The operations endpoint: /healthz, /readyz, /metrics."`
	History  History   `yaml:"history,omitempty" json:"history,omitempty" jsonschema_description:"Per-stream history of sent envelopes, so clients catch up after a disconnect ({negotiate.path}/changes)."`
}

// History keeps the envelopes sent to each stream (hub and group, hub and
// user, the whole hub) for clients that catch up after a disconnect.
type History struct {
	Store       string        `yaml:"store,omitempty" json:"store,omitempty" jsonschema:"enum=memory,enum=redis,enum=off" jsonschema_description:"memory (default: one process; a restart is a new epoch), redis (several workers and restarts share one history per stream) or off."`
	MaxMessages int           `yaml:"maxMessages,omitempty" json:"maxMessages,omitempty" jsonschema_description:"Envelopes kept per stream. Default 10000."`
	MaxAge      Duration      `yaml:"maxAge,omitempty" json:"maxAge,omitempty" jsonschema_description:"How long an envelope is kept. Default 10m."`
	MaxBytes    int64         `yaml:"maxBytes,omitempty" json:"maxBytes,omitempty" jsonschema_description:"Memory store: bytes of envelopes kept in all, the oldest dropped first. Default 67108864 (64 MB)."`
	File        string        `yaml:"file,omitempty" json:"file,omitempty" jsonschema_description:"Memory store: a file the histories are written to on a graceful stop and read back (then removed) at start, so clients catch up across a restart instead of reloading. Empty (default): a restart is a new epoch."`
	Redis       *HistoryRedis `yaml:"redis,omitempty" json:"redis,omitempty" jsonschema_description:"With store: redis."`
}

// HistoryRedis is where store: redis keeps the histories.
type HistoryRedis struct {
	URL    string `yaml:"url" json:"url" jsonschema:"required" jsonschema_description:"redis://[user:password@]host:port/db or rediss:// for TLS."`
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty" jsonschema_description:"Key prefix. Default changecast:history."`
}

// Source names the change feed. Exactly one of its members is set.
type Source struct {
	Postgres *PostgresSource `yaml:"postgres,omitempty" json:"postgres,omitempty"`
	Cosmos   *CosmosSource   `yaml:"cosmos,omitempty" json:"cosmos,omitempty"`
	// ErrorAfter: a source that cannot read (connection refused, 503s,
	// timeouts) retries with backoff, not ready, logging at WARN, and at
	// ERROR once the failure has lasted this long.
	ErrorAfter Duration `yaml:"errorAfter,omitempty" json:"errorAfter,omitempty" jsonschema_description:"Retried read failures are logged at WARN, and at ERROR once they have lasted this long. Default 2m."`
}

// PostgresSource reads a PostgreSQL database through logical replication
// (pgoutput) from a permanent slot.
type PostgresSource struct {
	URL         string   `yaml:"url" json:"url" jsonschema:"required" jsonschema_description:"libpq URL or key=value string of the database to read."`
	Slot        string   `yaml:"slot,omitempty" json:"slot,omitempty" jsonschema_description:"Replication slot name; created (permanent, pgoutput) when missing. Default changecast."`
	Publication string   `yaml:"publication,omitempty" json:"publication,omitempty" jsonschema_description:"Publication name; created for tables when missing. Default changecast."`
	Tables      []string `yaml:"tables" json:"tables" jsonschema:"required,minItems=1" jsonschema_description:"Schema-qualified tables to stream, e.g. public.orders."`
	// Heartbeat is how often a non-transactional logical message is
	// written so a quiet publication still gets an LSN to confirm.
	Heartbeat Duration `yaml:"heartbeat,omitempty" json:"heartbeat,omitempty" jsonschema_description:"Interval of heartbeat messages that keep the slot advancing while the published tables are quiet. Default 10s; 0 keeps the default, negative disables."`
	// StatusInterval is how often a standby status update is sent; it must
	// be well inside the server's wal_sender_timeout (60 s by default).
	StatusInterval Duration `yaml:"statusInterval,omitempty" json:"statusInterval,omitempty" jsonschema_description:"Interval of standby status updates (flush LSN). Default 5s."`
	// ReplicaIdentity full makes deletes and updates carry the whole old
	// row, so every delete and routing move reaches the groups that held
	// the row, whether or not changecast saw it (docs/postgres.md).
	ReplicaIdentity string `yaml:"replicaIdentity,omitempty" json:"replicaIdentity,omitempty" jsonschema:"enum=full,enum=keep" jsonschema_description:"full (default): at start, set REPLICA IDENTITY FULL on every streamed table that lacks it (needs the table's owner), so every delete and move reaches the groups that held the row. keep: leave tables as they are; a delete or move of a row changecast has not seen is sent to the whole hub as a delete."`
	// OnSlotLost: what to do when the slot was invalidated
	// (max_slot_wal_keep_size) or dropped.
	OnSlotLost string `yaml:"onSlotLost,omitempty" json:"onSlotLost,omitempty" jsonschema:"enum=recreate,enum=stop" jsonschema_description:"When the replication slot was invalidated (max_slot_wal_keep_size) or dropped: recreate (default) creates it anew and starts a new epoch for every stream, so every client reloads from a snapshot; stop exits with code 2 for a person to decide."`
	// WALWarnFraction: a WARN when the WAL the slot may still hold back
	// before it is invalidated falls under this fraction of
	// max_slot_wal_keep_size.
	WALWarnFraction float64 `yaml:"walWarnFraction,omitempty" json:"walWarnFraction,omitempty" jsonschema_description:"WARN when the slot's safe_wal_size falls under this fraction of max_slot_wal_keep_size. Default 0.2; negative disables."`
}

// CosmosSource reads an Azure Cosmos DB container's change feed.
type CosmosSource struct {
	Endpoint     string   `yaml:"endpoint" json:"endpoint" jsonschema:"required"`
	Key          string   `yaml:"key,omitempty" json:"key,omitempty" jsonschema_description:"Account key; leave empty with credential: azure."`
	Credential   string   `yaml:"credential,omitempty" json:"credential,omitempty" jsonschema:"enum=,enum=key,enum=azure" jsonschema_description:"key (default when key is set) or azure (DefaultAzureCredential)."`
	Database     string   `yaml:"database" json:"database" jsonschema:"required"`
	Container    string   `yaml:"container" json:"container" jsonschema:"required"`
	StartFrom    string   `yaml:"startFrom,omitempty" json:"startFrom,omitempty" jsonschema_description:"beginning, now (default) or an RFC 3339 time; used only when no lease exists yet."`
	PollInterval Duration `yaml:"pollInterval,omitempty" json:"pollInterval,omitempty" jsonschema_description:"Sleep after an empty read. Default 1s."`
	MaxItems     int      `yaml:"maxItems,omitempty" json:"maxItems,omitempty" jsonschema_description:"Page size of change feed reads. Default 100."`
	DeleteField  string   `yaml:"deleteField,omitempty" json:"deleteField,omitempty" jsonschema_description:"JSON Pointer of a soft-delete flag; a document where it is true becomes op delete. Example /_deleted."`
	// RoutingIndex keeps each lease's documents' routing fields in memory,
	// seeded by one read of the range when the lease starts, so moves and
	// soft deletes reach the group that held the document.
	RoutingIndex *bool `yaml:"routingIndex,omitempty" json:"routingIndex,omitempty" jsonschema_description:"Keep the routing and key fields of every document of each held lease in memory (seeded by one read of the range's change feed when the lease starts) so that moves and soft deletes reach the group or user that held the document. Default true; false sends them as deletes to the whole hub instead (a WARN at start, changecast_route_fallback_total counts them)."`
}

// Indexed reports whether the routing index is on: as set, default true.
func (c *CosmosSource) Indexed() bool { return c.RoutingIndex == nil || *c.RoutingIndex }

// Lease says where checkpoints and ownership live.
type Lease struct {
	Store     string       `yaml:"store,omitempty" json:"store,omitempty" jsonschema:"enum=memory,enum=postgres,enum=cosmos" jsonschema_description:"memory (default, one node), postgres or cosmos."`
	Processor string       `yaml:"processor,omitempty" json:"processor,omitempty" jsonschema_description:"Lease prefix: one processor name is one consumer group. Default changecast."`
	Cosmos    *CosmosLease `yaml:"cosmos,omitempty" json:"cosmos,omitempty"`
	Postgres  *PgLease     `yaml:"postgres,omitempty" json:"postgres,omitempty"`
	// Owner must be unique among the instances sharing a lease store; a
	// stable one (a pod name) lets a restarted instance take its leases back
	// at once instead of after the expiry.
	Owner           string   `yaml:"owner,omitempty" json:"owner,omitempty" jsonschema_description:"This instance's name in the leases. Default: host name plus a random suffix."`
	AcquireInterval Duration `yaml:"acquireInterval,omitempty" json:"acquireInterval,omitempty" jsonschema_description:"Balancing period. Default 13s."`
	RenewInterval   Duration `yaml:"renewInterval,omitempty" json:"renewInterval,omitempty" jsonschema_description:"Lease renewal period. Default 17s."`
	Expiry          Duration `yaml:"expiry,omitempty" json:"expiry,omitempty" jsonschema_description:"A lease not renewed for this long is taken by another instance. Default 60s."`
}

// CosmosLease is a lease container in Cosmos DB, partitioned on /id or
// /partitionKey.
type CosmosLease struct {
	Database        string `yaml:"database" json:"database" jsonschema_description:"Database of the lease container, in the source's account."`
	Container       string `yaml:"container" json:"container" jsonschema_description:"Lease container, partitioned on /id or /partitionKey (the .NET/Java change feed processor's lease schema)."`
	CreateIfMissing bool   `yaml:"createIfMissing,omitempty" json:"createIfMissing,omitempty" jsonschema_description:"Create the database and the lease container when missing. Default false."`
}

// PgLease is a lease table in PostgreSQL.
type PgLease struct {
	URL   string `yaml:"url,omitempty" json:"url,omitempty" jsonschema_description:"Database holding the lease table; default the postgres source's url."`
	Table string `yaml:"table,omitempty" json:"table,omitempty" jsonschema_description:"Default changecast_leases."`
}

// Mapping routes one collection (a table, or a Cosmos container) to a hub,
// optionally to a group or a user derived from the document.
type Mapping struct {
	Collection string   `yaml:"collection" json:"collection" jsonschema:"required" jsonschema_description:"Table (schema.table) or Cosmos container name."`
	Hub        string   `yaml:"hub" json:"hub" jsonschema:"required"`
	Group      string   `yaml:"group,omitempty" json:"group,omitempty" jsonschema_description:"Group name template; {/json/pointer} is replaced by that document field."`
	User       string   `yaml:"user,omitempty" json:"user,omitempty" jsonschema_description:"User id template, like group."`
	Method     string   `yaml:"target,omitempty" json:"target,omitempty" jsonschema_description:"SignalR method the client handles. Default changes."`
	Key        []string `yaml:"key,omitempty" json:"key,omitempty" jsonschema_description:"JSON Pointers of the document id; default the table's primary key (Cosmos: /id)."`
	Include    []string `yaml:"include,omitempty" json:"include,omitempty" jsonschema_description:"Only these JSON Pointers are sent."`
	Exclude    []string `yaml:"exclude,omitempty" json:"exclude,omitempty" jsonschema_description:"These JSON Pointers are never sent."`
	// Snapshot serves the mapping's current documents at
	// {negotiate.path}/snapshot. It needs a group or user template that
	// inverts (at most one {…} field).
	Snapshot *bool `yaml:"snapshot,omitempty" json:"snapshot,omitempty" jsonschema_description:"Serve this mapping's current documents at {negotiate.path}/snapshot. Default: on when the group or user template has at most one {/field}; true requires it (config validate names the template otherwise); false turns it off."`
}

// Snapshots reports whether the mapping's documents are served by
// snapshots: as set, or, when unset, when its template inverts.
func (m Mapping) Snapshots() bool {
	if m.Snapshot != nil {
		return *m.Snapshot
	}
	return m.invertible()
}

func (m Mapping) invertible() bool {
	for _, s := range []string{m.Group, m.User} {
		if s == "" {
			continue
		}
		t, err := template.Parse(s)
		if err != nil || !t.Invertible() {
			return false
		}
	}
	return true
}

// Publish is where batches go and how they are cut.
type Publish struct {
	Target      string  `yaml:"target,omitempty" json:"target,omitempty" jsonschema:"enum=stdout,enum=hub,enum=signalr" jsonschema_description:"stdout (default), hub (built-in) or signalr (Azure SignalR Service)."`
	Batch       Batch   `yaml:"batch,omitempty" json:"batch,omitempty"`
	Parallelism int     `yaml:"parallelism,omitempty" json:"parallelism,omitempty" jsonschema_description:"Batches in flight at once across targets (one per target). Default 8."`
	SignalR     SignalR `yaml:"signalr,omitempty" json:"signalr,omitempty"`
	// MaxPending bounds the changes read but not yet published; reading
	// pauses above it so memory stays bounded when the target is down.
	MaxPending int `yaml:"maxPending,omitempty" json:"maxPending,omitempty" jsonschema_description:"Changes read but not yet published before reading pauses. Default 20000."`
	// ShadowSize bounds the cache of last-published documents that patches
	// are computed against.
	ShadowSize int `yaml:"shadowSize,omitempty" json:"shadowSize,omitempty" jsonschema_description:"Documents kept to diff against (about 1 KB of memory each for small rows). Default 50000."`
	// ShadowStore keeps the last published version of each document in a
	// PostgreSQL table, so a restarted worker or a new lease owner keeps
	// sending patches (cost: one upsert per published change, one read per
	// document first seen after a start).
	ShadowStore *ShadowStore `yaml:"shadowStore,omitempty" json:"shadowStore,omitempty" jsonschema_description:"Optional persistent shadow: last published documents in a PostgreSQL table."`
}

// Batch bounds one batch per (hub, group or user) window.
type Batch struct {
	MaxChanges int `yaml:"maxChanges,omitempty" json:"maxChanges,omitempty" jsonschema_description:"Default 500."`
	MaxBytes   int `yaml:"maxBytes,omitempty" json:"maxBytes,omitempty" jsonschema_description:"Default 524288; at most 1000000 (Azure SignalR's REST limit is 1 MB)."`
	// MaxDelay is an optional linger. Batching is adaptive: an audience
	// with no batch in flight sends at once, and changes that arrive while
	// its batch is in flight go out together when it completes. A linger
	// makes an idle audience wait that long for more changes first: fewer,
	// larger batches at the cost of latency. Azure SignalR keeps one
	// (REST calls are costly and rate-limited); an explicit 0s turns it off.
	MaxDelay *Duration `yaml:"maxDelay,omitempty" json:"maxDelay,omitempty" jsonschema_description:"Linger of an idle audience's window before it is sent. Default 0s (send at once when nothing is in flight; batches form while one is in flight); 100ms with target signalr, where an explicit 0s turns it off."`
}

// ShadowStore is a PostgreSQL table of last published documents.
type ShadowStore struct {
	URL   string `yaml:"url,omitempty" json:"url,omitempty" jsonschema_description:"Database of the table; default the postgres source's url."`
	Table string `yaml:"table,omitempty" json:"table,omitempty" jsonschema_description:"Default changecast_shadow."`
}

// SignalR is the Azure SignalR Service target.
type SignalR struct {
	ConnectionString string `yaml:"connectionString,omitempty" json:"connectionString,omitempty" jsonschema_description:"Endpoint=...;AccessKey=...;Version=1.0; or AuthType=azure."`
}

// Server is the operations endpoint.
type Server struct {
	Listen     string `yaml:"listen,omitempty" json:"listen,omitempty" jsonschema_description:"Address of /healthz, /readyz and /metrics; empty disables it. Default empty."`
	AdminToken string `yaml:"adminToken,omitempty" json:"adminToken,omitempty" jsonschema_description:"Bearer token of the admin API; empty disables it."`
}

// Duration is a time.Duration written as a Go duration string ("10ms").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. 10ms, 5s, 1m)", n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// JSONSchema describes Duration in the generated schema.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: `^-?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, Description: "Go duration, e.g. 10ms, 5s, 1m."}
}

// Defaults (documented on the fields above).
const (
	DefaultSlot           = "changecast"
	DefaultPublication    = "changecast"
	DefaultHeartbeat      = 10 * time.Second
	DefaultStatusInterval = 5 * time.Second
	DefaultMethod         = "changes"
	DefaultMaxChanges     = 500
	DefaultMaxBytes       = 512 * 1024
	// DefaultMaxDelay is no linger: adaptive batching alone (see
	// Batch.MaxDelay).
	DefaultMaxDelay = 0
	// DefaultSignalRMaxDelay is the linger for Azure SignalR: REST calls
	// cost far more than frames on the built-in hub, and a unit handles
	// only a few hundred REST sends per second. Adaptive batching alone
	// makes one call per change per group at low load; the linger keeps
	// ≥ 50× fewer calls than changes (bench/restcalls).
	DefaultSignalRMaxDelay = 100 * time.Millisecond
	DefaultParallelism     = 8
	DefaultMaxPending      = 20000
	DefaultShadowSize      = 50000
	DefaultProcessor       = "changecast"
	DefaultLeaseTable      = "changecast_leases"
	DefaultPollInterval    = time.Second
	DefaultMaxItems        = 100

	DefaultHistoryMaxMessages = 10000
	DefaultHistoryMaxAge      = 10 * time.Minute
	DefaultHistoryMaxBytes    = 64 << 20

	// MaxBatchBytes is Azure SignalR's REST body limit, kept for every target
	// so a config that works on the built-in hub also works on Azure.
	MaxBatchBytes = 1_000_000
)

// ApplyDefaults fills the optional fields left empty.
func (c *Config) ApplyDefaults() {
	if p := c.Source.Postgres; p != nil {
		setStr(&p.Slot, DefaultSlot)
		setStr(&p.Publication, DefaultPublication)
		setDur(&p.Heartbeat, DefaultHeartbeat)
		setDur(&p.StatusInterval, DefaultStatusInterval)
		setStr(&p.ReplicaIdentity, "full")
		setStr(&p.OnSlotLost, "recreate")
		if p.WALWarnFraction == 0 {
			p.WALWarnFraction = 0.2
		}
	}
	setDur(&c.Source.ErrorAfter, 2*time.Minute)
	if cs := c.Source.Cosmos; cs != nil {
		setStr(&cs.StartFrom, "now")
		setDur(&cs.PollInterval, DefaultPollInterval)
		if cs.MaxItems == 0 {
			cs.MaxItems = DefaultMaxItems
		}
		if cs.Credential == "" {
			cs.Credential = "key"
		}
	}
	setStr(&c.Lease.Store, "memory")
	setStr(&c.Lease.Processor, DefaultProcessor)
	if c.Lease.Store == "postgres" && c.Lease.Postgres == nil {
		c.Lease.Postgres = &PgLease{}
	}
	if c.Lease.Postgres != nil {
		setStr(&c.Lease.Postgres.Table, DefaultLeaseTable)
		if c.Lease.Postgres.URL == "" && c.Source.Postgres != nil {
			c.Lease.Postgres.URL = c.Source.Postgres.URL
		}
	}
	for i := range c.Mappings {
		setStr(&c.Mappings[i].Method, DefaultMethod)
	}
	if len(c.Hub.Hubs) == 0 {
		c.Hub.Hubs = hubsOf(c.Mappings)
	}
	setStr(&c.Publish.Target, "stdout")
	b := &c.Publish.Batch
	if b.MaxChanges == 0 {
		b.MaxChanges = DefaultMaxChanges
	}
	if b.MaxBytes == 0 {
		b.MaxBytes = DefaultMaxBytes
	}
	if b.MaxDelay == nil {
		d := Duration(DefaultMaxDelay)
		if c.Publish.Target == "signalr" {
			d = Duration(DefaultSignalRMaxDelay)
		}
		b.MaxDelay = &d
	}
	if c.Publish.Parallelism == 0 {
		c.Publish.Parallelism = DefaultParallelism
	}
	if c.Publish.MaxPending == 0 {
		c.Publish.MaxPending = DefaultMaxPending
	}
	if c.Publish.ShadowSize == 0 {
		c.Publish.ShadowSize = DefaultShadowSize
	}
	if ss := c.Publish.ShadowStore; ss != nil {
		setStr(&ss.Table, "changecast_shadow")
		if ss.URL == "" && c.Source.Postgres != nil {
			ss.URL = c.Source.Postgres.URL
		}
	}
	c.Hub.applyDefaults()
	h := &c.History
	setStr(&h.Store, "memory")
	if h.MaxMessages == 0 {
		h.MaxMessages = DefaultHistoryMaxMessages
	}
	setDur(&h.MaxAge, DefaultHistoryMaxAge)
	if h.MaxBytes == 0 {
		h.MaxBytes = DefaultHistoryMaxBytes
	}
}

func setStr(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setDur(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

// FieldError is one problem with one field of the file.
type FieldError struct {
	Path string // e.g. mappings[1].group
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)

// Validate reports every problem, each naming its field. Call ApplyDefaults
// first.
func (c *Config) Validate() error {
	var p problems
	switch {
	case c.Source.Postgres == nil && c.Source.Cosmos == nil:
		p.add("source", "set one of postgres or cosmos")
	case c.Source.Postgres != nil && c.Source.Cosmos != nil:
		p.add("source", "set only one of postgres or cosmos")
	}
	if pg := c.Source.Postgres; pg != nil {
		if pg.URL == "" {
			p.add("source.postgres.url", "is required")
		}
		if !identRe.MatchString(pg.Slot) {
			p.add("source.postgres.slot", "%q is not a valid slot name (letters, digits, underscores)", pg.Slot)
		}
		if pg.Publication == "" {
			p.add("source.postgres.publication", "is required")
		}
		if len(pg.Tables) == 0 {
			p.add("source.postgres.tables", "list at least one table")
		}
		for i, t := range pg.Tables {
			if _, _, ok := SplitTable(t); !ok {
				p.add(fmt.Sprintf("source.postgres.tables[%d]", i), "%q is not schema.table", t)
			}
		}
		if pg.StatusInterval.D() <= 0 || pg.StatusInterval.D() > 30*time.Second {
			p.add("source.postgres.statusInterval", "must be between 0 and 30s (wal_sender_timeout is 60s by default)")
		}
		if pg.ReplicaIdentity != "full" && pg.ReplicaIdentity != "keep" {
			p.add("source.postgres.replicaIdentity", "%q is not full or keep", pg.ReplicaIdentity)
		}
		if pg.OnSlotLost != "recreate" && pg.OnSlotLost != "stop" {
			p.add("source.postgres.onSlotLost", "%q is not recreate or stop", pg.OnSlotLost)
		}
		if pg.WALWarnFraction >= 1 {
			p.add("source.postgres.walWarnFraction", "must be below 1 (a fraction of max_slot_wal_keep_size)")
		}
	}
	if cs := c.Source.Cosmos; cs != nil {
		if cs.Endpoint == "" {
			p.add("source.cosmos.endpoint", "is required")
		}
		if cs.Database == "" {
			p.add("source.cosmos.database", "is required")
		}
		if cs.Container == "" {
			p.add("source.cosmos.container", "is required")
		}
		switch cs.Credential {
		case "key":
			if cs.Key == "" {
				p.add("source.cosmos.key", "is required unless credential: azure")
			}
		case "azure":
		default:
			p.add("source.cosmos.credential", "%q is not key or azure", cs.Credential)
		}
		if cs.StartFrom != "beginning" && cs.StartFrom != "now" {
			if _, err := time.Parse(time.RFC3339, cs.StartFrom); err != nil {
				p.add("source.cosmos.startFrom", "%q is not beginning, now or an RFC 3339 time", cs.StartFrom)
			}
		}
		if cs.MaxItems < 1 {
			p.add("source.cosmos.maxItems", "must be at least 1")
		}
		if cs.DeleteField != "" {
			if _, err := template.ParsePointer(cs.DeleteField); err != nil {
				p.add("source.cosmos.deleteField", "%v", err)
			}
		}
	}
	switch c.Lease.Store {
	case "memory":
	case "postgres":
		if c.Lease.Postgres == nil || c.Lease.Postgres.URL == "" {
			p.add("lease.postgres.url", "is required with store: postgres (or use a postgres source)")
		}
	case "cosmos":
		if c.Lease.Cosmos == nil || c.Lease.Cosmos.Database == "" || c.Lease.Cosmos.Container == "" {
			p.add("lease.cosmos", "database and container are required with store: cosmos")
		}
		if c.Source.Cosmos == nil {
			p.add("lease.store", "cosmos keeps leases in the source's Cosmos DB account; it needs a cosmos source")
		}
	default:
		p.add("lease.store", "%q is not memory, postgres or cosmos", c.Lease.Store)
	}
	if c.Lease.RenewInterval.D() < 0 || c.Lease.AcquireInterval.D() < 0 || c.Lease.Expiry.D() < 0 {
		p.add("lease", "intervals must not be negative")
	}
	if r, e := c.Lease.RenewInterval.D(), c.Lease.Expiry.D(); r > 0 && e > 0 && r >= e {
		p.add("lease.renewInterval", "%v must be shorter than lease.expiry %v", r, e)
	}
	if len(c.Mappings) == 0 {
		p.add("mappings", "list at least one mapping")
	}
	for i, m := range c.Mappings {
		m.validate(fmt.Sprintf("mappings[%d]", i), &p)
	}
	switch c.Publish.Target {
	case "stdout", "hub":
	case "signalr":
		if c.Publish.SignalR.ConnectionString == "" {
			p.add("publish.signalr.connectionString", "is required with target: signalr")
		}
	default:
		p.add("publish.target", "%q is not stdout, hub or signalr", c.Publish.Target)
	}
	b := c.Publish.Batch
	if b.MaxChanges < 1 {
		p.add("publish.batch.maxChanges", "must be at least 1")
	}
	if b.MaxBytes < 1024 || b.MaxBytes > MaxBatchBytes {
		p.add("publish.batch.maxBytes", "must be between 1024 and %d", MaxBatchBytes)
	}
	if b.MaxDelay != nil && b.MaxDelay.D() < 0 {
		p.add("publish.batch.maxDelay", "must not be negative")
	}
	if c.Publish.Parallelism < 1 {
		p.add("publish.parallelism", "must be at least 1")
	}
	if c.Publish.MaxPending < 1 {
		p.add("publish.maxPending", "must be at least 1")
	}
	if c.Publish.ShadowSize < 0 {
		p.add("publish.shadowSize", "must not be negative")
	}
	if ss := c.Publish.ShadowStore; ss != nil && ss.URL == "" {
		p.add("publish.shadowStore.url", "is required (a PostgreSQL database) unless the source is postgres")
	}
	switch h := c.History; h.Store {
	case "memory":
		if h.File != "" {
			if fi, err := os.Stat(filepath.Dir(h.File)); err != nil || !fi.IsDir() {
				p.add("history.file", "the directory of %q does not exist", h.File)
			}
		}
	case "off":
	case "redis":
		if h.Redis == nil || h.Redis.URL == "" {
			p.add("history.redis.url", "is required with store: redis")
		} else if u, err := url.Parse(h.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			p.add("history.redis.url", "%q is not a redis:// or rediss:// URL", h.Redis.URL)
		}
	default:
		p.add("history.store", "%q is not memory, redis or off", h.Store)
	}
	if h := c.History; h.File != "" && h.Store != "memory" {
		p.add("history.file", "is only for store: memory (store is %s)", h.Store)
	}
	if c.History.MaxMessages < 1 {
		p.add("history.maxMessages", "must be at least 1")
	}
	if c.History.MaxAge.D() <= 0 {
		p.add("history.maxAge", "must be positive")
	}
	if c.History.MaxBytes < 1<<20 {
		p.add("history.maxBytes", "must be at least 1048576 (1 MB)")
	}
	if l := c.Server.Listen; l != "" {
		if err := validListen(l); err != nil {
			p.add("server.listen", "%v", err)
		}
	}
	a := c.Hub.Negotiate.Auth
	switch {
	case c.Publish.Target == "hub":
		c.Hub.validate("hub", &p)
		served := map[string]bool{}
		for _, h := range c.Hub.Hubs {
			served[strings.ToLower(h)] = true
		}
		for i, m := range c.Mappings {
			if m.Hub != "" && !served[strings.ToLower(m.Hub)] {
				p.add(fmt.Sprintf("mappings[%d].hub", i), "%q is not one of hub.hubs: its changes would reach nobody", m.Hub)
			}
		}
	case c.Publish.Target == "signalr" && a.Any():
		// The app negotiate for Azure SignalR uses the hub section too.
		c.Hub.validate("hub", &p)
	}
	return errors.Join(p...)
}

var hubNameRe = regexp.MustCompile("^[A-Za-z][A-Za-z0-9_`,.\\[\\]]{0,127}$")

func (m Mapping) validate(path string, p *problems) {
	if m.Collection == "" {
		p.add(path+".collection", "is required")
	}
	if !hubNameRe.MatchString(m.Hub) {
		p.add(path+".hub", "%q is not a valid hub name (a letter, then letters, digits, _`,.[])", m.Hub)
	}
	if m.Group != "" && m.User != "" {
		p.add(path, "set group or user, not both")
	}
	if m.Group != "" {
		if _, err := template.Parse(m.Group); err != nil {
			p.add(path+".group", "%v", err)
		}
	}
	if m.User != "" {
		if _, err := template.Parse(m.User); err != nil {
			p.add(path+".user", "%v", err)
		}
	}
	if m.Snapshot != nil && *m.Snapshot && !m.invertible() {
		field, tmpl := path+".group", m.Group
		if m.User != "" {
			field, tmpl = path+".user", m.User
		}
		p.add(field, "%q cannot be inverted for snapshots (a group or user name must tell the field: use at most one {/field}), or set snapshot: false", tmpl)
	}
	for j, k := range m.Key {
		if _, err := template.ParsePointer(k); err != nil {
			p.add(fmt.Sprintf("%s.key[%d]", path, j), "%v", err)
		}
	}
	if len(m.Include) > 0 && len(m.Exclude) > 0 {
		p.add(path, "set include or exclude, not both")
	}
	for j, k := range m.Include {
		if _, err := template.ParsePointer(k); err != nil {
			p.add(fmt.Sprintf("%s.include[%d]", path, j), "%v", err)
		}
	}
	for j, k := range m.Exclude {
		if _, err := template.ParsePointer(k); err != nil {
			p.add(fmt.Sprintf("%s.exclude[%d]", path, j), "%v", err)
		}
	}
}

// SplitTable splits "schema.table"; quoting is not supported.
func SplitTable(t string) (schemaName, table string, ok bool) {
	s, n, found := strings.Cut(t, ".")
	if !found || s == "" || n == "" || strings.Contains(n, ".") {
		return "", "", false
	}
	return s, n, true
}

// LoadError is a file that could not be read or parsed.
type LoadError struct{ Err error }

func (e *LoadError) Error() string { return e.Err.Error() }
func (e *LoadError) Unwrap() error { return e.Err }

// Load reads, interpolates, defaults and validates a config file. Errors are
// *LoadError (unreadable or not YAML) or a join of *FieldError.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &LoadError{err}
	}
	return Parse(raw, os.LookupEnv)
}

// Parse is Load on bytes, with env standing in for the environment.
func Parse(raw []byte, env func(string) (string, bool)) (*Config, error) {
	var c Config
	unset, err := decodeStrict(raw, env, &c, "config", "")
	if err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, nameUnset(err, unset)
	}
	return &c, nil
}

// decodeStrict parses YAML, interpolates ${VAR} in its values and decodes it
// into out, refusing unknown keys (a misspelt key silently ignored is a
// common outage) and values of the wrong kind, each problem a *FieldError
// whose path starts at root. It returns the paths of the values that held
// an unset ${VAR} (with their names).
func decodeStrict(raw []byte, env func(string) (string, bool), out any, what, root string) (map[string][]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, &LoadError{fmt.Errorf("not valid YAML: %w", err)}
	}
	unsetVars := interpolate(&doc, env)
	if len(doc.Content) == 0 {
		return nil, nil
	}
	var p problems
	unsetAt := map[string][]string{}
	checkShape(doc.Content[0], reflect.TypeOf(out).Elem(), root, unsetVars, unsetAt, &p)
	if len(p) > 0 {
		return nil, errors.Join(p...)
	}
	// Re-encode the interpolated tree: only a Decoder can refuse unknown
	// keys (checkShape should have found them all; this is the backstop).
	b, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, &LoadError{err}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return nil, &LoadError{fmt.Errorf("%s: %w", what, err)}
	}
	return unsetAt, nil
}

var scalarRe = regexp.MustCompile(`^(-?[0-9]+(\.[0-9]+)?|true|false)$`)

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// interpolate replaces ${VAR} and ${VAR:-default} in every scalar value. It
// works on values, not on the raw text, so a value holding YAML syntax
// cannot change the document's structure.
//
// It returns the scalars that held an unset ${VAR} without a default, with
// the variables' names.
func interpolate(n *yaml.Node, env func(string) (string, bool)) map[*yaml.Node][]string {
	unset := map[*yaml.Node][]string{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
			n.Value = envRe.ReplaceAllStringFunc(n.Value, func(m string) string {
				g := envRe.FindStringSubmatch(m)
				if v, ok := env(g[1]); ok && v != "" {
					return v
				}
				if g[2] != "" {
					return g[3]
				}
				// An unset variable becomes empty; Validate then names the
				// field if the value was required, and nameUnset the
				// variable.
				unset[n] = append(unset[n], g[1])
				return ""
			})
			if scalarRe.MatchString(n.Value) {
				// A plain ${N} that became a number or bool stays one,
				// so maxChanges: ${N} decodes into an int.
				n.Tag, n.Style = "", 0
			} else {
				n.Tag = "!!str"
				n.Style = yaml.DoubleQuotedStyle
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return unset
}
