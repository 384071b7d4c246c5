// Package cosmosstore keeps leases in an Azure Cosmos DB container, the
// lease container of the .NET and Java change feed processors: one
// document per lease in their schema (see lease.Lease), in a container
// partitioned on /id or on /partitionKey (the newer .NET default; leases
// changecast creates there get their id as partition key, leases .NET
// created keep their random one), every write a replace conditional on the
// document's _etag (If-Match).
//
// Expiry is decided on the writers' clocks, as in the .NET processor: each
// write stamps "timestamp" with the writer's UTC time, and a reader compares
// it with its own. Keep the instances' clocks synchronised (NTP); a skew of
// a few seconds against a 60 s expiry is harmless.
package cosmosstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/lease"
)

// Options tune New.
type Options struct {
	// CreateIfMissing creates the database and the container (partitioned
	// on /id) when they do not exist. Default false: a missing container is
	// an error, as with the .NET processor's default.
	CreateIfMissing bool
}

// Store is a lease.Store on a Cosmos DB container. Safe for concurrent use.
type Store struct {
	c   *azcosmos.ContainerClient
	now func() time.Time
	// byPK: the container is partitioned on /partitionKey, not /id.
	byPK bool
}

// Partition key paths a lease container may have.
const (
	pathID           = "/id"
	pathPartitionKey = "/partitionKey"
)

var _ lease.Store = (*Store)(nil)

// New returns a Store on database/container of client's account, creating
// them first when opts.CreateIfMissing (partitioned on /id). The container
// must be partitioned on /id or /partitionKey.
func New(ctx context.Context, client *azcosmos.Client, database, container string, opts Options) (*Store, error) {
	if opts.CreateIfMissing {
		if _, err := client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: database}, nil); err != nil && status(err) != http.StatusConflict {
			return nil, fmt.Errorf("cosmosstore: create database %s: %w", database, err)
		}
		db, err := client.NewDatabase(database)
		if err != nil {
			return nil, err
		}
		_, err = db.CreateContainer(ctx, azcosmos.ContainerProperties{ID: container,
			PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{"/id"}}}, nil)
		if err != nil && status(err) != http.StatusConflict {
			return nil, fmt.Errorf("cosmosstore: create container %s/%s: %w", database, container, err)
		}
	}
	c, err := client.NewContainer(database, container)
	if err != nil {
		return nil, err
	}
	resp, err := c.Read(ctx, nil)
	if err != nil {
		if status(err) == http.StatusNotFound {
			return nil, fmt.Errorf("cosmosstore: lease container %s/%s does not exist (set lease.cosmos.createIfMissing: true, or create it partitioned on /id): %w", database, container, err)
		}
		return nil, fmt.Errorf("cosmosstore: read container %s/%s: %w", database, container, err)
	}
	// Stamps keep the 100 ns precision of the stored "timestamp", so a
	// returned copy equals what a later read gives.
	s := &Store{c: c, now: func() time.Time { return time.Now().UTC().Truncate(100 * time.Nanosecond) }}
	if p := resp.ContainerProperties; p != nil {
		switch paths := p.PartitionKeyDefinition.Paths; {
		case slices.Equal(paths, []string{pathID}):
		case slices.Equal(paths, []string{pathPartitionKey}):
			s.byPK = true
		default:
			return nil, fmt.Errorf("cosmosstore: lease container %s/%s is partitioned on %v; it must be partitioned on /id or /partitionKey", database, container, paths)
		}
	}
	return s, nil
}

func status(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// pk is the partition key of l's document.
func (s *Store) pk(l *lease.Lease) azcosmos.PartitionKey {
	if s.byPK && l.PartitionKey != "" {
		return azcosmos.NewPartitionKeyString(l.PartitionKey)
	}
	return azcosmos.NewPartitionKeyString(docID(l.ID))
}

// Cosmos DB refuses '/', '\', '?' and '#' in document ids. Lease ids with
// them are stored percent-encoded ('%' too, so that decoding is exact);
// every other id is stored as is, as the .NET processor stores it. The
// encoding works character by character, so it keeps prefixes: listing by
// an encoded prefix finds exactly the leases with the plain prefix.
var (
	idEncoder = strings.NewReplacer("%", "%25", "/", "%2F", "\\", "%5C", "?", "%3F", "#", "%23")
	idDecoder = strings.NewReplacer("%25", "%", "%2F", "/", "%5C", "\\", "%3F", "?", "%23", "#")
)

func docID(id string) string { return idEncoder.Replace(id) }

// encode returns l as the lease document stamped at ts. System properties
// (_etag) are not sent.
func encode(l *lease.Lease, ts time.Time) ([]byte, error) {
	n := l.Clone()
	n.ID, n.ETag, n.Timestamp = docID(l.ID), "", ts
	return json.Marshal(n)
}

// decode reads a lease document.
func decode(b []byte) (*lease.Lease, error) {
	var l lease.Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	l.ID = idDecoder.Replace(l.ID)
	return &l, nil
}

// List implements lease.Store with a cross-partition query
// SELECT * FROM c WHERE STARTSWITH(c.id, @prefix), as the .NET processor
// lists its leases.
func (s *Store) List(ctx context.Context, prefix string) ([]*lease.Lease, error) {
	q := s.c.NewQueryItemsPager("SELECT * FROM c WHERE STARTSWITH(c.id, @prefix)", azcosmos.NewPartitionKey(),
		&azcosmos.QueryOptions{QueryParameters: []azcosmos.QueryParameter{{Name: "@prefix", Value: docID(prefix)}}})
	var out []*lease.Lease
	for q.More() {
		page, err := q.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("cosmosstore: list %q: %w", prefix, err)
		}
		for _, item := range page.Items {
			l, err := decode(item)
			if err != nil {
				return nil, fmt.Errorf("cosmosstore: list %q: a document is not a lease: %w", prefix, err)
			}
			if strings.HasPrefix(l.ID, prefix) {
				out = append(out, l)
			}
		}
	}
	now := s.now()
	for _, l := range out {
		l.ReadAt = now
	}
	slices.SortFunc(out, func(a, b *lease.Lease) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// get reads the stored copy of l; nil when it does not exist.
func (s *Store) get(ctx context.Context, l *lease.Lease) (*lease.Lease, error) {
	resp, err := s.c.ReadItem(ctx, s.pk(l), docID(l.ID), nil)
	if status(err) == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cur, err := decode(resp.Value)
	if err != nil {
		return nil, err
	}
	if cur.ETag == "" {
		cur.ETag = string(resp.ETag)
	}
	cur.ReadAt = s.now()
	return cur, nil
}

// Create implements lease.Store.
func (s *Store) Create(ctx context.Context, l *lease.Lease) (*lease.Lease, error) {
	if l.ID == "" {
		return nil, errors.New("cosmosstore: create: empty id")
	}
	now := s.now()
	if s.byPK && l.PartitionKey == "" {
		l = l.Clone()
		l.PartitionKey = docID(l.ID)
	}
	body, err := encode(l, now)
	if err != nil {
		return nil, err
	}
	resp, err := s.c.CreateItem(ctx, s.pk(l), body, nil)
	switch {
	case status(err) == http.StatusConflict:
		return nil, &lease.ConflictError{Op: "create", ID: l.ID, Reason: lease.ReasonExists}
	case err != nil:
		return nil, fmt.Errorf("cosmosstore: create %s: %w", l.ID, err)
	}
	return stamped(l, resp.ETag, now), nil
}

func stamped(l *lease.Lease, etag azcore.ETag, now time.Time) *lease.Lease {
	n := l.Clone()
	n.ETag, n.Timestamp, n.ReadAt = string(etag), now, now
	return n
}

// Acquire implements lease.Store. Whether the current owner is live is
// decided on the caller's copy, which the If-Match guarantees is the stored
// lease if the write succeeds.
func (s *Store) Acquire(ctx context.Context, l *lease.Lease, owner string, opts lease.AcquireOptions) (*lease.Lease, error) {
	if owner == "" {
		return nil, errors.New("cosmosstore: acquire: empty owner")
	}
	if !opts.Steal && l.Owner != "" && l.Owner != owner && s.now().Sub(l.Timestamp) <= opts.ExpiryOrDefault() {
		// Refused either way; say why as the other stores do.
		cur, err := s.get(ctx, l)
		switch {
		case err != nil:
			return nil, fmt.Errorf("cosmosstore: acquire %s: %w", l.ID, err)
		case cur == nil:
			return nil, &lease.ConflictError{Op: "acquire", ID: l.ID, Reason: lease.ReasonGone}
		case cur.ETag != l.ETag:
			return nil, &lease.ConflictError{Op: "acquire", ID: l.ID, Reason: lease.ReasonChanged, Owner: cur.Owner}
		}
		return nil, &lease.ConflictError{Op: "acquire", ID: l.ID, Reason: lease.ReasonOwned, Owner: l.Owner}
	}
	return s.replace(ctx, "acquire", l, func(n *lease.Lease) { n.Owner = owner })
}

// Renew implements lease.Store.
func (s *Store) Renew(ctx context.Context, l *lease.Lease) (*lease.Lease, error) {
	return s.replace(ctx, "renew", l, func(*lease.Lease) {})
}

// Checkpoint implements lease.Store.
func (s *Store) Checkpoint(ctx context.Context, l *lease.Lease, continuation string) (*lease.Lease, error) {
	return s.replace(ctx, "checkpoint", l, func(n *lease.Lease) { n.Continuation = continuation })
}

// Release implements lease.Store.
func (s *Store) Release(ctx context.Context, l *lease.Lease) error {
	_, err := s.replace(ctx, "release", l, func(n *lease.Lease) { n.Owner = "" })
	var lost *lease.LostError
	if errors.As(err, &lost) && lost.Gone {
		return nil
	}
	return err
}

// replace writes mutate(l) if the stored lease is still l (If-Match).
func (s *Store) replace(ctx context.Context, op string, l *lease.Lease, mutate func(*lease.Lease)) (*lease.Lease, error) {
	n := l.Clone()
	mutate(n)
	now := s.now()
	body, err := encode(n, now)
	if err != nil {
		return nil, err
	}
	etag := azcore.ETag(l.ETag)
	resp, err := s.c.ReplaceItem(ctx, s.pk(l), docID(l.ID), body, &azcosmos.ItemOptions{IfMatchEtag: &etag})
	switch st := status(err); {
	case st == http.StatusPreconditionFailed || st == http.StatusNotFound:
		return nil, s.refused(ctx, op, l)
	case err != nil:
		return nil, fmt.Errorf("cosmosstore: %s %s: %w", op, l.ID, err)
	}
	return stamped(n, resp.ETag, now), nil
}

// refused explains a write refused because the stored lease is not the
// caller's copy: the lease is gone or another owner holds it (the caller
// lost it), or it merely changed.
func (s *Store) refused(ctx context.Context, op string, l *lease.Lease) error {
	cur, err := s.get(ctx, l)
	if err != nil {
		// The write was refused for sure; only the reason is unknown.
		return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonChanged}
	}
	switch {
	case op == "acquire" || op == "delete":
		if cur == nil {
			return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonGone}
		}
		return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonChanged, Owner: cur.Owner}
	case cur == nil:
		return &lease.LostError{Op: op, ID: l.ID, Gone: true}
	case cur.Owner != l.Owner:
		return &lease.LostError{Op: op, ID: l.ID, Owner: cur.Owner}
	}
	return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonChanged, Owner: cur.Owner}
}

// Delete implements lease.Store.
func (s *Store) Delete(ctx context.Context, l *lease.Lease) error {
	etag := azcore.ETag(l.ETag)
	_, err := s.c.DeleteItem(ctx, s.pk(l), docID(l.ID), &azcosmos.ItemOptions{IfMatchEtag: &etag})
	switch st := status(err); {
	case st == http.StatusNotFound:
		return nil
	case st == http.StatusPreconditionFailed:
		return s.refused(ctx, "delete", l)
	case err != nil:
		return fmt.Errorf("cosmosstore: delete %s: %w", l.ID, err)
	}
	return nil
}
