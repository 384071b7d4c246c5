package client_test

import (
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// TestClientSignalRMajors runs @changecast/client on each major of
// @microsoft/signalr its peer dependency admits (10 and 11, installed side
// by side in test/node as the aliases signalr10 and signalr11), on every
// transport and both hub protocols: WebSockets with JSON, Server-Sent
// Events with JSON, Long Polling with MessagePack
// (@microsoft/signalr-protocol-msgpack 10.0.11, the newest there is, also
// under 11). Users join while a writer changes rows; each replica must end
// equal to its tenant's rows, without a refetch.
func TestClientSignalRMajors(t *testing.T) {
	testkit.Postgres(t)
	testkit.NeedNode(t, "test/node", "signalr10", "signalr11", "@microsoft/signalr-protocol-msgpack")
	for _, major := range []string{"10", "11"} {
		t.Run("signalr"+major, func(t *testing.T) {
			dbURL := testkit.Database(t)
			db := testkit.Connect(t, dbURL)
			testkit.CreateWorkloadTables(t, db, false, "public.orders")
			base := startWorker(t, dbURL, "majors", "")
			w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
			if err := w.Run(db, 200); err != nil {
				t.Fatal(err)
			}

			tenants := []string{"t0", "t1", "t2", "t3"}
			var runs []*nodeClients
			for _, c := range [][2]string{{"WebSockets", "json"}, {"ServerSentEvents", "json"}, {"LongPolling", "messagepack"}} {
				// startClients passes the test's environment on to Node.
				t.Setenv("SIGNALR_PACKAGE", "signalr"+major)
				t.Setenv("SIGNALR_TRANSPORT", c[0])
				t.Setenv("SIGNALR_PROTOCOL", c[1])
				runs = append(runs, startClients(t, base, 4, tenants, 2*time.Second))
			}

			writeFor(t, w, db, 4*time.Second) // while they join
			for _, r := range runs {
				r.waitStarted(4, 30*time.Second)
			}
			writeFor(t, w, db, time.Second) // live changes for every client, however late it joined
			for i, r := range runs {
				var reports []clientReport
				testkit.Eventually(t, 30*time.Second, "every replica to equal its tenant's rows", func() string {
					reports = r.dump()
					return diffClients(t, reports, tenantRows(t, db))
				})
				for _, rep := range reports {
					if !strings.HasPrefix(rep.SignalR, major+".") {
						t.Errorf("run %d, client %d ran on @microsoft/signalr %q, want %s.x", i, rep.I, rep.SignalR, major)
					}
				}
				t.Logf("run %d (signalr %s): %s", i, reports[0].SignalR, checkReports(t, reports))
			}
		})
	}
}
