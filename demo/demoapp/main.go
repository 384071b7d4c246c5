// Command demoapp is the app server of `make demo`: it serves the live page
// (web/) and the read API the page loads orders from, while changecast's
// built-in hub sends the page the live changes. This is the shape of a real
// deployment: your app owns login and data, changecast owns live updates.
//
// Routes:
//
//	GET  /                    the page (web/index.html, app.js, style.css, changecast.js)
//	GET  /vendor/...          @microsoft/signalr's browser bundle and fast-json-patch, from web/node_modules
//	GET  /api/config          where the page negotiates ({negotiateURL, hub, tenants})
//	POST /api/login           {"tenant":"acme"} → {"token","user","tenant"}: the demo's stand-in for a
//	                          login, an HS256 JWT with claims sub and tid, which changecast's negotiate
//	                          verifies (hub.negotiate.auth.jwt) to join the user to group tenant-{tid}
//	GET  /api/orders          the caller's tenant's orders (Authorization: Bearer token)
//	GET  /api/orders/{id}     one order of the caller's tenant, or 404
//
// It prints "demoapp: serving http://ADDR/" on stdout once it listens.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Issuer and Audience of the tokens /api/login mints; demo/demo.yaml
// requires both.
const (
	Issuer   = "changecast-demo"
	Audience = "changecast-demo"
)

var tenantRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve the page and the API on (port 0: any free port)")
	web := flag.String("web", "web", "folder of the page; its node_modules must be installed (scripts/setup.sh)")
	negotiate := flag.String("negotiate", "http://127.0.0.1:8080/api", "changecast's app negotiate base URL (withUrl takes it)")
	hub := flag.String("hub", "orders", "hub name the page connects to")
	tenants := flag.String("tenants", "acme,globex", "tenants offered on the page")
	flag.Parse()
	db := os.Getenv("CHANGECAST_PG_URL")
	secret := os.Getenv("CHANGECAST_DEMO_SECRET")
	if db == "" || len(secret) < 16 {
		log.Fatal("demoapp: set CHANGECAST_PG_URL and CHANGECAST_DEMO_SECRET (at least 16 bytes, the same as changecast's hub.negotiate.auth.jwt.hs256Secret)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *web, db, secret, config{NegotiateURL: *negotiate, Hub: *hub, Tenants: strings.Split(*tenants, ",")}); err != nil {
		log.Fatalf("demoapp: %v", err)
	}
}

type config struct {
	NegotiateURL string   `json:"negotiateURL"`
	Hub          string   `json:"hub"`
	Tenants      []string `json:"tenants"`
}

type app struct {
	db     *pgxpool.Pool
	secret []byte
	cfg    config
}

func run(ctx context.Context, listen, web, dbURL, secret string, cfg config) error {
	signalrDir := filepath.Join(web, "node_modules", "@microsoft", "signalr", "dist", "browser")
	patchDir := filepath.Join(web, "node_modules", "fast-json-patch")
	for _, p := range []string{filepath.Join(signalrDir, "signalr.min.js"), filepath.Join(patchDir, "index.mjs")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing: run scripts/setup.sh (npm ci in web/)", p)
		}
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	a := &app{db: pool, secret: []byte(secret), cfg: cfg}

	mux := http.NewServeMux()
	for _, f := range []string{"index.html", "app.js", "style.css", "changecast.js"} {
		path := filepath.Join(web, f)
		route := "GET /" + f
		if f == "index.html" {
			route = "GET /{$}"
		}
		mux.HandleFunc(route, func(w http.ResponseWriter, r *http.Request) { serveFile(w, r, path) })
	}
	for _, f := range []string{"signalr.min.js", "signalr.min.js.map"} {
		path := filepath.Join(signalrDir, f)
		mux.HandleFunc("GET /vendor/"+f, func(w http.ResponseWriter, r *http.Request) { serveFile(w, r, path) })
	}
	// fast-json-patch's ES modules: index.mjs and module/*.mjs only.
	mux.HandleFunc("GET /vendor/fast-json-patch/{path...}", func(w http.ResponseWriter, r *http.Request) {
		p := r.PathValue("path")
		if p != "index.mjs" && !(strings.HasPrefix(p, "module/") && strings.HasSuffix(p, ".mjs") && !strings.Contains(p, "..")) {
			http.NotFound(w, r)
			return
		}
		serveFile(w, r, filepath.Join(patchDir, filepath.FromSlash(p)))
	})
	mux.HandleFunc("GET /api/config", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.cfg) })
	mux.HandleFunc("POST /api/login", a.login)
	mux.HandleFunc("GET /api/orders", a.orders)
	mux.HandleFunc("GET /api/orders/{id}", a.order)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set another address with -listen)", listen, err)
	}
	fmt.Printf("demoapp: serving http://%s/\n", ln.Addr())
	srv := &http.Server{Handler: logRequests(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func serveFile(w http.ResponseWriter, r *http.Request, path string) {
	w.Header().Set("Cache-Control", "no-cache")
	if strings.HasSuffix(path, ".mjs") {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	}
	http.ServeFile(w, r, path)
}

func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("DEMOAPP_LOG") != "" {
			log.Printf("demoapp: %s %s", r.Method, r.URL)
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// login is the demo's stand-in for a real login: anyone gets a token for
// the tenant they ask for. A real app would check a password or SSO first.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tenant string `json:"tenant"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || !tenantRe.MatchString(req.Tenant) {
		writeError(w, http.StatusBadRequest, `send {"tenant":"acme"}`)
		return
	}
	user := fmt.Sprintf("demo-%s-%d", req.Tenant, time.Now().UnixNano()%1e6)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "tid": req.Tenant, "iss": Issuer, "aud": Audience,
		"iat": time.Now().Unix(), "exp": time.Now().Add(8 * time.Hour).Unix(),
	}).SignedString(a.secret)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok, "user": user, "tenant": req.Tenant})
}

// tenant returns the tenant of the request's bearer token.
func (a *app) tenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	claims := jwt.MapClaims{}
	if ok {
		_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return a.secret, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(Issuer), jwt.WithAudience(Audience), jwt.WithExpirationRequired())
		ok = err == nil
	}
	tid, _ := claims["tid"].(string)
	if !ok || tid == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "log in first (POST /api/login)")
		return "", false
	}
	return tid, true
}

// The columns the page sees: what demo/demo.yaml's mapping publishes (all
// but internal_note), encoded the way changecast encodes them.
const orderCols = `id, tenant, customer, ship_to, item, qty, status, total::float8, updated_at`

type order struct {
	ID        int64    `json:"id"`
	Tenant    string   `json:"tenant"`
	Customer  string   `json:"customer"`
	ShipTo    *string  `json:"ship_to"`
	Item      string   `json:"item"`
	Qty       int32    `json:"qty"`
	Status    string   `json:"status"`
	Total     *float64 `json:"total"`
	UpdatedAt string   `json:"updated_at"`
}

func scanOrder(row pgx.Row) (order, error) {
	var o order
	var ts time.Time
	err := row.Scan(&o.ID, &o.Tenant, &o.Customer, &o.ShipTo, &o.Item, &o.Qty, &o.Status, &o.Total, &ts)
	o.UpdatedAt = ts.UTC().Format(time.RFC3339Nano)
	return o, err
}

func (a *app) orders(w http.ResponseWriter, r *http.Request) {
	tid, ok := a.tenant(w, r)
	if !ok {
		return
	}
	rows, err := a.db.Query(r.Context(), `SELECT `+orderCols+` FROM public.orders WHERE tenant = $1 ORDER BY id`, tid)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	out := []order{}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *app) order(w http.ResponseWriter, r *http.Request) {
	tid, ok := a.tenant(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "no such order")
		return
	}
	o, err := scanOrder(a.db.QueryRow(r.Context(), `SELECT `+orderCols+` FROM public.orders WHERE tenant = $1 AND id = $2`, tid, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		writeError(w, http.StatusNotFound, "no such order")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, http.StatusOK, o)
	}
}
