package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/internal/testkit"
)

// TestEmulateCosmosServesTheSDK runs `changecast emulate cosmos` in-process
// on a real listener and drives it with azcosmos through the connection
// string it prints: writes, change feed, an admin-route split, and a clean
// exit on cancellation.
func TestEmulateCosmosServesTheSDK(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testkit.Buffer
	done := testkit.Go(t, func() error {
		code := cmdEmulate(ctx, []string{"cosmos", "--listen", "127.0.0.1:0", "--partitions", "2", "--partition-key", "/pk",
			"--region", "West Europe", "--consistency", "Eventual"}, &stdout, &stderr)
		if code != 0 {
			return fmt.Errorf("exit code %d, stderr %q", code, stderr.String())
		}
		return nil
	})
	t.Cleanup(cancel)

	connRE := regexp.MustCompile(`COSMOS_CONNECTION_STRING=(AccountEndpoint=(\S+?);AccountKey=\S+;)`)
	var m []string
	testkit.Eventually(t, 5*time.Second, "the connection string on stdout", func() string {
		if m = connRE.FindStringSubmatch(stdout.String()); m == nil {
			return fmt.Sprintf("stdout %q stderr %q", stdout.String(), stderr.String())
		}
		return ""
	})
	endpoint := m[2]
	client, err := azcosmos.NewClientFromConnectionString(m[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	c, _ := client.NewContainer("app", "orders") // created on first use
	for _, id := range []string{"a", "b", "c", "d"} {
		body, _ := json.Marshal(map[string]string{"id": id, "pk": "k-" + id})
		if _, err := c.UpsertItem(rctx, azcosmos.NewPartitionKeyString("k-"+id), body, nil); err != nil {
			t.Fatal(err)
		}
	}
	frs, err := c.ReadFeedRanges(rctx, nil)
	if err != nil || len(frs) != 2 {
		t.Fatalf("feed ranges: %v %v", frs, err)
	}
	all := azcosmos.FeedRange{MinInclusive: "", MaxExclusive: "FF"}
	read := func(opts azcosmos.ChangeFeedOptions) (n int, tok string) {
		for i := 0; i < 20; i++ {
			resp, err := c.ReadChangeFeed(rctx, &opts)
			if err != nil {
				t.Fatal(err)
			}
			tok = resp.ContinuationToken
			opts = azcosmos.ChangeFeedOptions{Continuation: &tok}
			if resp.RawResponse.StatusCode == http.StatusNotModified {
				return n, tok
			}
			n += len(resp.Items)
		}
		t.Fatal("no 304")
		return
	}
	// --region and --consistency are what the account read advertises.
	req, _ := http.NewRequest(http.MethodGet, endpoint, nil)
	key := m[1][strings.Index(m[1], "AccountKey=")+len("AccountKey=") : len(m[1])-1]
	if err := emulator.SignRequest(req, key, time.Now()); err != nil {
		t.Fatal(err)
	}
	acctResp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var acct struct {
		Readable []struct {
			Name string `json:"name"`
		} `json:"readableLocations"`
		Consistency struct {
			Level string `json:"defaultConsistencyLevel"`
		} `json:"userConsistencyPolicy"`
	}
	err = json.NewDecoder(acctResp.Body).Decode(&acct)
	acctResp.Body.Close()
	if err != nil || len(acct.Readable) != 1 || acct.Readable[0].Name != "West Europe" || acct.Consistency.Level != "Eventual" {
		t.Fatalf("account read: %+v %v", acct, err)
	}

	n, tok := read(azcosmos.ChangeFeedOptions{FeedRange: &all})
	if n != 4 {
		t.Fatalf("change feed from beginning: %d items", n)
	}

	resp, err := http.Post(endpoint+"_admin/split?db=app&coll=orders&range=0", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin split: %v %v", resp, err)
	}
	resp.Body.Close()
	body, _ := json.Marshal(map[string]string{"id": "e", "pk": "k-e"})
	if _, err := c.UpsertItem(rctx, azcosmos.NewPartitionKeyString("k-e"), body, nil); err != nil {
		t.Fatal(err)
	}
	n, tok = read(azcosmos.ChangeFeedOptions{Continuation: &tok})
	if n != 1 || strings.Count(tok, "minInclusive") != 3 {
		t.Fatalf("after split: %d items, token %s", n, tok)
	}

	cancel()
	if err := testkit.Recv(t, done, 10*time.Second, "the emulator to stop on cancel"); err != nil {
		t.Fatal(err)
	}
}

func TestEmulateRejectsBadUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cmdEmulate(context.Background(), nil, &out, &errb); code != 2 {
		t.Fatalf("no target: exit %d", code)
	}
	if code := cmdEmulate(context.Background(), []string{"cosmos", "--key", "not base64!"}, &out, &errb); code != 2 {
		t.Fatalf("bad key: exit %d", code)
	}
	errb.Reset()
	if code := cmdEmulate(context.Background(), []string{"cosmos", "--consistency", "Sometimes"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--consistency") {
		t.Fatalf("bad consistency: exit %d, %q", code, errb.String())
	}
}
