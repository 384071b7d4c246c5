package client_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// TestDefaultIdentityDifferential: a table created the ordinary way
// (REPLICA IDENTITY DEFAULT) holds 1,500 rows before changecast starts; a
// writer then inserts, updates, deletes and moves rows between tenants,
// most of them rows changecast never saw, while clients of three tenants
// join at different moments and some drop their connections. Every
// replica must end equal to its tenant's rows, with nothing unroutable:
// the deletes and moves of rows changecast had not seen reach the groups
// that held them — by default because changecast makes the identity FULL,
// with replicaIdentity: keep because they go to the whole hub.
func TestDefaultIdentityDifferential(t *testing.T) {
	testkit.Postgres(t)
	t.Run("full", func(t *testing.T) { identityDifferential(t, "full") })
	t.Run("keep", func(t *testing.T) { identityDifferential(t, "keep") })
}

func identityDifferential(t *testing.T, identity string) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.CreateWorkloadTables(t, db, false, "public.orders")
	const existing = 1500
	testkit.Exec(t, db, fmt.Sprintf(`INSERT INTO orders (id, tenant, n, note, doc)
		SELECT g, 't' || (g %% 3), g, 'note ' || g, jsonb_build_object('k', g %% 10) FROM generate_series(1, %d) g`, existing))
	w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
	ids := make([]int, existing)
	for i := range ids {
		ids[i] = i + 1
	}
	w.Adopt("public.orders", ids...)

	ops := testkit.FreeAddr(t)
	base, _ := startWorkerAt(t, dbURL, "defident", testkit.FreeAddr(t), fmt.Sprintf("server: {listen: %q}\n", ops), "replicaIdentity: "+identity)
	var ident string
	db.QueryRow(context.Background(), `SELECT relreplident::text FROM pg_class WHERE oid = 'public.orders'::regclass`).Scan(&ident)
	if want := map[string]string{"full": "f", "keep": "d"}[identity]; ident != want {
		t.Fatalf("replica identity %q after start, want %q", ident, want)
	}

	tenants := []string{"t0", "t1", "t2"}
	const n = 9
	clients := startClients(t, base, n, tenants, 5*time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	drops := 0
write:
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			break write
		case <-tick.C:
			if err := w.Run(db, 4); err != nil {
				t.Fatal(err)
			}
			// A client drops about every second, away 0.5 to 2.5 s.
			if i%100 == 50 {
				clients.drop(rng.IntN(n), time.Duration(500+rng.IntN(2000))*time.Millisecond)
				drops++
			}
		}
	}
	clients.waitStarted(n, 30*time.Second)
	var reports []clientReport
	testkit.Eventually(t, 45*time.Second, "every replica to equal its tenant's rows", func() string {
		reports = clients.dump()
		return diffClients(t, reports, tenantRows(t, db))
	})
	t.Log(checkReports(t, reports), fmt.Sprintf("; %d drops", drops))
	if drops == 0 {
		t.Error("no client dropped its connection: the run did not exercise catch-up")
	}
	if got := metric(t, ops, "changecast_unroutable_total"); got != 0 {
		t.Errorf("changecast_unroutable_total = %v, want 0", got)
	}
	fallbacks := metric(t, ops, "changecast_route_fallback_total")
	if identity == "full" && fallbacks != 0 || identity == "keep" && fallbacks == 0 {
		t.Errorf("changecast_route_fallback_total = %v with replicaIdentity %s", fallbacks, identity)
	}
}

// metric reads one unlabelled metric from a worker's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s is not in /metrics", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
