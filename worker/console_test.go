package worker

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type readyFunc func() bool

func (f readyFunc) Ready() bool { return f() }

// TestConsoleServedOnlyWithAdminAPI: /console/ is the page when the admin
// API is on (server.adminToken), 404 when it is off.
func TestConsoleServedOnlyWithAdminAPI(t *testing.T) {
	adm := http.NotFoundHandler()
	for _, tc := range []struct {
		adm  http.Handler
		code int
	}{{nil, http.StatusNotFound}, {adm, http.StatusOK}} {
		h := opsHandler(prometheus.NewRegistry(), readyFunc(func() bool { return true }), tc.adm)
		for _, path := range []string{"/console/", "/console/console.js"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code != tc.code {
				t.Errorf("admin API %v: GET %s = %d, want %d", tc.adm != nil, path, rec.Code, tc.code)
			}
			if tc.code == 200 && path == "/console/" && !strings.Contains(rec.Body.String(), "<title>changecast console</title>") {
				t.Errorf("GET /console/ is not the console: %.200s", rec.Body.String())
			}
		}
	}
}
