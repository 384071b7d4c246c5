package cosmostest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/emulator/cosmos"
)

// logSize bounds the request log; tests that poll for seconds would
// otherwise keep every request.
const logSize = 1000

// Server is an emulator started for one test. The embedded *cosmos.Server
// gives the in-process controls (Split, Merge, Upsert, Delete, Inject,
// CreateContainer, PartitionKeyRanges, Key); Server adds what a test needs
// around them.
type Server struct {
	*cosmos.Server
	http *httptest.Server

	mu     sync.Mutex
	counts map[cosmos.Kind]int
	log    []RequestRecord
}

// Start serves a new emulator built with opts on a loopback httptest
// server that is closed when t ends. A bad option (a key that is not
// base64) fails the test.
func Start(t testing.TB, opts ...cosmos.Option) *Server {
	t.Helper()
	emu, err := cosmos.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Server: emu, counts: map[cosmos.Kind]int{}}
	s.http = httptest.NewServer(s.recording(emu.Handler()))
	t.Cleanup(s.http.Close)
	return s
}

// URL is the account endpoint, e.g. "http://127.0.0.1:41234/".
func (s *Server) URL() string { return s.http.URL + "/" }

// ConnectionString is "AccountEndpoint=…;AccountKey=…;", the form
// azcosmos.NewClientFromConnectionString and the other SDKs accept.
func (s *Server) ConnectionString() string {
	return "AccountEndpoint=" + s.URL() + ";AccountKey=" + s.Key() + ";"
}

// Client returns a new azcosmos client for the emulator with the master
// key, closed when t ends. Each client keeps its own routing caches, so a
// test that wants a cold client takes a new one.
func (s *Server) Client(t testing.TB) *azcosmos.Client {
	t.Helper()
	cred, err := azcosmos.NewKeyCredential(s.Key())
	if err != nil {
		t.Fatal(err)
	}
	c, err := azcosmos.NewClientWithKey(s.URL(), cred,
		&azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: s.http.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Do sends one master-key-signed request to the emulator, for calls no
// SDK sends as such (malformed ids, headers SDKs never write). It returns
// the status, the response headers and the body.
func (s *Server) Do(t testing.TB, method, path string, h http.Header, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if err := cosmos.SignRequest(req, s.Key(), time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := s.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// FailNext makes the next n requests of the given kinds (default: all but
// KindAccount) fail with status. A 429 carries x-ms-retry-after-ms: 10 and
// substatus 3200, as the service's throttling responses do, so SDK retries
// are quick. Inject scripts any other fault.
func (s *Server) FailNext(n, status int, kinds ...cosmos.Kind) {
	f := cosmos.Fault{Status: status, Count: n, Kinds: kinds}
	if status == http.StatusTooManyRequests {
		f.RetryAfter = 10 * time.Millisecond
		f.SubStatus = 3200
	}
	s.Inject(f)
}

// RequestRecord is one request the emulator answered.
type RequestRecord struct {
	Kind   cosmos.Kind
	Method string
	Path   string      // escaped, as sent
	Header http.Header // request headers, Authorization removed
	Status int
	// SubStatus is the x-ms-substatus the emulator answered, if any.
	SubStatus int
}

// Count returns how many requests of the given kinds (all kinds when none
// are given) arrived since Start or ResetCounts, including rejected and
// failed ones.
func (s *Server) Count(kinds ...cosmos.Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.counts {
		if len(kinds) == 0 || slices.Contains(kinds, k) {
			n += v
		}
	}
	return n
}

// Requests returns the most recent answered requests (up to 1000), oldest
// first, optionally only those of the given kinds. A request is logged
// before its response reaches the client, so once an SDK call returns
// every request it made is here.
func (s *Server) Requests(kinds ...cosmos.Kind) []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RequestRecord
	for _, r := range s.log {
		if len(kinds) == 0 || slices.Contains(kinds, r.Kind) {
			out = append(out, r)
		}
	}
	return out
}

// ResetCounts zeroes the counters behind Count and clears the request log.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = map[cosmos.Kind]int{}
	s.log = nil
}

// recording counts each gateway request when it arrives and logs it when
// its status is written. The /_admin/ routes are not Cosmos DB requests
// and are left out, as the emulator's own counters leave them out.
func (s *Server) recording(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_admin/") {
			next.ServeHTTP(w, r)
			return
		}
		kind := cosmos.KindOf(r)
		s.mu.Lock()
		s.counts[kind]++
		s.mu.Unlock()
		h := r.Header.Clone()
		h.Del("Authorization")
		rec := RequestRecord{Kind: kind, Method: r.Method, Path: r.URL.EscapedPath(), Header: h}
		lw := &logWriter{ResponseWriter: w, log: func(status int, hdr http.Header) {
			rec.Status = status
			rec.SubStatus, _ = strconv.Atoi(hdr.Get("x-ms-substatus"))
			s.append(rec)
		}}
		next.ServeHTTP(lw, r)
		if !lw.logged { // nothing written: net/http answers 200
			lw.logged = true
			lw.log(http.StatusOK, w.Header())
		}
	})
}

func (s *Server) append(rec RequestRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, rec)
	if len(s.log) > logSize {
		s.log = slices.Delete(s.log, 0, len(s.log)-logSize)
	}
}

// logWriter logs a request when its status is written, before any of the
// response is sent.
type logWriter struct {
	http.ResponseWriter
	log    func(status int, h http.Header)
	logged bool
}

func (w *logWriter) WriteHeader(status int) {
	if !w.logged {
		w.logged = true
		w.log(status, w.Header())
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *logWriter) Write(b []byte) (int, error) {
	if !w.logged {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}
