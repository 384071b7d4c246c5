package cosmos_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
)

// These tests drive the emulator with the real azcosmos v1.5.0 SDK. Each
// test starts its own server: azcosmos caches routing state per endpoint,
// so a fresh port keeps tests independent.

func newSDK(t *testing.T, opts ...cosmos.Option) (*cosmostest.Server, *azcosmos.Client) {
	t.Helper()
	srv := cosmostest.Start(t, opts...)
	return srv, srv.Client(t)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func statusOf(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// container creates db/coll through the SDK with partition key /pk.
func mkContainer(t *testing.T, client *azcosmos.Client, db, coll string, throughput int32) *azcosmos.ContainerClient {
	t.Helper()
	ctx := ctxT(t)
	if _, err := client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: db}, nil); err != nil && statusOf(err) != http.StatusConflict {
		t.Fatal(err)
	}
	d, _ := client.NewDatabase(db)
	var opts *azcosmos.CreateContainerOptions
	if throughput > 0 {
		tp := azcosmos.NewManualThroughputProperties(throughput)
		opts = &azcosmos.CreateContainerOptions{ThroughputProperties: &tp}
	}
	if _, err := d.CreateContainer(ctx, azcosmos.ContainerProperties{ID: coll,
		PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{"/pk"}}}, opts); err != nil {
		t.Fatal(err)
	}
	c, err := client.NewContainer(db, coll)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type item struct {
	ID    string `json:"id"`
	PK    string `json:"pk"`
	V     int    `json:"v"`
	LSN   int64  `json:"_lsn,omitempty"`
	ETag  string `json:"_etag,omitempty"`
	Owner string `json:"owner,omitempty"`
}

func put(t *testing.T, c *azcosmos.ContainerClient, it item) azcore.ETag {
	t.Helper()
	b, _ := json.Marshal(it)
	resp, err := c.UpsertItem(context.Background(), azcosmos.NewPartitionKeyString(it.PK), b, nil)
	if err != nil {
		t.Fatalf("upsert %s: %v", it.ID, err)
	}
	return resp.ETag
}

var everything = azcosmos.FeedRange{MinInclusive: "", MaxExclusive: "FF"}

// drain reads the change feed from opts until a call returns 304 and
// returns the items and the last composite token.
func drain(t *testing.T, c *azcosmos.ContainerClient, opts azcosmos.ChangeFeedOptions) ([]item, string) {
	t.Helper()
	var out []item
	for i := 0; i < 200; i++ {
		resp, err := c.ReadChangeFeed(ctxT(t), &opts)
		if err != nil {
			t.Fatalf("ReadChangeFeed: %v", err)
		}
		if resp.ContinuationToken == "" {
			t.Fatal("no continuation token")
		}
		tok := resp.ContinuationToken
		opts = azcosmos.ChangeFeedOptions{Continuation: &tok, MaxItemCount: opts.MaxItemCount}
		if resp.RawResponse.StatusCode == http.StatusNotModified {
			return out, tok
		}
		for _, raw := range resp.Items {
			var it item
			if err := json.Unmarshal(raw, &it); err != nil {
				t.Fatal(err)
			}
			out = append(out, it)
		}
	}
	t.Fatal("change feed did not reach 304")
	return nil, ""
}

func ids(items []item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func tokenEntries(t *testing.T, tok string) []map[string]any {
	t.Helper()
	var ct struct {
		ResourceID   string           `json:"resourceId"`
		Continuation []map[string]any `json:"continuation"`
	}
	if err := json.Unmarshal([]byte(tok), &ct); err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	return ct.Continuation
}

func TestItemCRUDWithETagConditions(t *testing.T) {
	_, client := newSDK(t)
	c := mkContainer(t, client, "app", "leases", 0)
	ctx := ctxT(t)
	pk := azcosmos.NewPartitionKeyString("p1")

	created, err := c.CreateItem(ctx, pk, []byte(`{"id":"l1","pk":"p1","owner":"a"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if created.ETag == "" || len(created.Value) != 0 {
		t.Fatalf("create with Prefer: return=minimal: etag %q, body %q", created.ETag, created.Value)
	}
	if _, err := c.CreateItem(ctx, pk, []byte(`{"id":"l1","pk":"p1"}`), nil); statusOf(err) != http.StatusConflict {
		t.Fatalf("duplicate create: want 409, got %v", err)
	}

	read, err := c.ReadItem(ctx, pk, "l1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(read.Value, &got)
	for _, k := range []string{"_rid", "_self", "_etag", "_attachments", "_ts"} {
		if _, ok := got[k]; !ok {
			t.Errorf("read item lacks %s: %s", k, read.Value)
		}
	}
	if _, ok := got["_lsn"]; ok {
		t.Error("point reads must not carry _lsn")
	}
	if got["_etag"] != string(created.ETag) || read.ETag != created.ETag {
		t.Errorf("etag mismatch: body %v header %q created %q", got["_etag"], read.ETag, created.ETag)
	}
	if !strings.HasPrefix(string(read.Value), `{"id":"l1","pk":"p1","owner":"a","_rid"`) {
		t.Errorf("user property order not kept: %s", read.Value)
	}

	stale := azcore.ETag(`"stale"`)
	_, err = c.ReplaceItem(ctx, pk, "l1", []byte(`{"id":"l1","pk":"p1","owner":"b"}`), &azcosmos.ItemOptions{IfMatchEtag: &stale})
	if statusOf(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale replace: want 412, got %v", err)
	}
	etag := created.ETag
	replaced, err := c.ReplaceItem(ctx, pk, "l1", read.Value, &azcosmos.ItemOptions{IfMatchEtag: &etag, EnableContentResponseOnWrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if replaced.ETag == created.ETag || !strings.Contains(string(replaced.Value), `"_etag":`+fmt.Sprintf("%q", string(replaced.ETag))) {
		t.Errorf("replace must return a new etag and (with content response) the body: %q %s", replaced.ETag, replaced.Value)
	}
	// The old etag is now stale for the losing writer.
	if _, err := c.ReplaceItem(ctx, pk, "l1", read.Value, &azcosmos.ItemOptions{IfMatchEtag: &etag}); statusOf(err) != http.StatusPreconditionFailed {
		t.Fatalf("second replace with the old etag: want 412, got %v", err)
	}

	if _, err := c.ReplaceItem(ctx, pk, "nope", []byte(`{"id":"nope","pk":"p1"}`), nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("replace missing: want 404, got %v", err)
	}
	if _, err := c.CreateItem(ctx, pk, []byte(`{"id":"x","pk":"other"}`), nil); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("partition key mismatch: want 400, got %v", err)
	}
	if _, err := c.UpsertItem(ctx, pk, []byte(`{"id":"l2","pk":"p1"}`), nil); err != nil {
		t.Fatal(err)
	}

	patch := azcosmos.PatchOperations{}
	patch.AppendSet("/owner", "c")
	patch.AppendIncrement("/n", 2)
	if _, err := c.PatchItem(ctx, pk, "l1", patch, nil); err != nil {
		t.Fatal(err)
	}
	read, _ = c.ReadItem(ctx, pk, "l1", nil)
	_ = json.Unmarshal(read.Value, &got)
	if got["owner"] != "c" || got["n"] != 2.0 {
		t.Errorf("patch not applied: %s", read.Value)
	}

	if _, err := c.DeleteItem(ctx, pk, "l1", &azcosmos.ItemOptions{IfMatchEtag: &stale}); statusOf(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale delete: want 412, got %v", err)
	}
	cur := read.ETag
	if _, err := c.DeleteItem(ctx, pk, "l1", &azcosmos.ItemOptions{IfMatchEtag: &cur}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadItem(ctx, pk, "l1", nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("read after delete: want 404, got %v", err)
	}
}

func TestQueriesForALeaseStore(t *testing.T) {
	srv, client := newSDK(t, cosmos.WithPartitions(3))
	c := mkContainer(t, client, "app", "leases", 0)
	for i := 0; i < 7; i++ {
		prefix := "proc.."
		if i >= 5 {
			prefix = "other.."
		}
		put(t, c, item{ID: fmt.Sprintf("%s%d", prefix, i), PK: fmt.Sprintf("p%d", i), V: i, Owner: []string{"a", "b"}[i%2]})
	}
	query := func(q string, pk azcosmos.PartitionKey, opts *azcosmos.QueryOptions) []item {
		t.Helper()
		var out []item
		pager := c.NewQueryItemsPager(q, pk, opts)
		for pager.More() {
			page, err := pager.NextPage(ctxT(t))
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			for _, raw := range page.Items {
				var it item
				_ = json.Unmarshal(raw, &it)
				out = append(out, it)
			}
		}
		return out
	}
	got := query("SELECT * FROM c WHERE STARTSWITH(c.id, @prefix)", azcosmos.NewPartitionKey(),
		&azcosmos.QueryOptions{QueryParameters: []azcosmos.QueryParameter{{Name: "@prefix", Value: "proc.."}}})
	if len(got) != 5 {
		t.Fatalf("STARTSWITH: got %v", ids(got))
	}
	srv.ResetCounts()
	got = query("SELECT * FROM c", azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{PageSizeHint: 2})
	if len(got) != 7 || srv.Count(cosmos.KindQuery) != 4 {
		t.Fatalf("paged SELECT *: %d items in %d pages", len(got), srv.Count(cosmos.KindQuery))
	}
	if h := srv.Requests(cosmos.KindQuery)[0].Header; h.Get("x-ms-documentdb-query") != "True" || h.Get("Content-Type") != "application/query+json" {
		t.Errorf("unexpected query headers: %v", h)
	}
	got = query("SELECT * FROM c WHERE c.pk = 'p4' ORDER BY c.v DESC", azcosmos.NewPartitionKey(), nil)
	if !slices.Equal(ids(got), []string{"proc..4"}) {
		t.Fatalf("filter + order in one partition: %v", ids(got))
	}
	got = query("SELECT * FROM c", azcosmos.NewPartitionKeyString("p3"), nil)
	if len(got) != 1 || got[0].ID != "proc..3" {
		t.Fatalf("single-partition query: %v", ids(got))
	}
	pager := c.NewQueryItemsPager("SELECT VALUE COUNT(1) FROM c WHERE c.v >= 2", azcosmos.NewPartitionKeyString("p3"), nil)
	page, err := pager.NextPage(ctxT(t))
	if err != nil || len(page.Items) != 1 || string(page.Items[0]) != "1" {
		t.Fatalf("COUNT: %v %q", err, page.Items)
	}
	_, err = c.NewQueryItemsPager("SELEKT nope", azcosmos.NewPartitionKey(), nil).NextPage(ctxT(t))
	if statusOf(err) != http.StatusBadRequest {
		t.Fatalf("bad query: want 400, got %v", err)
	}
}

// The fake places documents with the service's real V2 hash, so the
// SDK's client-side EPK routing (ReadManyItems) finds every document.
func TestReadManyUsesTheSameHashAsTheSDK(t *testing.T) {
	_, client := newSDK(t, cosmos.WithPartitions(4))
	c := mkContainer(t, client, "app", "orders", 0)
	var want []azcosmos.ItemIdentity
	for i := 0; i < 20; i++ {
		it := item{ID: fmt.Sprintf("o%d", i), PK: fmt.Sprintf("customer-%d", i)}
		put(t, c, it)
		want = append(want, azcosmos.ItemIdentity{ID: it.ID, PartitionKey: azcosmos.NewPartitionKeyString(it.PK)})
	}
	resp, err := c.ReadManyItems(ctxT(t), want, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Items) != 20 {
		t.Fatalf("ReadManyItems found %d of 20", len(resp.Items))
	}
}

func TestChangeFeedFromBeginningWithCompositeTokens(t *testing.T) {
	srv, client := newSDK(t, cosmos.WithPartitions(4))
	c := mkContainer(t, client, "app", "orders", 0)
	ctx := ctxT(t)

	frs, err := c.ReadFeedRanges(ctx, nil)
	if err != nil || len(frs) != 4 || frs[0].MinInclusive != "" || frs[3].MaxExclusive != "FF" {
		t.Fatalf("ReadFeedRanges: %v %v", frs, err)
	}
	for i := 0; i < 30; i++ {
		put(t, c, item{ID: fmt.Sprintf("o%02d", i), PK: fmt.Sprintf("k%d", i)})
	}
	got, tok := drain(t, c, azcosmos.ChangeFeedOptions{FeedRange: &everything, MaxItemCount: 4})
	if len(got) != 30 {
		t.Fatalf("from beginning: %d items", len(got))
	}
	if n := len(tokenEntries(t, tok)); n != 4 {
		t.Fatalf("token should hold one entry per range, has %d: %s", n, tok)
	}
	for _, it := range got {
		if it.LSN <= 0 {
			t.Fatalf("%s has no _lsn", it.ID)
		}
	}

	// Nothing new: 304, and the token still works.
	resp, err := c.ReadChangeFeed(ctx, &azcosmos.ChangeFeedOptions{Continuation: &tok})
	if err != nil || resp.RawResponse.StatusCode != http.StatusNotModified || resp.Count != 0 {
		t.Fatalf("no changes: want 304, got %v %v", resp.RawResponse, err)
	}
	for _, r := range srv.Requests(cosmos.KindChangeFeed) {
		if r.Header.Get("A-IM") != "Incremental Feed" || r.Header.Get("x-ms-documentdb-partitionkeyrangeid") == "" {
			t.Fatalf("change-feed request headers: %v", r.Header)
		}
	}

	put(t, c, item{ID: "late", PK: "k-late"})
	got, _ = drain(t, c, azcosmos.ChangeFeedOptions{Continuation: &tok})
	if !slices.Equal(ids(got), []string{"late"}) {
		t.Fatalf("resume: %v", ids(got))
	}
}

func TestChangeFeedLatestVersionSemantics(t *testing.T) {
	srv, client := newSDK(t)
	c := mkContainer(t, client, "app", "orders", 0)
	for _, id := range []string{"a", "b", "c"} {
		put(t, c, item{ID: id, PK: "p"})
	}
	first, tok := drain(t, c, azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if !slices.Equal(ids(first), []string{"a", "b", "c"}) {
		t.Fatalf("initial: %v", ids(first))
	}
	put(t, c, item{ID: "a", PK: "p", V: 2})
	if _, err := c.DeleteItem(ctxT(t), azcosmos.NewPartitionKeyString("p"), "b", nil); err != nil {
		t.Fatal(err)
	}
	got, _ := drain(t, c, azcosmos.ChangeFeedOptions{Continuation: &tok})
	if !slices.Equal(ids(got), []string{"a"}) || got[0].V != 2 || got[0].LSN <= first[2].LSN {
		t.Fatalf("update must move a to the tail with a new _lsn; deletes are not shown: %+v", got)
	}
	// From the beginning, each document appears once, at its latest position.
	all, _ := drain(t, c, azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if !slices.Equal(ids(all), []string{"c", "a"}) {
		t.Fatalf("latest version from beginning: %v", ids(all))
	}
	// The session token carries the range's LSN (the estimator's input).
	resp, _ := c.ReadChangeFeed(ctxT(t), &azcosmos.ChangeFeedOptions{FeedRange: &everything, MaxItemCount: 1})
	if st := resp.RawResponse.Header.Get("x-ms-session-token"); st != "0:-1#5" {
		t.Errorf("session token %q, want 0:-1#5 (5 writes)", st)
	}
	_ = srv
}

func TestChangeFeedStartNowAndStartTime(t *testing.T) {
	// The emulator's clock runs ahead of the wall clock by skew, so the
	// test can move past a whole second instead of sleeping to one.
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	_, client := newSDK(t, cosmos.WithClock(clock))
	c := mkContainer(t, client, "app", "orders", 0)
	put(t, c, item{ID: "old", PK: "p"})

	// "Now": a crafted composite token with "*" for the range.
	props, err := c.Read(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := fmt.Sprintf(`{"version":1,"resourceId":%q,"continuation":[{"minInclusive":"","maxExclusive":"FF","continuationToken":"*"}]}`,
		props.ContainerProperties.ResourceID)
	resp, err := c.ReadChangeFeed(ctxT(t), &azcosmos.ChangeFeedOptions{Continuation: &now})
	if err != nil || resp.RawResponse.StatusCode != http.StatusNotModified {
		t.Fatalf("start now: want 304, got %v", err)
	}
	tok := resp.ContinuationToken
	if e := tokenEntries(t, tok); e[0]["continuationToken"] != `"1"` {
		t.Fatalf("* must become the current LSN: %s", tok)
	}
	put(t, c, item{ID: "new", PK: "p"})
	got, _ := drain(t, c, azcosmos.ChangeFeedOptions{Continuation: &tok})
	if !slices.Equal(ids(got), []string{"new"}) {
		t.Fatalf("after now: %v", ids(got))
	}

	// Point in time: If-Modified-Since is an HTTP date with whole seconds,
	// so the start must be at least a second after the last earlier write.
	skew.Add(int64(2 * time.Second))
	start := clock()
	put(t, c, item{ID: "after", PK: "p"})
	// azcosmos's own StartFrom writes the date with "UTC" (time.RFC1123 of a
	// UTC time); the service accepts what its SDK sends.
	resp, err = c.ReadChangeFeed(ctxT(t), &azcosmos.ChangeFeedOptions{FeedRange: &everything, StartFrom: &start})
	if err != nil {
		t.Fatalf("StartFrom (a UTC date): %v", err)
	}
	if got := feedIDs(t, resp); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("StartFrom (a UTC date): %v, want [after]", got)
	}
	// The header as changefeed/cosmos sends it: GMT.
	gmt := policy.WithHTTPHeader(context.Background(), http.Header{"If-Modified-Since": {start.UTC().Format(http.TimeFormat)}})
	resp, err = c.ReadChangeFeed(gmt, &azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if err != nil {
		t.Fatalf("start from a GMT date: %v", err)
	}
	if got := feedIDs(t, resp); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("start from a GMT date: %v", got)
	}
	// A header that is not a date at all stays 400.
	bad := policy.WithHTTPHeader(context.Background(), http.Header{"If-Modified-Since": {"yesterday"}})
	_, err = c.ReadChangeFeed(bad, &azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if statusOf(err) != http.StatusBadRequest {
		t.Fatalf("If-Modified-Since: yesterday: %v, want 400", err)
	}
}

func feedIDs(t *testing.T, resp azcosmos.ChangeFeedResponse) []string {
	t.Helper()
	var out []string
	for _, raw := range resp.Items {
		var it item
		if err := json.Unmarshal(raw, &it); err != nil {
			t.Fatal(err)
		}
		out = append(out, it.ID)
	}
	return out
}

func TestSplitAnswers410AndChildrenContinueFromParentToken(t *testing.T) {
	srv, client := newSDK(t)
	c := mkContainer(t, client, "app", "orders", 0)
	for i := 0; i < 10; i++ {
		put(t, c, item{ID: fmt.Sprintf("before%d", i), PK: fmt.Sprintf("k%d", i)})
	}
	got, tok := drain(t, c, azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if len(got) != 10 {
		t.Fatalf("before split: %d", len(got))
	}
	children, err := srv.Split("app", "orders", "0")
	if err != nil || !slices.Equal(children, []string{"1", "2"}) {
		t.Fatalf("split: %v %v", children, err)
	}
	var want []string
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("after%d", i)
		put(t, c, item{ID: id, PK: fmt.Sprintf("k%d", i)})
		want = append(want, id)
	}
	srv.ResetCounts()
	got, tok2 := drain(t, c, azcosmos.ChangeFeedOptions{Continuation: &tok})
	gotIDs := ids(got)
	slices.Sort(gotIDs)
	if !slices.Equal(gotIDs, want) {
		t.Fatalf("after split from the parent's token: got %v want %v", gotIDs, want)
	}
	var gone int
	for _, r := range srv.Requests(cosmos.KindChangeFeed) {
		if r.Status == http.StatusGone {
			gone++
			if r.SubStatus != 1002 || r.Header.Get("x-ms-documentdb-partitionkeyrangeid") != "0" {
				t.Errorf("410 for %v substatus %d", r.Header.Get("x-ms-documentdb-partitionkeyrangeid"), r.SubStatus)
			}
		}
	}
	if gone != 1 || srv.Count(cosmos.KindPKRanges) < 2 {
		t.Fatalf("want one 410 and a pkranges refresh, got %d 410s, %d pkranges reads", gone, srv.Count(cosmos.KindPKRanges))
	}
	entries := tokenEntries(t, tok2)
	if len(entries) != 2 {
		t.Fatalf("token after split should hold both children: %s", tok2)
	}
	frs, _ := c.ReadFeedRanges(ctxT(t), nil)
	if len(frs) != 2 {
		t.Fatalf("feed ranges after split: %v", frs)
	}
	// And the pkranges feed lists the children with their parent.
	ranges, _ := srv.PartitionKeyRanges("app", "orders")
	for _, r := range ranges {
		if !slices.Equal(r.Parents, []string{"0"}) {
			t.Fatalf("child %s parents %v", r.ID, r.Parents)
		}
	}
}

func TestMergeDeliversDuplicatesNotLoss(t *testing.T) {
	srv, client := newSDK(t, cosmos.WithPartitions(2))
	c := mkContainer(t, client, "app", "orders", 0)
	for i := 0; i < 6; i++ {
		put(t, c, item{ID: fmt.Sprintf("d%d", i), PK: fmt.Sprintf("k%d", i)})
	}
	_, tok := drain(t, c, azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if _, err := srv.Merge("app", "orders", "0", "1"); err != nil {
		t.Fatal(err)
	}
	put(t, c, item{ID: "new", PK: "k-new"})
	got, _ := drain(t, c, azcosmos.ChangeFeedOptions{Continuation: &tok})
	if !slices.Contains(ids(got), "new") {
		t.Fatalf("merge lost a change: %v", ids(got))
	}
}

func TestThrottlingIsRetriedBySDK(t *testing.T) {
	srv, client := newSDK(t)
	c := mkContainer(t, client, "app", "orders", 0)
	put(t, c, item{ID: "a", PK: "p"})
	_, _ = c.ReadFeedRanges(ctxT(t), nil) // warm the caches
	srv.ResetCounts()
	srv.FailNext(2, http.StatusTooManyRequests, cosmos.KindChangeFeed)
	resp, err := c.ReadChangeFeed(ctxT(t), &azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if err != nil || resp.Count != 1 {
		t.Fatalf("429s should be retried: %v", err)
	}
	reqs := srv.Requests(cosmos.KindChangeFeed)
	if len(reqs) != 3 || reqs[0].Status != 429 || reqs[1].Status != 429 || reqs[2].Status != 200 {
		t.Fatalf("want 429,429,200; got %+v", reqs)
	}

	// More 429s than azcore's 3 retries surface as an error.
	srv.FailNext(4, http.StatusTooManyRequests, cosmos.KindRead)
	if _, err := c.ReadItem(ctxT(t), azcosmos.NewPartitionKeyString("p"), "a", nil); statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("want 429 after retries, got %v", err)
	}
	// azcosmos treats 503 as a regional failure: without a preferred
	// region to fail over to it surfaces at once, even with a retry hint.
	srv.ResetCounts()
	srv.Inject(cosmos.Fault{Status: http.StatusServiceUnavailable, RetryAfter: 10 * time.Millisecond, Kinds: []cosmos.Kind{cosmos.KindRead}})
	if _, err := c.ReadItem(ctxT(t), azcosmos.NewPartitionKeyString("p"), "a", nil); statusOf(err) != http.StatusServiceUnavailable || srv.Count(cosmos.KindRead) != 1 {
		t.Fatalf("503 without preferred regions: want one 503, got %v after %d reads", err, srv.Count(cosmos.KindRead))
	}
	// Naming the fake's region as preferred lets the SDK retry a read.
	cred, _ := azcosmos.NewKeyCredential(srv.Key())
	regional, _ := azcosmos.NewClientWithKey(srv.URL(), cred, &azcosmos.ClientOptions{PreferredRegions: []string{"Local"}})
	defer regional.Close()
	rc, _ := regional.NewContainer("app", "orders")
	srv.ResetCounts()
	srv.Inject(cosmos.Fault{Status: http.StatusServiceUnavailable, Kinds: []cosmos.Kind{cosmos.KindRead}})
	if _, err := rc.ReadItem(ctxT(t), azcosmos.NewPartitionKeyString("p"), "a", nil); err != nil || srv.Count(cosmos.KindRead) != 2 {
		t.Fatalf("503 with a preferred region should be retried once: %v after %d reads", err, srv.Count(cosmos.KindRead))
	}
}

func TestWrongKeyIsRejected(t *testing.T) {
	srv, _ := newSDK(t)
	cred, _ := azcosmos.NewKeyCredential("d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
	bad, err := azcosmos.NewClientWithKey(srv.URL(), cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = bad.CreateDatabase(ctxT(t), azcosmos.DatabaseProperties{ID: "x"}, nil)
	if statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("want 401, got %v", err)
	}
	if srv.Count(cosmos.KindDatabase) != 0 && srv.Requests(cosmos.KindAccount)[0].Status != http.StatusUnauthorized {
		t.Fatal("the account read should have been refused")
	}
}

func TestConnectionStringAndAutoCreate(t *testing.T) {
	srv := cosmostest.Start(t, cosmos.WithPartitions(2))
	client, err := azcosmos.NewClientFromConnectionString(srv.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, _ := client.NewContainer("auto", "things")
	// The container does not exist yet; the first use creates it with the
	// default partition key path /id and two ranges.
	if _, err := c.UpsertItem(ctxT(t), azcosmos.NewPartitionKeyString("x"), []byte(`{"id":"x"}`), nil); err != nil {
		t.Fatal(err)
	}
	frs, err := c.ReadFeedRanges(ctxT(t), nil)
	if err != nil || len(frs) != 2 {
		t.Fatalf("auto-created ranges: %v %v", frs, err)
	}
	// Writes made directly on the server show up in the feed.
	if _, err := srv.Upsert("auto", "things", map[string]any{"id": "y", "n": 1}); err != nil {
		t.Fatal(err)
	}
	got, _ := drain(t, c, azcosmos.ChangeFeedOptions{FeedRange: &everything})
	if len(got) != 2 {
		t.Fatalf("feed: %v", ids(got))
	}
}

// Served over TLS, the emulator advertises an https endpoint, which the
// SDK then sends every request to (an http one would fail on this port).
func TestTLS(t *testing.T) {
	emu, err := cosmos.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(emu.Handler())
	defer ts.Close()
	cred, _ := azcosmos.NewKeyCredential(emu.Key())
	client, err := azcosmos.NewClientWithKey(ts.URL+"/", cred,
		&azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: ts.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, _ := client.NewContainer("db", "c")
	if _, err := c.UpsertItem(ctxT(t), azcosmos.NewPartitionKeyString("x"), []byte(`{"id":"x"}`), nil); err != nil {
		t.Fatal(err)
	}
}

// The advertised region is the name the SDK routes by and reports in its
// diagnostics; the consistency level is what the account read says.
func TestAccountRegionAndConsistency(t *testing.T) {
	srv, client := newSDK(t, cosmos.WithRegion("West Europe"), cosmos.WithConsistencyLevel("Eventual"))
	c := mkContainer(t, client, "app", "orders", 0)
	put(t, c, item{ID: "a", PK: "p"})
	resp, err := c.ReadItem(ctxT(t), azcosmos.NewPartitionKeyString("p"), "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.Diagnostics.String(); !strings.Contains(d, `"RegionsContacted":["westeurope"]`) {
		t.Fatalf("diagnostics do not name the region: %s", d)
	}
	var acct struct {
		Writable []struct {
			Name string `json:"name"`
		} `json:"writableLocations"`
		Consistency struct {
			Level string `json:"defaultConsistencyLevel"`
		} `json:"userConsistencyPolicy"`
	}
	code, _, body := srv.Do(t, http.MethodGet, "/", nil, nil)
	if err := json.Unmarshal(body, &acct); code != http.StatusOK || err != nil {
		t.Fatalf("account read: %d %v", code, err)
	}
	if len(acct.Writable) != 1 || acct.Writable[0].Name != "West Europe" || acct.Consistency.Level != "Eventual" {
		t.Fatalf("account: %+v", acct)
	}
	if _, err := cosmos.NewServer(cosmos.WithConsistencyLevel("Sometimes")); err == nil {
		t.Fatal("an unknown consistency level was accepted")
	}
}

// Every SDK asks for query metrics (azcosmos always sends
// x-ms-documentdb-populatequerymetrics: true) and index metrics on request.
func TestQueryMetrics(t *testing.T) {
	_, client := newSDK(t)
	c := mkContainer(t, client, "app", "orders", 0)
	for i := 0; i < 4; i++ {
		put(t, c, item{ID: fmt.Sprintf("o%d", i), PK: "p", V: i})
	}
	page, err := c.NewQueryItemsPager("SELECT * FROM c WHERE c.v >= 1", azcosmos.NewPartitionKeyString("p"),
		&azcosmos.QueryOptions{PopulateIndexMetrics: true}).NextPage(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if page.QueryMetrics == nil {
		t.Fatal("no query metrics")
	}
	m := map[string]string{}
	for _, kv := range strings.Split(*page.QueryMetrics, ";") {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	if m["retrievedDocumentCount"] != "4" || m["outputDocumentCount"] != "3" || m["totalExecutionTimeInMs"] == "" {
		t.Fatalf("query metrics: %s", *page.QueryMetrics)
	}
	if page.IndexMetrics == nil {
		t.Fatal("no index metrics")
	}
	raw, err := base64.StdEncoding.DecodeString(*page.IndexMetrics)
	var im map[string][]any
	if err != nil || json.Unmarshal(raw, &im) != nil || im["UtilizedSingleIndexes"] == nil {
		t.Fatalf("index metrics are not base64 JSON: %q", *page.IndexMetrics)
	}
	// Index metrics only when asked.
	page, err = c.NewQueryItemsPager("SELECT * FROM c", azcosmos.NewPartitionKeyString("p"), nil).NextPage(ctxT(t))
	if err != nil || page.IndexMetrics != nil || page.QueryMetrics == nil {
		t.Fatalf("without PopulateIndexMetrics: %v index %v query %v", err, page.IndexMetrics, page.QueryMetrics)
	}
}

// Cross-partition queries follow the gateway's rules: code that works
// against the emulator works against Azure.
func TestCrossPartitionQueryRulesAsTheGateway(t *testing.T) {
	_, client := newSDK(t, cosmos.WithPartitions(3))
	c := mkContainer(t, client, "app", "orders", 0)
	for i := 0; i < 6; i++ {
		put(t, c, item{ID: fmt.Sprintf("o%d", i), PK: fmt.Sprintf("p%d", i%2), V: i})
	}
	run := func(q string, pk azcosmos.PartitionKey, opts *azcosmos.QueryOptions) ([]string, error) {
		var out []string
		pager := c.NewQueryItemsPager(q, pk, opts)
		for pager.More() {
			page, err := pager.NextPage(ctxT(t))
			if err != nil {
				return out, err
			}
			for _, raw := range page.Items {
				var it item
				_ = json.Unmarshal(raw, &it)
				out = append(out, it.ID)
			}
		}
		return out, nil
	}
	// Clauses that need state across partitions: 400 with substatus 1004,
	// the gateway's message and a query plan in additionalErrorInfo (which
	// @azure/cosmos needs to retry per range) when sent without a plan.
	for _, q := range []string{
		"SELECT * FROM c ORDER BY c.v",
		"SELECT VALUE COUNT(1) FROM c",
		"SELECT c.id, MAX(c.v) AS m FROM c",
		"SELECT DISTINCT c.pk FROM c",
		"SELECT c.pk FROM c GROUP BY c.pk",
		"SELECT * FROM c OFFSET 1 LIMIT 2",
		"SELECT TOP 2 * FROM c",
		"SELECT * FROM c WHERE c.pk = 'p0' OR c.v > 3 ORDER BY c.v",
	} {
		_, err := run(q, azcosmos.NewPartitionKey(), nil)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || re.RawResponse.Header.Get("x-ms-substatus") != "1004" ||
			!strings.Contains(err.Error(), "can not be directly served by the gateway") ||
			!strings.Contains(err.Error(), `"additionalErrorInfo"`) {
			t.Errorf("%s: want 400/1004 from the gateway, got %v", q, err)
		}
	}
	// Filters and projections are served across partitions...
	got, err := run("SELECT * FROM c WHERE c.v >= 4", azcosmos.NewPartitionKey(), nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("cross-partition filter: %v %v", got, err)
	}
	// ...but only with x-ms-documentdb-query-enablecrosspartition.
	off := false
	_, err = run("SELECT * FROM c WHERE c.v >= 4", azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{EnableCrossPartitionQuery: &off})
	if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "Cross partition query is required but disabled") {
		t.Fatalf("enablecrosspartition off: %v", err)
	}
	// A partition key, in the header or pinned by the WHERE clause, makes
	// the query single-partition: ORDER BY and aggregates are served.
	for _, tc := range []struct {
		q    string
		pk   azcosmos.PartitionKey
		opts *azcosmos.QueryOptions
	}{
		{"SELECT * FROM c ORDER BY c.v DESC", azcosmos.NewPartitionKeyString("p1"), nil},
		{"SELECT * FROM c WHERE c.pk = 'p1' ORDER BY c.v DESC", azcosmos.NewPartitionKey(), nil},
		{"SELECT * FROM c WHERE (c.v > 0 AND c['pk'] = @pk) ORDER BY c.v DESC", azcosmos.NewPartitionKey(),
			&azcosmos.QueryOptions{QueryParameters: []azcosmos.QueryParameter{{Name: "@pk", Value: "p1"}}}},
		{"SELECT * FROM c WHERE c.pk = 'p1' ORDER BY c.v DESC", azcosmos.NewPartitionKey(), &azcosmos.QueryOptions{EnableCrossPartitionQuery: &off}},
	} {
		got, err := run(tc.q, tc.pk, tc.opts)
		if err != nil || !slices.Equal(got, []string{"o5", "o3", "o1"}) {
			t.Errorf("%s: %v %v", tc.q, got, err)
		}
	}
}

// ReadThroughput/ReplaceThroughput query /offers for the resource's _rid,
// read the offer and PUT it back: manual and autoscale, databases and
// containers.
func TestThroughputOffers(t *testing.T) {
	srv, client := newSDK(t)
	ctx := ctxT(t)
	auto := azcosmos.NewAutoscaleThroughputPropertiesWithIncrement(4000, 10)
	if _, err := client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: "shared"}, &azcosmos.CreateDatabaseOptions{ThroughputProperties: &auto}); err != nil {
		t.Fatal(err)
	}
	db, _ := client.NewDatabase("shared")
	tr, err := db.ReadThroughput(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := tr.ThroughputProperties.AutoscaleMaxThroughput(); !ok || m != 4000 {
		t.Fatalf("database autoscale max: %d %v", m, ok)
	}
	if inc, ok := tr.ThroughputProperties.AutoscaleIncrement(); !ok || inc != 10 {
		t.Fatalf("database autoscale increment: %d %v", inc, ok)
	}
	if tr.MinThroughput == nil || *tr.MinThroughput != 1000 {
		t.Fatalf("min throughput: %v", tr.MinThroughput)
	}
	tr, err = db.ReplaceThroughput(ctx, azcosmos.NewAutoscaleThroughputProperties(6000), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := tr.ThroughputProperties.AutoscaleMaxThroughput(); m != 6000 {
		t.Fatalf("replaced autoscale max: %d", m)
	}
	// A container in a shared-throughput database has no offer of its own.
	if _, err := db.CreateContainer(ctx, azcosmos.ContainerProperties{ID: "inshared",
		PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{"/pk"}}}, nil); err != nil {
		t.Fatal(err)
	}
	inShared, _ := db.NewContainer("inshared")
	if _, err := inShared.ReadThroughput(ctx, nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("container in a shared database: %v, want 404", err)
	}

	c := mkContainer(t, client, "app", "orders", 1000)
	tr, err = c.ReadThroughput(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := tr.ThroughputProperties.ManualThroughput(); !ok || n != 1000 {
		t.Fatalf("container manual throughput: %d %v", n, ok)
	}
	etag := *tr.ThroughputProperties.ETag
	if _, err := c.ReplaceThroughput(ctx, azcosmos.NewManualThroughputProperties(2500), nil); err != nil {
		t.Fatal(err)
	}
	tr, err = c.ReadThroughput(ctx, nil)
	if n, _ := tr.ThroughputProperties.ManualThroughput(); err != nil || n != 2500 {
		t.Fatalf("after replace: %d %v", n, err)
	}
	// The service's limits and preconditions.
	if _, err := c.ReplaceThroughput(ctx, azcosmos.NewManualThroughputProperties(250), nil); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("250 RU/s: %v, want 400", err)
	}
	if _, err := c.ReplaceThroughput(ctx, azcosmos.NewManualThroughputProperties(3000), &azcosmos.ThroughputOptions{IfMatchEtag: &etag}); statusOf(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale etag: %v, want 412", err)
	}
	// The offers feed lists every offer: the database's and the container's.
	code, _, body := srv.Do(t, http.MethodGet, "/offers", nil, nil)
	var feed struct {
		Offers []struct {
			Resource string `json:"resource"`
		} `json:"Offers"`
	}
	if err := json.Unmarshal(body, &feed); code != http.StatusOK || err != nil || len(feed.Offers) != 2 {
		t.Fatalf("GET /offers: %d %s", code, body)
	}
	if err := (func() error { _, err := c.Delete(ctx, nil); return err })(); err != nil {
		t.Fatal(err)
	}
	if _, _, body = srv.Do(t, http.MethodGet, "/offers", nil, nil); strings.Count(string(body), `"resource"`) != 1 {
		t.Fatalf("a deleted container's offer is still listed: %s", body)
	}
}

// ExecuteTransactionalBatch: one logical partition, all or nothing, one
// result per operation; a failed batch is 207 with the failing operation's
// status and 424 for the others, and changes nothing.
func TestTransactionalBatch(t *testing.T) {
	_, client := newSDK(t, cosmos.WithPartitions(2))
	c := mkContainer(t, client, "app", "orders", 0)
	ctx := ctxT(t)
	etagB := put(t, c, item{ID: "b", PK: "p", V: 1})
	put(t, c, item{ID: "c", PK: "p", V: 1})
	_, tok := drain(t, c, azcosmos.ChangeFeedOptions{FeedRange: &everything})

	doc := func(id string, v int) []byte { b, _ := json.Marshal(item{ID: id, PK: "p", V: v}); return b }
	batch := c.NewTransactionalBatch(azcosmos.NewPartitionKeyString("p"))
	batch.CreateItem(doc("a", 1), nil)
	batch.ReplaceItem("b", doc("b", 2), &azcosmos.TransactionalBatchItemOptions{IfMatchETag: &etagB})
	batch.UpsertItem(doc("u", 3), nil)
	patch := azcosmos.PatchOperations{}
	patch.AppendIncrement("/v", 10)
	batch.PatchItem("c", patch, nil)
	batch.ReadItem("a", nil)
	batch.DeleteItem("u", nil)
	resp, err := c.ExecuteTransactionalBatch(ctx, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	var codes []int32
	for _, r := range resp.OperationResults {
		codes = append(codes, r.StatusCode)
	}
	if !resp.Success || !slices.Equal(codes, []int32{201, 200, 201, 200, 200, 204}) {
		t.Fatalf("batch: success %v, statuses %v", resp.Success, codes)
	}
	var read item
	if err := json.Unmarshal(resp.OperationResults[4].ResourceBody, &read); err != nil || read.ID != "a" {
		t.Fatalf("read result %q: %v", resp.OperationResults[4].ResourceBody, err)
	}
	// azcosmos asks for bodies of writes when the batch holds a read, and
	// sends Prefer: return=minimal otherwise.
	if resp.OperationResults[0].ResourceBody == nil {
		t.Fatal("no body for the create of a batch with a read")
	}
	minimal := c.NewTransactionalBatch(azcosmos.NewPartitionKeyString("p"))
	minimal.UpsertItem(doc("m", 1), nil)
	minimal.DeleteItem("m", nil)
	if r, err := c.ExecuteTransactionalBatch(ctx, minimal, nil); err != nil || !r.Success || r.OperationResults[0].ResourceBody != nil {
		t.Fatalf("minimal batch: %v %+v", err, r.OperationResults)
	}
	if resp.OperationResults[1].ETag == "" || resp.OperationResults[1].ETag == etagB {
		t.Fatalf("replace result etag %q", resp.OperationResults[1].ETag)
	}
	// The change feed shows the batch as one transaction: its documents
	// share one LSN and arrive together even with a page size of 1.
	one := int32(1)
	got, _ := drain(t, c, azcosmos.ChangeFeedOptions{Continuation: &tok, MaxItemCount: one})
	if !slices.Equal(ids(got), []string{"a", "b", "c"}) || got[0].LSN != got[2].LSN {
		t.Fatalf("batch in the change feed: %+v", got)
	}

	// All or nothing: the conflict on "a" undoes the upsert before it.
	batch = c.NewTransactionalBatch(azcosmos.NewPartitionKeyString("p"))
	batch.UpsertItem(doc("x", 1), nil)
	batch.CreateItem(doc("a", 9), nil)
	batch.DeleteItem("b", nil)
	resp, err = c.ExecuteTransactionalBatch(ctx, batch, &azcosmos.TransactionalBatchOptions{EnableContentResponseOnWrite: true})
	if err != nil {
		t.Fatal(err)
	}
	codes = codes[:0]
	for _, r := range resp.OperationResults {
		codes = append(codes, r.StatusCode)
	}
	if resp.Success || resp.RawResponse.StatusCode != http.StatusMultiStatus || !slices.Equal(codes, []int32{424, 409, 424}) {
		t.Fatalf("failed batch: success %v status %d, statuses %v", resp.Success, resp.RawResponse.StatusCode, codes)
	}
	if _, err := c.ReadItem(ctx, azcosmos.NewPartitionKeyString("p"), "x", nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("the failed batch's upsert stayed: %v", err)
	}
	if _, err := c.ReadItem(ctx, azcosmos.NewPartitionKeyString("p"), "b", nil); err != nil {
		t.Fatalf("the failed batch's delete stayed: %v", err)
	}
	if got, _ := drain(t, c, azcosmos.ChangeFeedOptions{Continuation: &tok}); len(got) != 3 {
		t.Fatalf("the failed batch shows in the change feed: %v", ids(got))
	}

	// One logical partition: a document of another one fails the batch.
	batch = c.NewTransactionalBatch(azcosmos.NewPartitionKeyString("p"))
	other, _ := json.Marshal(item{ID: "o", PK: "q"})
	batch.CreateItem(other, nil)
	resp, err = c.ExecuteTransactionalBatch(ctx, batch, nil)
	if err != nil || resp.Success || resp.OperationResults[0].StatusCode != http.StatusBadRequest {
		t.Fatalf("cross-partition batch: %v %+v", err, resp.OperationResults)
	}
	// At most 100 operations.
	batch = c.NewTransactionalBatch(azcosmos.NewPartitionKeyString("p"))
	for i := 0; i < 101; i++ {
		batch.ReadItem("a", nil)
	}
	if _, err := c.ExecuteTransactionalBatch(ctx, batch, nil); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("101 operations: %v, want 400", err)
	}
}

// Document ids as the service treats them: the restricted characters are
// accepted on write, "/" makes a document unaddressable by URL, trailing
// spaces and escaped characters round-trip, and the limit is 1,023 bytes.
func TestDocumentIDs(t *testing.T) {
	srv, client := newSDK(t)
	c := mkContainer(t, client, "app", "orders", 0)
	ctx := ctxT(t)
	pk := azcosmos.NewPartitionKeyString("p")
	create := func(id string) error {
		b, _ := json.Marshal(item{ID: id, PK: "p"})
		_, err := c.CreateItem(ctx, pk, b, nil)
		return err
	}
	// Addressable ids: written, read back by URL, replaced and deleted.
	for _, id := range []string{"trailing ", "  both  ", "hash#tag", "what?", `back\slash`, "50%off", "%2F", "ünïcødé", "tab\there",
		strings.Repeat("x", 1023)} {
		if err := create(id); err != nil {
			t.Errorf("create %q: %v", id, err)
			continue
		}
		r, err := c.ReadItem(ctx, pk, id, nil)
		var got item
		if err == nil {
			err = json.Unmarshal(r.Value, &got)
		}
		if err != nil || got.ID != id {
			t.Errorf("read %q: %q %v", id, got.ID, err)
		}
		if _, err := c.DeleteItem(ctx, pk, id, nil); err != nil {
			t.Errorf("delete %q: %v", id, err)
		}
	}
	// A trailing space is part of the id: "trailing" is another document.
	if err := create("trailing "); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadItem(ctx, pk, "trailing", nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf(`read "trailing" (the document is "trailing "): %v, want 404`, err)
	}
	// "/" is accepted on create, listed by queries, but not addressable.
	if err := create("a/b"); err != nil {
		t.Fatalf(`create "a/b": %v`, err)
	}
	if _, err := c.ReadItem(ctx, pk, "a/b", nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf(`read "a/b": %v, want 404`, err)
	}
	if _, err := c.DeleteItem(ctx, pk, "a/b", nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf(`delete "a/b": %v, want 404`, err)
	}
	page, err := c.NewQueryItemsPager("SELECT * FROM c WHERE c.id = 'a/b'", pk, nil).NextPage(ctx)
	if err != nil || len(page.Items) != 1 {
		t.Fatalf(`query for "a/b": %v %d items`, err, len(page.Items))
	}
	// Longer than 1,023 bytes, or empty: 400.
	for _, id := range []string{strings.Repeat("é", 512), ""} {
		if err := create(id); statusOf(err) != http.StatusBadRequest {
			t.Errorf("create an id of %d bytes: %v, want 400", len(id), err)
		}
	}
	// A path with an empty segment: 400, before anything else (net/http
	// itself answers 400 to a path that is not validly percent-encoded).
	if code, _, body := srv.Do(t, http.MethodGet, "/dbs/app/colls/orders/docs//x", http.Header{"x-ms-documentdb-partitionkey": {`["p"]`}}, nil); code != http.StatusBadRequest {
		t.Fatalf("empty segment: %d %s", code, body)
	}
}
