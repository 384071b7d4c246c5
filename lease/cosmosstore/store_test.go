package cosmosstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"go.uber.org/goleak"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/cosmosstore"
	"github.com/changecast/changecast/lease/leasetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// One gateway for the package: azcosmos keeps routing caches per endpoint,
// so each store gets a container of its own instead.
var (
	srv    *cosmostest.Server
	client *azcosmos.Client
	seq    atomic.Int64
)

func gateway(t *testing.T) (*cosmostest.Server, *azcosmos.Client) {
	t.Helper()
	if srv == nil {
		t.Fatal("no gateway")
	}
	return srv, client
}

func newStore(t *testing.T) lease.Store {
	t.Helper()
	_, c := gateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := cosmosstore.New(ctx, c, "leasedb", fmt.Sprintf("leases%d", seq.Add(1)), cosmosstore.Options{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newStoreByPK is newStore on a container partitioned on /partitionKey,
// the newer .NET default.
func newStoreByPK(t *testing.T) lease.Store {
	t.Helper()
	sv, c := gateway(t)
	name := fmt.Sprintf("bypk%d", seq.Add(1))
	if err := sv.CreateContainer("leasedb", name, emulator.ContainerSpec{PartitionKeyPaths: []string{"/partitionKey"}, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	s, err := cosmosstore.New(context.Background(), c, "leasedb", name, cosmosstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCosmosStore(t *testing.T) {
	// A lease container with several physical partitions: listing is a
	// cross-partition query.
	srv = cosmostest.Start(t, emulator.WithPartitions(3))
	client = srv.Client(t)

	t.Run("Contract", func(t *testing.T) { leasetest.TestStore(t, newStore) })
	t.Run("Manager", func(t *testing.T) { leasetest.TestManager(t, newStore) })
	t.Run("DocumentSchema", testDocumentSchema)
	t.Run("MissingContainer", testMissingContainer)
	t.Run("ContractByPartitionKey", func(t *testing.T) { leasetest.TestStore(t, newStoreByPK) })
	t.Run("ManagerByPartitionKey", func(t *testing.T) { leasetest.TestManager(t, newStoreByPK) })
	t.Run("DotNetLeaseByPartitionKey", testDotNetLeaseByPK)
	t.Run("WrongPartitionKey", testWrongPartitionKey)
	t.Run("InjectedPreconditionFailed", testInjected412)
}

// The stored document is the .NET/Java lease document.
func testDocumentSchema(t *testing.T) {
	_, c := gateway(t)
	ctx := context.Background()
	s, err := cosmosstore.New(ctx, c, "leasedb", "schema", cosmosstore.Options{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	l := lease.ForRange("proc", "", "7F")
	l.Mode = lease.ModeIncremental
	l.Continuation = `{"version":1}`
	n, err := s.Create(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, n, "pod-1", lease.AcquireOptions{}); err != nil {
		t.Fatal(err)
	}
	cc, _ := c.NewContainer("leasedb", "schema")
	resp, err := cc.ReadItem(ctx, azcosmos.NewPartitionKeyString(l.ID), l.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := jsonUnmarshal(resp.Value, &doc); err != nil {
		t.Fatal(err)
	}
	fr, _ := doc["FeedRange"].(map[string]any)
	rg, _ := fr["Range"].(map[string]any)
	if doc["id"] != "proc..-7F" || doc["LeaseToken"] != "-7F" || doc["Owner"] != "pod-1" || doc["version"] != float64(1) ||
		doc["Mode"] != "Incremental Feed" || doc["ContinuationToken"] != `{"version":1}` || doc["timestamp"] == nil ||
		rg["min"] != "" || rg["max"] != "7F" {
		t.Fatalf("lease document = %v", doc)
	}
}

func testMissingContainer(t *testing.T) {
	c := cosmostest.Start(t, emulator.WithAutoCreate(false)).Client(t)
	ctx := context.Background()
	if _, err := cosmosstore.New(ctx, c, "db", "leases", cosmosstore.Options{}); err == nil {
		t.Fatal("New on a missing container succeeded")
	}
	if _, err := cosmosstore.New(ctx, c, "db", "leases", cosmosstore.Options{CreateIfMissing: true}); err != nil {
		t.Fatalf("CreateIfMissing: %v", err)
	}
	if _, err := cosmosstore.New(ctx, c, "db", "leases", cosmosstore.Options{CreateIfMissing: true}); err != nil {
		t.Fatalf("CreateIfMissing on an existing container: %v", err)
	}
}

func testWrongPartitionKey(t *testing.T) {
	sv, c := gateway(t)
	if err := sv.CreateContainer("leasedb", "bypkpath", emulator.ContainerSpec{PartitionKeyPaths: []string{"/pk"}}); err != nil {
		t.Fatal(err)
	}
	_, err := cosmosstore.New(context.Background(), c, "leasedb", "bypkpath", cosmosstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "/id or /partitionKey") {
		t.Fatalf("a container partitioned on /pk: %v", err)
	}
}

// testDotNetLeaseByPK: in a /partitionKey container a lease written by
// .NET carries a random GUID as partition key; changecast lists it, takes
// it, checkpoints and releases it in place, and the document keeps its
// partition key. Leases changecast creates there use their id.
func testDotNetLeaseByPK(t *testing.T) {
	sv, c := gateway(t)
	ctx := context.Background()
	if err := sv.CreateContainer("leasedb", "dotnet", emulator.ContainerSpec{PartitionKeyPaths: []string{"/partitionKey"}, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	cc, _ := c.NewContainer("leasedb", "dotnet")
	const guid = "5b1c2a3e-9f1d-4c7e-8a2b-0d9e8f7a6b5c"
	doc := `{"id":"net..0","partitionKey":"` + guid + `","version":1,"LeaseToken":"0","FeedRange":{"Range":{"min":"","max":"FF"}},` +
		`"Owner":null,"ContinuationToken":"\"42\"","timestamp":"2026-08-01T20:43:54.9476294Z","properties":{},"Mode":"Incremental Feed"}`
	if _, err := cc.CreateItem(ctx, azcosmos.NewPartitionKeyString(guid), []byte(doc), nil); err != nil {
		t.Fatal(err)
	}
	s, err := cosmosstore.New(ctx, c, "leasedb", "dotnet", cosmosstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := s.List(ctx, "net..")
	if err != nil || len(ls) != 1 || ls[0].PartitionKey != guid {
		t.Fatalf("list: %v %+v", err, ls)
	}
	l, err := s.Acquire(ctx, ls[0], "a", lease.AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l, err = s.Checkpoint(ctx, l, `"43"`); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	resp, err := cc.ReadItem(ctx, azcosmos.NewPartitionKeyString(guid), "net..0", nil)
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]any
	json.Unmarshal(resp.Value, &stored)
	if stored["partitionKey"] != guid || stored["ContinuationToken"] != `"43"` || stored["Owner"] != nil {
		t.Fatalf("stored lease %v", stored)
	}
	if ts, _ := stored["timestamp"].(string); len(ts) > len("2006-01-02T15:04:05.1234567Z") {
		t.Fatalf("timestamp %q has more than 7 fractional digits", ts)
	}
	created, err := s.Create(ctx, lease.ForPartition("net", "1"))
	if err != nil || created.PartitionKey != "net..1" {
		t.Fatalf("create: %v, partition key %q, want the id", err, created.PartitionKey)
	}
	if _, err := cc.ReadItem(ctx, azcosmos.NewPartitionKeyString("net..1"), "net..1", nil); err != nil {
		t.Fatalf("created lease not stored under its id as partition key: %v", err)
	}
}

// A 412 the store did not cause (another writer's replace racing ours) is a
// conflict, so the Manager re-lists instead of trusting its copy.
func testInjected412(t *testing.T) {
	sv, c := gateway(t)
	ctx := context.Background()
	s, err := cosmosstore.New(ctx, c, "leasedb", "inject", cosmosstore.Options{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Create(ctx, lease.ForPartition("p", "0"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Acquire(ctx, l, "a", lease.AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sv.Inject(emulator.Fault{Status: http.StatusPreconditionFailed, Kinds: []emulator.Kind{emulator.KindReplace}, Database: "leasedb", Container: "inject"})
	_, err = s.Renew(ctx, a)
	if !lease.IsConflict(err) || lease.IsLost(err) {
		t.Fatalf("renew after an injected 412: %v, want a conflict that is not a loss", err)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		t.Fatalf("a raw SDK error leaked: %v", err)
	}
	if _, err := s.Renew(ctx, a); err != nil {
		t.Fatalf("renew after the fault: %v", err)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
