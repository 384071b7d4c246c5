package signalr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/publish"
)

const (
	// apiVersion is what Microsoft.Azure.SignalR.Management sends.
	apiVersion = "2022-06-01"
	// tokenAPIVersion is the first version with :generateToken.
	tokenAPIVersion = "2023-07-01"
	// EntraScope is the scope of Microsoft Entra ID tokens for the service.
	EntraScope = "https://signalr.azure.com/.default"
	// MaxBodyBytes is Azure SignalR's REST body limit (1 MB); a bigger
	// body gets 413.
	MaxBodyBytes = 1 << 20
	// restTokenTTL is the lifetime of the access-key JWT on each REST call;
	// short because a fresh one is signed per call.
	restTokenTTL = 5 * time.Minute
)

// Option configures a Client or a Publisher.
type Option func(*options)

type options struct {
	http    *http.Client
	log     *slog.Logger
	cred    azcore.TokenCredential
	maxBody int
}

// WithHTTPClient sets the HTTP client of REST calls (default: one with a 30 s
// timeout).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.http = c } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithCredential sets the Entra ID credential used with AuthType=azure
// (default azidentity.DefaultAzureCredential).
func WithCredential(c azcore.TokenCredential) Option { return func(o *options) { o.cred = c } }

// WithMaxBodyBytes sets the largest send body tried before a batch is
// refused as too large without a call (default MaxBodyBytes).
func WithMaxBodyBytes(n int) Option { return func(o *options) { o.maxBody = n } }

// Client calls the data-plane REST API (2022-06-01 routes) of Azure SignalR
// Service or of changecast's built-in hub. It is safe for concurrent use.
// Errors are classified for publish: publish.Retryable for 429, 5xx and
// network failures (with the Retry-After the service gave), publish.TooLarge
// for 413, publish.Permanent for other 4xx.
type Client struct {
	cs   ConnectionString
	o    options
	key  []byte
	cred azcore.TokenCredential

	// tokens keeps the access-key JWT of each URL for half its lifetime:
	// signing one per call cost an HMAC and a kilobyte of garbage per
	// call here, and as much again to verify on the service's side.
	tokMu  sync.Mutex
	tokens map[string]signedToken
}

// signedToken is a JWT and when to stop using it.
type signedToken struct {
	tok   string
	until time.Time
}

// maxCachedTokens bounds Client.tokens (one per group or user URL); past
// it the cache starts over.
const maxCachedTokens = 4096

// NewClient parses connString and returns a client for it.
func NewClient(connString string, opts ...Option) (*Client, error) {
	cs, err := ParseConnectionString(connString)
	if err != nil {
		return nil, err
	}
	o := options{
		http:    &http.Client{Timeout: 30 * time.Second},
		log:     slog.Default(),
		maxBody: MaxBodyBytes,
	}
	for _, f := range opts {
		f(&o)
	}
	c := &Client{cs: cs, o: o, key: []byte(cs.AccessKey), cred: o.cred}
	if cs.AuthType == "azure" && c.cred == nil {
		c.cred, err = azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("signalr: AuthType=azure: %w", err)
		}
	}
	return c, nil
}

// ConnectionString is what the client was built from.
func (c *Client) ConnectionString() ConnectionString { return c.cs }

// ClientURL is the URL clients connect to for hub (what negotiate returns).
func (c *Client) ClientURL(hub string) string {
	return c.cs.ClientEndpoint + "/client/?hub=" + url.QueryEscape(strings.ToLower(hub))
}

// ClientToken returns an access token for a client of hub, carrying user
// (may be empty) as asrs.s.uid. With an access key it is signed locally;
// with AuthType=azure the service mints it (POST :generateToken).
func (c *Client) ClientToken(ctx context.Context, hub, user string, ttl time.Duration) (string, error) {
	if c.cred == nil {
		return SignAccessToken(c.cs.AccessKey, c.ClientURL(hub), user, ttl, time.Now())
	}
	q := url.Values{"api-version": {tokenAPIVersion}, "minutesToExpire": {strconv.Itoa(max(1, int(ttl/time.Minute)))}}
	if user != "" {
		q.Set("userId", user)
	}
	var out struct {
		Token string `json:"token"`
	}
	path, err := hubPath(hub, ":generateToken")
	if err != nil {
		return "", err
	}
	if err := c.do(ctx, http.MethodPost, path, q, nil, http.StatusOK, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// SignAccessToken signs an access-key JWT (HS256 over the key's UTF-8 bytes)
// for audience aud, as the Azure SignalR SDKs do.
func SignAccessToken(accessKey, aud, user string, ttl time.Duration, now time.Time) (string, error) {
	claims := jwt.MapClaims{"aud": aud, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix()}
	if user != "" {
		claims["asrs.s.uid"] = user
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(accessKey))
}

// AddUserToGroup adds user to group; the membership outlives the user's
// connections, for ttl rounded up to whole seconds (sent as ?ttl=), or with
// ttl 0 for the service's longest (Azure: a year; ttl=0 on the wire would
// instead add only the user's open connections).
func (c *Client) AddUserToGroup(ctx context.Context, hub, group, user string, ttl time.Duration) error {
	var q url.Values
	if ttl > 0 {
		q = url.Values{"ttl": {strconv.FormatInt(int64((ttl+time.Second-1)/time.Second), 10)}}
	}
	return c.call(ctx, http.MethodPut, q, http.StatusOK, hub, "", "users", user, "groups", group)
}

// RemoveUserFromGroup removes user from group.
func (c *Client) RemoveUserFromGroup(ctx context.Context, hub, group, user string) error {
	return c.call(ctx, http.MethodDelete, nil, http.StatusNoContent, hub, "", "users", user, "groups", group)
}

// RemoveUserFromAllGroups removes user from every group of hub.
func (c *Client) RemoveUserFromAllGroups(ctx context.Context, hub, user string) error {
	return c.call(ctx, http.MethodDelete, nil, http.StatusNoContent, hub, "", "users", user, "groups")
}

// AddConnectionToGroup adds one connection to group until it disconnects.
func (c *Client) AddConnectionToGroup(ctx context.Context, hub, group, connectionID string) error {
	return c.call(ctx, http.MethodPut, nil, http.StatusOK, hub, "", "groups", group, "connections", connectionID)
}

// RemoveConnectionFromGroup removes one connection from group.
func (c *Client) RemoveConnectionFromGroup(ctx context.Context, hub, group, connectionID string) error {
	return c.call(ctx, http.MethodDelete, nil, http.StatusOK, hub, "", "groups", group, "connections", connectionID)
}

// CloseConnection closes one client connection; reason reaches the client.
func (c *Client) CloseConnection(ctx context.Context, hub, connectionID, reason string) error {
	var q url.Values
	if reason != "" {
		q = url.Values{"reason": {reason}}
	}
	return c.call(ctx, http.MethodDelete, q, http.StatusOK, hub, "", "connections", connectionID)
}

// UserInGroup reports whether user is in group.
func (c *Client) UserInGroup(ctx context.Context, hub, group, user string) (bool, error) {
	return c.exists(ctx, hub, "users", user, "groups", group)
}

// GroupExists reports whether group has any connection.
func (c *Client) GroupExists(ctx context.Context, hub, group string) (bool, error) {
	return c.exists(ctx, hub, "groups", group)
}

// UserExists reports whether user has any connection.
func (c *Client) UserExists(ctx context.Context, hub, user string) (bool, error) {
	return c.exists(ctx, hub, "users", user)
}

// ConnectionExists reports whether the connection is open.
func (c *Client) ConnectionExists(ctx context.Context, hub, connectionID string) (bool, error) {
	return c.exists(ctx, hub, "connections", connectionID)
}

func (c *Client) exists(ctx context.Context, hub string, segs ...string) (bool, error) {
	err := c.call(ctx, http.MethodHead, nil, http.StatusOK, hub, "", segs...)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// call makes a body-less call to hubPath(hub, action, segs...).
func (c *Client) call(ctx context.Context, method string, q url.Values, want int, hub, action string, segs ...string) error {
	path, err := hubPath(hub, action, segs...)
	if err != nil {
		return err
	}
	return c.do(ctx, method, path, q, nil, want, nil)
}

// Send invokes method on the clients of t (the whole hub, a group or a user,
// as publish.Target says) with args, one REST call.
func (c *Client) Send(ctx context.Context, t publish.Audience, args ...json.RawMessage) error {
	body, err := sendBody(t.Method, args)
	if err != nil {
		return publish.Permanent(err)
	}
	if len(body) > c.o.maxBody {
		return publish.TooLarge(fmt.Errorf("signalr: send to %s: body of %d bytes is over the %d-byte limit", t, len(body), c.o.maxBody))
	}
	path, err := sendPath(t)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, nil, body, http.StatusAccepted, nil)
}

// sendBody is the REST send body {"target":m,"arguments":[...]}, built
// around the already-encoded arguments so they are never re-encoded.
func sendBody(method string, args []json.RawMessage) ([]byte, error) {
	if method == "" {
		return nil, errors.New("signalr: send: no target method")
	}
	m, _ := json.Marshal(method)
	n := len(m) + 28
	for _, a := range args {
		n += len(a) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"target":`...)
	b = append(b, m...)
	b = append(b, `,"arguments":[`...)
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		if len(a) == 0 {
			a = json.RawMessage("null")
		}
		b = append(b, a...)
	}
	return append(b, "]}"...), nil
}

func sendPath(t publish.Audience) (string, error) {
	switch {
	case t.Group != "":
		return hubPath(t.Hub, ":send", "groups", t.Group)
	case t.User != "":
		return hubPath(t.Hub, ":send", "users", t.User)
	}
	return hubPath(t.Hub, ":send")
}

// hubPath is /api/hubs/{hub}/{seg}.../{action}: the hub lower-cased as the
// SDKs do (the service matches it case-insensitively), every segment
// escaped whole (ids may hold '/', '?', '#', ':' or be "..", and must never
// turn into other routes), then the action (":send"), when not empty, as
// is. Empty ids are refused: they would address another route.
func hubPath(hub, action string, segs ...string) (string, error) {
	var b strings.Builder
	b.WriteString("/api/hubs")
	for _, s := range append([]string{strings.ToLower(hub)}, segs...) {
		if s == "" {
			return "", publish.Permanent(fmt.Errorf("signalr: empty hub, group, user or connection id in a call to hub %q", hub))
		}
		b.WriteByte('/')
		b.WriteString(escapeSegment(s))
	}
	if action != "" {
		b.WriteByte('/')
		b.WriteString(action)
	}
	return b.String(), nil
}

// escapeSegment escapes s as one path segment: url.PathEscape, plus ':'
// (a segment starting with it reads as an action) and the dot segments
// that paths normalise away.
func escapeSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
}

// StatusError is an unexpected HTTP status from the service.
type StatusError struct {
	Method, Path string
	Status       int
	Code         string // x-ms-error-code, when given
	Message      string // the service's message, when given
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("signalr: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, want int, out any) error {
	if q == nil {
		q = url.Values{}
	}
	if q.Get("api-version") == "" {
		q.Set("api-version", apiVersion)
	}
	u := c.cs.ServerEndpoint + path
	req, err := http.NewRequestWithContext(ctx, method, u+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return publish.Permanent(fmt.Errorf("signalr: %s %s: %w", method, path, err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	auth, err := c.authorization(ctx, u)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	resp, err := c.o.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return publish.Retryable(fmt.Errorf("signalr: %s %s: %w", method, path, err), 0)
	}
	defer resp.Body.Close()
	// Only the status the API defines for the call is success: another 2xx
	// means the call did something else (e.g. 200 where 202 is due).
	if resp.StatusCode == want {
		if out != nil {
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
				return publish.Retryable(fmt.Errorf("signalr: %s %s: decode answer: %w", method, path, err), 0)
			}
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	se := &StatusError{Method: method, Path: path, Status: resp.StatusCode, Code: resp.Header.Get("x-ms-error-code")}
	var detail struct {
		Message string `json:"message"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&detail) == nil {
		se.Message = detail.Message
	}
	return classify(se, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
}

// classify maps a status to the behaviour publish's callers act on. A 500
// on a send may mean "timed out but delivered"; it is retried anyway since
// clients drop versions they already hold, and a lost batch is worse than
// a duplicate.
func classify(se *StatusError, after time.Duration) error {
	switch s := se.Status; {
	case s/100 == 2:
		return publish.Permanent(se) // not the status the call defines
	case s == http.StatusRequestEntityTooLarge:
		return publish.TooLarge(se)
	case s == http.StatusTooManyRequests, s == http.StatusRequestTimeout, s >= 500:
		return publish.Retryable(se, after)
	case s >= 400:
		return publish.Permanent(se)
	}
	return publish.Retryable(se, after) // 1xx/3xx: unexpected, try again
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// authorization is the Authorization header of a call to u: an access-key
// JWT whose aud is the URL without query (what the docs specify), or an
// Entra ID token.
func (c *Client) authorization(ctx context.Context, u string) (string, error) {
	if c.cred != nil {
		tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{EntraScope}})
		if err != nil {
			return "", publish.Retryable(fmt.Errorf("signalr: get Entra ID token: %w", err), 0)
		}
		return "Bearer " + tok.Token, nil
	}
	now := time.Now()
	c.tokMu.Lock()
	if t, ok := c.tokens[u]; ok && now.Before(t.until) {
		c.tokMu.Unlock()
		return t.tok, nil
	}
	c.tokMu.Unlock()
	tok, err := SignAccessToken(c.cs.AccessKey, u, "", restTokenTTL, now)
	if err != nil {
		return "", publish.Permanent(fmt.Errorf("signalr: sign token: %w", err))
	}
	tok = "Bearer " + tok
	c.tokMu.Lock()
	if c.tokens == nil || len(c.tokens) >= maxCachedTokens {
		c.tokens = map[string]signedToken{}
	}
	c.tokens[u] = signedToken{tok: tok, until: now.Add(restTokenTTL / 2)}
	c.tokMu.Unlock()
	return tok, nil
}
