// Command demoapp is the app server of `make demo`: it serves the live page
// (web/) and a login. The page gets its data from changecast alone: the
// tenant's orders from changecast's snapshot (GET {negotiate}/snapshot), each
// with its version, and the live changes from changecast's hub, both through
// @changecast/client. This is the shape of a real deployment: your app owns
// login, changecast owns the live copy of the data (no read API needed).
//
// Routes:
//
//	GET  /                          the page (web/index.html, app.js, style.css)
//	GET  /vendor/signalr.min.js     @microsoft/signalr's browser bundle (window.signalR)
//	GET  /vendor/@changecast/client/*.js
//	                                @changecast/client's ES modules (web/node_modules/@changecast/client,
//	                                a link to clients/js)
//	GET  /vendor/fast-json-patch/…  fast-json-patch's ES modules (index.mjs, module/*.mjs)
//	GET  /api/config                where the page negotiates ({negotiateURL, hub, tenants})
//	POST /api/login                 {"tenant":"acme"} → {"token","user","tenant"}: the demo's stand-in for a
//	                                login, an HS256 JWT with claims sub and tid, which changecast verifies
//	                                (hub.negotiate.auth.jwt) for negotiate and snapshots, granting group
//	                                tenant-{tid}
//
// It prints "demoapp: serving http://ADDR/" on stdout once it listens.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
	secret := os.Getenv("CHANGECAST_DEMO_SECRET")
	if len(secret) < 16 {
		log.Fatal("demoapp: set CHANGECAST_DEMO_SECRET (at least 16 bytes, the same as changecast's hub.negotiate.auth.jwt.hs256Secret)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *web, secret, config{NegotiateURL: *negotiate, Hub: *hub, Tenants: strings.Split(*tenants, ",")}); err != nil {
		log.Fatalf("demoapp: %v", err)
	}
}

type config struct {
	NegotiateURL string   `json:"negotiateURL"`
	Hub          string   `json:"hub"`
	Tenants      []string `json:"tenants"`
}

type app struct {
	secret []byte
	cfg    config
}

func run(ctx context.Context, listen, web, secret string, cfg config) error {
	mux, err := newMux(web, &app{secret: []byte(secret), cfg: cfg})
	if err != nil {
		return err
	}
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

// newMux serves the page from web and its packages from web/node_modules
// (installed by scripts/setup.sh: npm ci in clients/js, then in web).
func newMux(web string, a *app) (*http.ServeMux, error) {
	modules := filepath.Join(web, "node_modules")
	signalrDir := filepath.Join(modules, "@microsoft", "signalr", "dist", "browser")
	clientDir := filepath.Join(modules, "@changecast", "client")
	patchDir := filepath.Join(modules, "fast-json-patch")
	for _, p := range []string{filepath.Join(signalrDir, "signalr.min.js"), filepath.Join(clientDir, "index.js"), filepath.Join(patchDir, "index.mjs")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s is missing: run scripts/setup.sh (npm ci in clients/js, then in web/)", p)
		}
	}

	mux := http.NewServeMux()
	for _, f := range []string{"index.html", "app.js", "style.css"} {
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
	// @changecast/client's ES modules: the .js files its package.json
	// publishes (index.js imports ./replica.js).
	published, err := packageFiles(clientDir)
	if err != nil {
		return nil, err
	}
	mux.HandleFunc("GET /vendor/@changecast/client/{path...}", func(w http.ResponseWriter, r *http.Request) {
		p := r.PathValue("path")
		if !published(p) {
			http.NotFound(w, r)
			return
		}
		serveFile(w, r, filepath.Join(clientDir, filepath.FromSlash(p)))
	})
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
	return mux, nil
}

// packageFiles reads the "files" of the npm package in dir and returns
// whether a slash-separated path inside it is one of its ES modules (.js or
// .mjs) that the package publishes: a file listed, or one under a folder
// listed. Without "files", the package's top-level modules.
func packageFiles(dir string) (func(string) bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return nil, err
	}
	var pkg struct {
		Files []string `json:"files"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return nil, fmt.Errorf("%s/package.json: %w", dir, err)
	}
	return func(p string) bool {
		if !(strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".mjs")) || !fs.ValidPath(p) || strings.HasPrefix(p, "node_modules/") {
			return false
		}
		if pkg.Files == nil {
			return !strings.Contains(p, "/")
		}
		for _, f := range pkg.Files {
			f = strings.TrimPrefix(f, "./")
			if p == f || strings.HasPrefix(p, strings.TrimSuffix(f, "/")+"/") {
				return true
			}
		}
		return false
	}, nil
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
