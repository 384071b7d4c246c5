package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// maxWebhookAnswer bounds the app's answer.
const maxWebhookAnswer = 64 << 10

// webhookAuth asks the app who the caller is.
type webhookAuth struct {
	url      string
	timeout  time.Duration
	headers  []string
	cacheTTL time.Duration
	client   *http.Client
	log      *slog.Logger
	logged   *logLimiter

	mu    sync.Mutex
	cache map[[32]byte]webhookEntry
}

type webhookEntry struct {
	id      identity
	expires time.Time
}

func newWebhookAuth(c WebhookAuth, log *slog.Logger) *webhookAuth {
	w := &webhookAuth{url: c.URL, timeout: c.Timeout, headers: c.Headers, cacheTTL: c.CacheTTL, log: log, logged: newLogLimiter(time.Second),
		// No redirects: the credential goes to the configured URL only.
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if w.timeout == 0 {
		w.timeout = DefaultWebhookTimeout
	}
	if len(w.headers) == 0 {
		w.headers = DefaultWebhookHeaders
	}
	if w.cacheTTL > 0 {
		w.cache = map[[32]byte]webhookEntry{}
	}
	return w
}

// hasCredential says whether the caller sent any forwarded header.
func (w *webhookAuth) hasCredential(r *http.Request) bool {
	for _, h := range w.headers {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// cacheKey hashes the forwarded headers and the hub: callers with the
// same credential share an answer, no credential is kept in memory.
func (w *webhookAuth) cacheKey(r *http.Request, hub string) [32]byte {
	h := sha256.New()
	h.Write([]byte(hub))
	for _, name := range w.headers {
		for _, v := range r.Header.Values(name) {
			fmt.Fprintf(h, "\x00%s\x00%d:%s", name, len(v), v)
		}
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (w *webhookAuth) authenticate(ctx context.Context, r *http.Request, hub string) (*identity, error) {
	var key [32]byte
	if w.cache != nil {
		key = w.cacheKey(r, hub)
		w.mu.Lock()
		e, ok := w.cache[key]
		w.mu.Unlock()
		if ok && time.Now().Before(e.expires) {
			id := e.id
			return &id, nil
		}
	}
	id, ttl, err := w.call(ctx, r, hub)
	if ae := (*AuthError)(nil); errors.As(err, &ae) && ae.Status >= 500 {
		// The app is down or answers what negotiate cannot use: the
		// operator's problem, logged as a warning (once a second).
		if ok, dropped := w.logged.allow(ae.Code, time.Now()); ok {
			w.log.Warn("hub: negotiate: identity webhook failed", "url", redactURL(w.url), "err", ae.Err, "suppressed", dropped)
		}
	}
	if err != nil {
		return nil, err
	}
	if w.cache != nil {
		if ttl <= 0 || ttl > w.cacheTTL {
			ttl = w.cacheTTL
		}
		w.store(key, webhookEntry{id: *id, expires: time.Now().Add(ttl)})
	}
	return id, nil
}

// store keeps an answer; a full cache first drops its expired answers,
// and when none has expired, all of them (the app is asked again).
func (w *webhookAuth) store(key [32]byte, e webhookEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cache) >= webhookCacheEntries {
		now := time.Now()
		for k, old := range w.cache {
			if !now.Before(old.expires) {
				delete(w.cache, k)
			}
		}
		if len(w.cache) >= webhookCacheEntries {
			clear(w.cache)
		}
	}
	w.cache[key] = e
}

// call POSTs the caller's forwarded headers and {"hub"} to the app.
func (w *webhookAuth) call(ctx context.Context, r *http.Request, hub string) (*identity, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	body, _ := json.Marshal(struct {
		Hub string `json:"hub"`
	}{hub})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for _, name := range w.headers {
		for _, v := range r.Header.Values(name) {
			req.Header.Add(name, v)
		}
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, 0, &AuthError{Status: http.StatusServiceUnavailable, Code: "Error.Unavailable",
			Msg: "the app's identity webhook did not answer; try again", Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer+1))
	if err != nil {
		return nil, 0, &AuthError{Status: http.StatusServiceUnavailable, Code: "Error.Unavailable",
			Msg: "the app's identity webhook did not answer; try again", Err: err}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, 0, errors.New("the app's identity webhook answered 401")
	case http.StatusForbidden:
		return nil, 0, &AuthError{Status: http.StatusForbidden, Code: "Error.Forbidden", Msg: "forbidden",
			Err: errors.New("the app's identity webhook answered 403")}
	default:
		return nil, 0, badWebhook(fmt.Errorf("the app's identity webhook answered %s", resp.Status))
	}
	if len(b) > maxWebhookAnswer {
		return nil, 0, badWebhook(fmt.Errorf("the app's identity webhook answered over %d bytes", maxWebhookAnswer))
	}
	id, ttl, err := parseWebhookAnswer(b)
	if err != nil {
		return nil, 0, badWebhook(err)
	}
	return id, ttl, nil
}

// badWebhook is a webhook answer negotiate cannot use: the app's bug,
// 502 to the caller, the reason in the log.
func badWebhook(err error) error {
	return &AuthError{Status: http.StatusBadGateway, Code: "Error.BadGateway", Msg: "the app's identity webhook gave an answer negotiate cannot use", Err: err}
}

// parseWebhookAnswer reads {"userId", "groups", "claims", "ttl"}: userId
// is required, every group must be a valid group name, ttl is seconds
// the answer may be cached (0: the configured CacheTTL).
func parseWebhookAnswer(b []byte) (*identity, time.Duration, error) {
	var a struct {
		UserID *string        `json:"userId"`
		Groups []string       `json:"groups"`
		Claims map[string]any `json:"claims"`
		TTL    json.Number    `json:"ttl"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&a); err != nil {
		return nil, 0, fmt.Errorf("webhook answer: %w", err)
	}
	if a.UserID == nil || *a.UserID == "" {
		return nil, 0, errors.New("webhook answer: no userId")
	}
	if len(a.Groups) > maxWebhookGroups {
		return nil, 0, fmt.Errorf("webhook answer: over %d groups", maxWebhookGroups)
	}
	for _, g := range a.Groups {
		if !validGroup(g) {
			return nil, 0, fmt.Errorf("webhook answer: %q is not a valid group name", truncate(g, 64))
		}
	}
	var ttl time.Duration
	if a.TTL != "" {
		s, err := a.TTL.Float64()
		if err != nil || s < 0 || s > 365*24*3600 {
			return nil, 0, fmt.Errorf("webhook answer: ttl %q is not seconds", truncate(a.TTL.String(), 32))
		}
		ttl = time.Duration(s * float64(time.Second))
	}
	return &identity{user: *a.UserID, claims: a.Claims, groups: a.Groups}, ttl, nil
}

// maxWebhookGroups bounds the groups one answer may list.
const maxWebhookGroups = 1000
