package cosmos

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/lease"
)

// Container is one monitored container as a changefeed.Partitions: its
// feed ranges are the leases a changefeed.Runner balances across the
// instances sharing a lease store (the change feed processor the Go SDK
// does not have), and the container's changefeed.Snapshotter (Snapshot).
// Set the fields, then hand it to changefeed.NewRunner.
type Container struct {
	// Client is the account client; Database and Container name the
	// monitored container. Required.
	Client              *azcosmos.Client
	Database, Container string
	Feed                FeedConfig
	// Processor names the consumer group (lease.processor); the lease
	// prefix is the .NET processor's "{Processor}{host}_{dbRid}_{collRid}".
	// Default "changecast".
	Processor string
	// Metrics may be nil.
	Metrics *Metrics
	// Leases is the store the Runner keeps this container's leases in.
	// Snapshot reads the streams' checkpoints there, to answer only with
	// versions the streams publish; without it Snapshot answers
	// changefeed.ErrUnsupported.
	Leases lease.Store

	mu     sync.Mutex
	feed   *Feed
	prefix string
	// missingSince is when Open first found the database or container
	// missing: it is waited for missingGrace, then the worker stops.
	missingSince time.Time
}

// missingGrace is how long a missing database or container is waited for
// (created by the app starting beside the worker) before the worker stops.
const missingGrace = 20 * time.Second

// Open reads the container's and the database's resource ids and returns
// the lease prefix. The Runner retries its errors, but for those retrying
// cannot fix (*ConfigError): credentials the account refuses (401, 403),
// and a database or container still missing after missingGrace.
func (c *Container) Open(ctx context.Context) (string, error) {
	cc, err := c.Client.NewContainer(c.Database, c.Container)
	if err != nil {
		return "", err
	}
	feed, err := NewFeed(ctx, cc, c.Feed, c.Metrics)
	switch st := statusOf(err); {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return "", &ConfigError{Field: "source.cosmos.key", Err: fmt.Errorf("the account refused the credentials (HTTP %d): "+
			"check source.cosmos.key (or, with credential: azure, that the identity has the Cosmos DB Built-in Data Reader or Contributor role on the account)", st)}
	case st == http.StatusNotFound:
		c.mu.Lock()
		if c.missingSince.IsZero() {
			c.missingSince = time.Now()
		}
		waited := time.Since(c.missingSince)
		c.mu.Unlock()
		if waited >= missingGrace {
			return "", &ConfigError{Field: "source.cosmos.container", Err: fmt.Errorf("database %q or container %q does not exist (waited %s): "+
				"create it, or correct source.cosmos.database and source.cosmos.container", c.Database, c.Container, waited.Round(time.Second))}
		}
		return "", err
	case err != nil:
		return "", err
	}
	processor := c.Processor
	if processor == "" {
		processor = "changecast"
	}
	prefix, err := LeasePrefix(ctx, c.Client, c.Database, feed, processor)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.feed, c.prefix = feed, prefix
	c.mu.Unlock()
	feed.cfg.Logger.Info("cosmos: change feed open", "container", c.Database+"/"+c.Container, "start", feed.cfg.Start.String())
	return prefix, nil
}

func (c *Container) opened() (*Feed, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.feed == nil {
		return nil, fmt.Errorf("cosmos: container %s/%s is not open", c.Database, c.Container)
	}
	return c.feed, nil
}

// Bootstrap returns one lease per current feed range (Feed.Leases).
func (c *Container) Bootstrap(ctx context.Context, prefix string) ([]*lease.Lease, error) {
	f, err := c.opened()
	if err != nil {
		return nil, err
	}
	return f.Leases(ctx, prefix)
}

// Source returns the source of one lease (Feed.Source).
func (c *Container) Source(l *lease.Lease, cp lease.Checkpointer) (changefeed.Source, error) {
	f, err := c.opened()
	if err != nil {
		return nil, err
	}
	return f.Source(l, cp), nil
}

// LeasePrefix returns the lease prefix of processor on feed's container, in
// the .NET and Java processors' form "{processor}{accountHost}_{dbRid}_{collRid}"
// (their lease ids are prefix + ".." + token). The container's resource id
// in it means a dropped and re-created container gets new leases instead of
// continuations that no longer apply.
func LeasePrefix(ctx context.Context, client *azcosmos.Client, database string, feed *Feed, processor string) (string, error) {
	db, err := client.NewDatabase(database)
	if err != nil {
		return "", err
	}
	resp, err := db.Read(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("cosmos: read database %s: %w", database, err)
	}
	if resp.DatabaseProperties == nil || resp.DatabaseProperties.ResourceID == "" {
		return "", fmt.Errorf("cosmos: database %s has no resource id", database)
	}
	host := client.Endpoint()
	if u, err := url.Parse(host); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	// Cosmos ids may not contain '/': keep base64 resource ids usable.
	clean := strings.NewReplacer("/", "-", "\\", "-", "?", "-", "#", "-")
	return processor + host + "_" + clean.Replace(resp.DatabaseProperties.ResourceID) + "_" + clean.Replace(feed.ResourceID()), nil
}
