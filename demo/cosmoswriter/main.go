// Command cosmoswriter is the Cosmos demo's writer: it creates and updates
// order documents in a Cosmos DB container through azcosmos, a few per
// second, so that changecast has a change feed to stream.
//
//	COSMOS_CONNECTION_STRING='AccountEndpoint=…;AccountKey=…;' go run ./demo/cosmoswriter
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
)

func main() {
	db := flag.String("db", "app", "database")
	coll := flag.String("container", "orders", "container (partition key /tenant)")
	every := flag.Duration("every", 500*time.Millisecond, "pause between writes")
	flag.Parse()
	conn := os.Getenv("COSMOS_CONNECTION_STRING")
	if conn == "" {
		log.Fatal("set COSMOS_CONNECTION_STRING (changecast emulate cosmos prints it)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := azcosmos.NewClientFromConnectionString(conn, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	c, err := client.NewContainer(*db, *coll)
	if err != nil {
		log.Fatal(err)
	}
	statuses := []string{"new", "paid", "packed", "shipped", "delivered"}
	type order struct {
		ID      string  `json:"id"`
		Tenant  string  `json:"tenant"`
		Status  string  `json:"status"`
		Total   float64 `json:"total"`
		Items   int     `json:"items"`
		Deleted bool    `json:"_deleted,omitempty"`
	}
	var orders []*order
	for n := 0; ctx.Err() == nil; n++ {
		var o *order
		if len(orders) < 5 || rand.IntN(3) == 0 {
			o = &order{ID: fmt.Sprintf("o-%d", n), Tenant: fmt.Sprintf("t%d", rand.IntN(3)+1), Status: "new",
				Total: float64(rand.IntN(20000)) / 100, Items: rand.IntN(5) + 1}
			orders = append(orders, o)
		} else {
			i := rand.IntN(len(orders))
			o = orders[i]
			if o.Status == "delivered" {
				o.Deleted = true // a soft delete: changecast sends op delete
				orders = append(orders[:i], orders[i+1:]...)
			} else {
				for j, s := range statuses {
					if s == o.Status {
						o.Status = statuses[j+1]
						break
					}
				}
			}
		}
		body, _ := json.Marshal(o)
		if _, err := c.UpsertItem(ctx, azcosmos.NewPartitionKeyString(o.Tenant), body, nil); err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Printf("upsert %s: %v", o.ID, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(*every):
		}
	}
}
