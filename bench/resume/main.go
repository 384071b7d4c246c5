// Command resume measures what a reconnecting client costs: a client that
// missed -changes changes of its group catches up through GET
// {negotiate}/changes (the group's history), against reloading the group's
// snapshot (every page), in the same run: alternated, -rounds times each,
// the best of each compared. Then -clients clients that missed the same
// changes reconnect at once and catch up concurrently: p50, p99 and the
// slowest of their catch-ups.
//
// The clients run in this process with the worker (as separate machines
// would not): each decodes every envelope or document it reads in the
// ratio, and only the page framing in the concurrent part, so that the
// concurrent figure is the server's, not the bench's own JSON decoding.
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/resume
//
// Target (issue 10): p99 of the concurrent catch-up < 500 ms.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
)

func main() {
	docs := flag.Int("docs", 10000, "documents in the group")
	changes := flag.Int("changes", 10000, "changes the clients missed (updates of the group's documents, one per transaction)")
	clients := flag.Int("clients", 100, "clients reconnecting at once")
	rounds := flag.Int("rounds", 5, "measurements of catch-up and reload, alternated; the best counts")
	flag.Parse()
	ctx := context.Background()

	db := benchenv.Open()
	defer db.Close()
	db.Table("public.bench_resume", `id bigint PRIMARY KEY, tenant text NOT NULL, item text NOT NULL,
		qty int NOT NULL, total numeric(12,2) NOT NULL, status text NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now()`, "bench_resume")
	db.Must(`INSERT INTO bench_resume (id, tenant, item, qty, total, status)
		SELECT i, 'acme', 'item ' || i, i % 97, (i % 1000) * 1.25, 'open' FROM generate_series(1, $1::int) i`, *docs)
	db.Slot("bench_resume", false)
	w := db.StartWorker("public.bench_resume", "bench_resume", "bench_resume", "")
	defer w.Stop()

	// Where the client left: the group's position now.
	var first struct {
		Streams []struct {
			Group  string `json:"group"`
			Epoch  string `json:"epoch"`
			Offset uint64 `json:"offset"`
		} `json:"streams"`
	}
	getJSON(w, "/snapshot?hub=orders&group=tenant-acme&limit=1", &first)
	if len(first.Streams) != 1 || first.Streams[0].Group != "tenant-acme" {
		log.Fatalf("snapshot streams %+v, want tenant-acme's", first.Streams)
	}
	epoch, after := first.Streams[0].Epoch, first.Streams[0].Offset

	// What it missed: -changes updates, as an app writes them.
	start := time.Now()
	for i := range *changes {
		db.Must(`UPDATE bench_resume SET qty = qty + 1, status = $2, updated_at = now() WHERE id = $1`,
			1+i%*docs, "s"+strconv.Itoa(i))
	}
	var lsn string
	if err := db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		log.Fatal(err)
	}
	// Published (and so in the history) once the slot confirms it.
	for {
		var done bool
		if err := db.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'bench_resume'`, lsn).Scan(&done); err != nil {
			log.Fatal(err)
		}
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("wrote and published %d changes in %v\n", *changes, time.Since(start).Round(time.Millisecond))

	// catchUp reads every envelope after the client's offset and decodes
	// it whole, as a client applies it.
	catchUp := func() (envs, chg int) {
		for a := after; ; {
			var page struct {
				Envelopes []struct {
					Offset  uint64           `json:"offset"`
					Changes []map[string]any `json:"changes"`
				} `json:"envelopes"`
				More bool `json:"more"`
			}
			getJSON(w, changesPath(epoch, a), &page)
			for _, env := range page.Envelopes {
				chg += len(env.Changes)
				a = env.Offset
			}
			envs += len(page.Envelopes)
			if !page.More {
				return envs, chg
			}
		}
	}
	// fetch reads the same pages and only frames them: the last offset of
	// a page, and whether more follow (the response ends with "more").
	fetch := func() int64 {
		var size int64
		for a := after; ; {
			body := w.Read("acme", changesPath(epoch, a))
			size += int64(len(body))
			if !bytes.HasSuffix(bytes.TrimSpace(body), []byte(`"more":true}`)) {
				return size
			}
			i := bytes.LastIndex(body, []byte(`"offset":`))
			if i < 0 {
				log.Fatal("no offset in a page of /changes")
			}
			rest := body[i+len(`"offset":`):]
			n, err := strconv.ParseUint(string(rest[:bytes.IndexAny(rest, ",}")]), 10, 64)
			if err != nil {
				log.Fatalf("the last offset of a page of /changes: %v", err)
			}
			a = n
		}
	}
	reload := func() int {
		n, _ := w.Snapshot("acme", "tenant-acme")
		return n
	}

	envs, chg := catchUp()
	if chg < *changes {
		log.Fatalf("the history holds %d changes after the client's offset, want %d", chg, *changes)
	}
	if n := reload(); n != *docs {
		log.Fatalf("the snapshot holds %d documents, want %d", n, *docs)
	}
	var tCatch, tReload time.Duration
	for range *rounds {
		t := time.Now()
		catchUp()
		if e := time.Since(t); tCatch == 0 || e < tCatch {
			tCatch = e
		}
		t = time.Now()
		reload()
		if e := time.Since(t); tReload == 0 || e < tReload {
			tReload = e
		}
	}
	fmt.Printf("catch-up via /changes:  %d changes in %d envelopes, %v\n", chg, envs, tCatch.Round(time.Millisecond))
	fmt.Printf("reload via /snapshot:   %d documents, %v\n", *docs, tReload.Round(time.Millisecond))
	fmt.Printf("ratio catch-up/reload: %.2f (best of %d each, alternated)\n", tCatch.Seconds()/tReload.Seconds(), *rounds)

	// Everyone reconnects at once.
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = *clients
	size := fetch()
	times := make([]time.Duration, *clients)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			t := time.Now()
			fetch()
			times[i] = time.Since(t)
		}()
	}
	t := time.Now()
	close(gate)
	wg.Wait()
	all := time.Since(t)
	slices.Sort(times)
	q := func(p float64) time.Duration {
		return times[min(len(times)-1, int(p*float64(len(times))))].Round(time.Millisecond)
	}
	fmt.Printf("%d clients catching up %d changes (%.1f MB each) at once: p50 %v, p99 %v, slowest %v, all done in %v\n",
		*clients, chg, float64(size)/1e6, q(0.50), q(0.99), times[len(times)-1].Round(time.Millisecond), all.Round(time.Millisecond))
	fmt.Printf("ratio p99/target: %.2f (target p99 < 500 ms)\n", q(0.99).Seconds()/0.5)
}

func changesPath(epoch string, after uint64) string {
	return "/changes?hub=orders&group=tenant-acme&epoch=" + url.QueryEscape(epoch) + "&after=" + strconv.FormatUint(after, 10)
}

// getJSON reads path as a user of acme into v, or exits.
func getJSON(w *benchenv.Worker, path string, v any) {
	if err := json.Unmarshal(w.Read("acme", path), v); err != nil {
		log.Fatalf("GET %s: %v", path, err)
	}
}
