package cosmos

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultKey is the master key used when none is configured. It is the
// well-known key of Microsoft's local Cosmos DB emulator, so tools that
// default to that key work unchanged.
const DefaultKey = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

// Option configures a Server.
type Option func(*config)

type config struct {
	key          string
	partitions   int
	pkPath       string
	autoCreate   bool
	allowAAD     bool
	admin        bool
	endpoint     string
	region       string
	consistency  string
	now          func() time.Time
	maxPageItems int
}

// WithKey sets the account master key (base64). Default DefaultKey.
func WithKey(key string) Option { return func(c *config) { c.key = key } }

// WithPartitions sets how many partition key ranges (feed ranges) a new
// container gets unless its creation asks for more. Default 1, like a
// small real container.
func WithPartitions(n int) Option { return func(c *config) { c.partitions = max(n, 1) } }

// WithDefaultPartitionKeyPath sets the partition key path of containers
// created on first use or without a partitionKey. Default "/id".
func WithDefaultPartitionKeyPath(path string) Option { return func(c *config) { c.pkPath = path } }

// WithAutoCreate controls whether a request naming a missing database or
// container creates it (true, the default) or gets 404 like the service.
func WithAutoCreate(on bool) Option { return func(c *config) { c.autoCreate = on } }

// WithAllowAAD makes the gateway accept any Microsoft Entra ID (type=aad)
// token without checking it, so clients built with azidentity can talk to
// it. Default false: only master-key signatures are accepted.
func WithAllowAAD(on bool) Option { return func(c *config) { c.allowAAD = on } }

// WithAdminRoutes serves the unauthenticated /_admin/ routes (split,
// merge, fail, stats); see AdminHandler. Default false.
func WithAdminRoutes(on bool) Option { return func(c *config) { c.admin = on } }

// WithAdvertisedEndpoint fixes the endpoint the account read advertises in
// writableLocations/readableLocations. By default the gateway advertises
// the scheme and Host the request arrived with, which is what an SDK must
// be sent back to (it rewrites every request's host to that endpoint).
func WithAdvertisedEndpoint(u string) Option { return func(c *config) { c.endpoint = u } }

// WithRegion sets the region name the account read advertises in
// writableLocations/readableLocations, the name SDKs match against their
// preferred regions and report in diagnostics. Default "Local".
func WithRegion(name string) Option { return func(c *config) { c.region = name } }

// ConsistencyLevels are the account default consistency levels the service
// knows, in its spelling.
var ConsistencyLevels = []string{"Strong", "BoundedStaleness", "Session", "ConsistentPrefix", "Eventual"}

// WithConsistencyLevel sets the default consistency level the account read
// advertises (userConsistencyPolicy.defaultConsistencyLevel). Default
// "Session", the service's default. NewServer refuses a level not in
// ConsistencyLevels. The emulator itself is always strongly consistent.
func WithConsistencyLevel(level string) Option { return func(c *config) { c.consistency = level } }

// WithClock sets the time source for _ts, the modification times a change
// feed read from a point in time compares, and x-ms-date checks.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithDefaultPageSize sets how many documents a change-feed or query page
// holds when the client sends no x-ms-max-item-count. Default 100.
func WithDefaultPageSize(n int) Option { return func(c *config) { c.maxPageItems = max(n, 1) } }

// Server is an in-memory Cosmos DB gateway. Serve Handler() on a
// listener; the other methods are in-process controls. All methods are
// safe for concurrent use.
type Server struct {
	cfg config
	key []byte

	mu      sync.Mutex
	dbs     map[string]*database
	ridSeq  uint32
	etagSeq uint64
	counts  map[Kind]int
	faults  []*Fault
	// offers hold the throughput of databases and containers (offers.go).
	offers   []*offer
	offerSeq uint32
}

// NewServer builds a gateway. It has no listener of its own: serve
// Handler() on one (changecast emulate cosmos does). It fails if the key is
// not base64, which the SDKs would refuse too.
func NewServer(opts ...Option) (*Server, error) {
	cfg := config{key: DefaultKey, partitions: 1, pkPath: "/id", autoCreate: true, region: "Local",
		consistency: "Session", now: time.Now, maxPageItems: 100}
	for _, o := range opts {
		o(&cfg)
	}
	if !slices.Contains(ConsistencyLevels, cfg.consistency) {
		return nil, fmt.Errorf("cosmos emulator: consistency level %q is not one of %s", cfg.consistency, strings.Join(ConsistencyLevels, ", "))
	}
	if strings.TrimSpace(cfg.region) == "" {
		return nil, errors.New("cosmos emulator: the region name is empty")
	}
	key, err := base64.StdEncoding.DecodeString(cfg.key)
	if err != nil {
		return nil, fmt.Errorf("cosmos emulator: the key is not valid base64: %w", err)
	}
	return &Server{cfg: cfg, key: key, dbs: map[string]*database{}, counts: map[Kind]int{}}, nil
}

// Key is the base64 master key.
func (s *Server) Key() string { return s.cfg.key }

// ---- request accounting and faults ----

// Counts returns how many requests of each kind arrived, including
// rejected and failed ones (the admin route /_admin/stats serves it).
func (s *Server) Counts() map[Kind]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[Kind]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// Fault is a scripted failure. The gateway answers the next Count matching
// requests (after authentication) with Status/SubStatus instead of serving
// them, after sleeping Delay (or until the client gives up). A Fault with
// Status 0 only delays.
type Fault struct {
	Status     int
	SubStatus  int
	RetryAfter time.Duration // sent as x-ms-retry-after-ms when > 0
	Delay      time.Duration
	Count      int
	// Kinds restricts the fault to these request kinds. Empty means every
	// kind except KindAccount: a failed first account read poisons an
	// azcosmos client for five minutes, which is rarely what a test wants.
	Kinds []Kind
	// Database and Container, when set, restrict the fault further.
	Database, Container string
}

// Inject queues a fault. Faults are matched in the order injected.
func (s *Server) Inject(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults drops all pending faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the first fault matching the request, consuming one
// use of it. The caller holds s.mu.
func (s *Server) takeFault(rt route) *Fault {
	for i, f := range s.faults {
		if !faultMatches(f, rt) {
			continue
		}
		f.Count--
		if f.Count <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		cp := *f
		return &cp
	}
	return nil
}

func faultMatches(f *Fault, rt route) bool {
	if len(f.Kinds) == 0 {
		if rt.kind == KindAccount {
			return false
		}
	} else if !slices.Contains(f.Kinds, rt.kind) {
		return false
	}
	if f.Database != "" && f.Database != rt.db {
		return false
	}
	if f.Container != "" && f.Container != rt.coll {
		return false
	}
	return true
}

// ---- state ----

type database struct {
	id, rid string
	ts      int64
	etag    string
	colls   map[string]*container
	collSeq uint32
}

type container struct {
	id, rid string
	db      *database
	props   []member // user-supplied properties, in order
	pkPaths [][]string
	ts      int64
	etag    string
	// ranges holds every partition key range ever created, including
	// split/merge parents (gone == true).
	ranges      []*pkRange
	rangeSeq    int64 // position of the pkranges change feed; its etag
	nextRangeID int
	docs        map[string]*document // key: pkString + "\x00" + id
	docSeq      uint64
	writeSeq    uint64
}

type pkRange struct {
	id       string
	min, max string
	parents  []string
	gone     bool
	// lsn is the range's last logical sequence number. Children start
	// from their parent's value, so a parent's continuation stays valid on
	// every child, which the SDKs rely on after a split.
	lsn int64
	seq int64 // rangeSeq at creation
	ts  int64
	rid string
}

type document struct {
	id      string
	pk      []any
	pkKey   string
	epk     string
	members []member
	value   map[string]any
	rid     string
	etag    string
	ts      int64
	mtime   time.Time
	lsn     int64
	seq     uint64
	// wseq orders writes that share an LSN (a transactional batch's).
	wseq uint64
}

func (s *Server) nextRID(n int) []byte {
	s.ridSeq++
	b := make([]byte, n)
	binary.BigEndian.PutUint32(b[n-4:], s.ridSeq)
	return b
}

func (s *Server) newEtag() string {
	s.etagSeq++
	return fmt.Sprintf("\"%08x-0000-0000-0000-%012x\"", s.etagSeq>>32, s.etagSeq&0xffffffffffff)
}

// ContainerSpec describes a container created through CreateContainer.
type ContainerSpec struct {
	// PartitionKeyPaths defaults to the server's default path. More than
	// one path makes a hierarchical (MultiHash) key.
	PartitionKeyPaths []string
	// Partitions is the number of partition key ranges; default from
	// WithPartitions.
	Partitions int
}

// CreateContainer creates a database (if needed) and a container directly,
// without going through HTTP. It fails if the container exists.
func (s *Server) CreateContainer(db, coll string, spec ContainerSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dbs[db]
	if d == nil {
		d = s.createDatabaseLocked(db)
	}
	if d.colls[coll] != nil {
		return fmt.Errorf("container %s/%s already exists", db, coll)
	}
	paths := spec.PartitionKeyPaths
	if len(paths) == 0 {
		paths = []string{s.cfg.pkPath}
	}
	n := spec.Partitions
	if n <= 0 {
		n = s.cfg.partitions
	}
	s.createContainerLocked(d, coll, defaultContainerProps(coll, paths), n, throughputSpec{})
	return nil
}

func defaultContainerProps(id string, paths []string) []member {
	kind := "Hash"
	if len(paths) > 1 {
		kind = "MultiHash"
	}
	pk, _ := json.Marshal(map[string]any{"paths": paths, "kind": kind, "version": 2})
	return []member{strMember("id", id), {key: "indexingPolicy", raw: json.RawMessage(defaultIndexingPolicy)}, {key: "partitionKey", raw: pk}}
}

const defaultIndexingPolicy = `{"indexingMode":"consistent","automatic":true,"includedPaths":[{"path":"/*"}],"excludedPaths":[{"path":"/\"_etag\"/?"}]}`

func (s *Server) createDatabaseLocked(id string) *database {
	d := &database{id: id, rid: base64.StdEncoding.EncodeToString(s.nextRID(4)), ts: s.cfg.now().Unix(),
		etag: s.newEtag(), colls: map[string]*container{}}
	s.dbs[id] = d
	return d
}

// createContainerLocked creates a container with the throughput t asks for;
// with none, it gets defaultContainerRU unless its database has shared
// throughput.
func (s *Server) createContainerLocked(d *database, id string, props []member, partitions int, t throughputSpec) *container {
	d.collSeq++
	dbRID, _ := base64.StdEncoding.DecodeString(d.rid)
	rid := make([]byte, 8)
	copy(rid, dbRID)
	s.ridSeq++
	binary.BigEndian.PutUint32(rid[4:], s.ridSeq|0x80000000)
	c := &container{id: id, rid: base64.StdEncoding.EncodeToString(rid), db: d, props: props,
		ts: s.cfg.now().Unix(), etag: s.newEtag(), docs: map[string]*document{}}
	c.pkPaths = pkPathsOf(props)
	bounds := initialBoundaries(partitions)
	c.rangeSeq = 1
	for i := 0; i < partitions; i++ {
		c.ranges = append(c.ranges, &pkRange{id: strconv.Itoa(i), min: bounds[i], max: bounds[i+1],
			parents: []string{}, seq: c.rangeSeq, ts: c.ts, rid: c.rid})
	}
	c.nextRangeID = partitions
	d.colls[id] = c
	if t.none() && !s.hasOfferLocked(d.rid) {
		t.manual = defaultContainerRU
	}
	if !t.none() {
		s.newOfferLocked("dbs/"+d.rid+"/colls/"+c.rid+"/", c.rid, t)
	}
	return c
}

// pkPathsOf reads partitionKey.paths from container properties.
func pkPathsOf(props []member) [][]string {
	for _, m := range props {
		if m.key != "partitionKey" {
			continue
		}
		var pk struct {
			Paths []string `json:"paths"`
		}
		_ = json.Unmarshal(m.raw, &pk)
		out := make([][]string, len(pk.Paths))
		for i, p := range pk.Paths {
			out[i] = splitPKPath(p)
		}
		return out
	}
	return nil
}

func (c *container) currentRanges() []*pkRange {
	var out []*pkRange
	for _, r := range c.ranges {
		if !r.gone {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *pkRange) int { return compareEPK(a.min, b.min) })
	return out
}

func (c *container) rangeByID(id string) *pkRange {
	for _, r := range c.ranges {
		if r.id == id {
			return r
		}
	}
	return nil
}

func (c *container) rangeForEPK(epk string) *pkRange {
	for _, r := range c.ranges {
		if !r.gone && epkInRange(epk, r.min, r.max) {
			return r
		}
	}
	return nil // unreachable while the ranges are complete
}

func (s *Server) lookup(db, coll string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dbs[db]
	if d == nil || d.colls[coll] == nil {
		return nil, fmt.Errorf("container %s/%s does not exist", db, coll)
	}
	return d.colls[coll], nil
}

// PartitionKeyRange describes one current range of a container.
type PartitionKeyRange struct {
	ID           string
	MinInclusive string
	MaxExclusive string
	Parents      []string
	LSN          int64
}

// PartitionKeyRanges lists a container's current ranges in EPK order.
func (s *Server) PartitionKeyRanges(db, coll string) ([]PartitionKeyRange, error) {
	c, err := s.lookup(db, coll)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PartitionKeyRange
	for _, r := range c.currentRanges() {
		out = append(out, PartitionKeyRange{ID: r.id, MinInclusive: r.min, MaxExclusive: r.max,
			Parents: slices.Clone(r.parents), LSN: r.lsn})
	}
	return out, nil
}

// Split replaces the current range rangeID by two children that halve its
// EPK span and continue its LSN sequence. Afterwards a change-feed read
// addressed to rangeID gets 410 with substatus 1002 and the pkranges feed
// lists the children with rangeID among their parents. It returns the
// children's ids.
func (s *Server) Split(db, coll, rangeID string) ([]string, error) {
	c, err := s.lookup(db, coll)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := c.rangeByID(rangeID)
	if r == nil || r.gone {
		return nil, fmt.Errorf("partition key range %q of %s/%s is not current", rangeID, db, coll)
	}
	mid, err := splitPoint(r.min, r.max)
	if err != nil {
		return nil, err
	}
	c.rangeSeq++
	parents := append(slices.Clone(r.parents), r.id)
	var ids []string
	for _, span := range [][2]string{{r.min, mid}, {mid, r.max}} {
		child := &pkRange{id: strconv.Itoa(c.nextRangeID), min: span[0], max: span[1], parents: slices.Clone(parents),
			lsn: r.lsn, seq: c.rangeSeq, ts: s.cfg.now().Unix(), rid: c.rid}
		c.nextRangeID++
		c.ranges = append(c.ranges, child)
		ids = append(ids, child.id)
	}
	r.gone = true
	return ids, nil
}

// Merge replaces two adjacent current ranges by one covering both. The
// merged range's LSN is the larger of the two, so an old continuation of
// either parent reads the merged partition from that LSN: with SDKs that
// send no EPK filter this shows up as duplicates, never as loss.
func (s *Server) Merge(db, coll, leftID, rightID string) (string, error) {
	c, err := s.lookup(db, coll)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, r := c.rangeByID(leftID), c.rangeByID(rightID)
	if l == nil || r == nil || l.gone || r.gone {
		return "", errors.New("both ranges must be current")
	}
	if compareEPK(l.max, r.min) != 0 {
		if compareEPK(r.max, l.min) != 0 {
			return "", errors.New("ranges are not adjacent")
		}
		l, r = r, l
	}
	c.rangeSeq++
	parents := append(append(slices.Clone(l.parents), r.parents...), l.id, r.id)
	m := &pkRange{id: strconv.Itoa(c.nextRangeID), min: l.min, max: r.max, parents: parents,
		lsn: max(l.lsn, r.lsn), seq: c.rangeSeq, ts: s.cfg.now().Unix(), rid: c.rid}
	c.nextRangeID++
	c.ranges = append(c.ranges, m)
	l.gone, r.gone = true, true
	return m.id, nil
}

// Upsert writes a document directly (no HTTP, no auth, no faults), as if a
// client had upserted it: it gets a new _etag and _lsn and moves to the
// tail of its range's change feed. doc may be a []byte/json.RawMessage/
// string of JSON or any value that marshals to a JSON object. The
// container is created if needed (with the default partition key path).
// It returns the new _etag.
func (s *Server) Upsert(db, coll string, doc any) (string, error) {
	var body []byte
	switch v := doc.(type) {
	case []byte:
		body = v
	case json.RawMessage:
		body = v
	case string:
		body = []byte(v)
	default:
		b, err := json.Marshal(doc)
		if err != nil {
			return "", err
		}
		body = b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.ensureContainerLocked(db, coll, true)
	members, value, err := parseObject(body)
	if err != nil {
		return "", err
	}
	pk := c.extractPK(value)
	d, _, rep := s.writeDocLocked(c, KindUpsert, "", pk, members, value, "")
	if rep != nil {
		return "", fmt.Errorf("upsert: %d %s", rep.status, rep.message)
	}
	return d.etag, nil
}

// Delete removes a document directly. pk is the partition key value (one
// value, or a []any for hierarchical keys).
func (s *Server) Delete(db, coll string, pk any, id string) error {
	c, err := s.lookup(db, coll)
	if err != nil {
		return err
	}
	comps, ok := pk.([]any)
	if !ok {
		comps = []any{normalizeJSONValue(pk)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := c.docs[pkString(comps)+"\x00"+id]
	if d == nil {
		return fmt.Errorf("document %q not found", id)
	}
	s.deleteDocLocked(c, d)
	return nil
}

// normalizeJSONValue turns Go values into what encoding/json would decode
// (numbers become float64).
func normalizeJSONValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func (s *Server) ensureContainerLocked(db, coll string, create bool) *container {
	d := s.dbs[db]
	if d == nil {
		if !create {
			return nil
		}
		d = s.createDatabaseLocked(db)
	}
	c := d.colls[coll]
	if c == nil && create {
		c = s.createContainerLocked(d, coll, defaultContainerProps(coll, []string{s.cfg.pkPath}), s.cfg.partitions, throughputSpec{})
	}
	return c
}

func (c *container) extractPK(value map[string]any) []any {
	out := make([]any, len(c.pkPaths))
	for i, p := range c.pkPaths {
		out[i] = valueAtPath(value, p)
	}
	return out
}
