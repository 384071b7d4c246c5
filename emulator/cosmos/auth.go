package cosmos

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxClockSkew is how far x-ms-date may be from the gateway's clock. The
// service documents a 15 minute allowance.
const maxClockSkew = 15 * time.Minute

// masterSignature computes the master-key signature of a request: an
// HMAC-SHA256 over lower(verb), lower(resource type), the resource link
// (case kept), lower(x-ms-date) and an empty Date line, each followed by
// "\n" (REST "Access control" reference).
func masterSignature(key []byte, verb, resType, resLink, date string) string {
	s := strings.ToLower(verb) + "\n" + strings.ToLower(resType) + "\n" + resLink + "\n" + strings.ToLower(date) + "\n" + "" + "\n"
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// authToken is a parsed Authorization header.
type authToken struct {
	typ string // "master", "aad" or "resource"
	ver string
	sig string
}

// parseAuthorization accepts both the URL-encoded form that key clients
// send (type%3Dmaster%26ver%3D1.0%26sig%3D…) and the plain form that AAD
// clients send (type=aad&ver=1.0&sig=…).
func parseAuthorization(v string) (authToken, error) {
	if v == "" {
		return authToken{}, errors.New("required Authorization header is missing")
	}
	if dec, err := url.QueryUnescape(v); err == nil && strings.Contains(dec, "type=") {
		v = dec
	}
	var t authToken
	for _, part := range strings.Split(v, "&") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "type":
			t.typ = strings.ToLower(val)
		case "ver":
			t.ver = val
		case "sig":
			t.sig = val
		}
	}
	if t.typ == "" || t.sig == "" {
		return authToken{}, errors.New("the authorization header is malformed")
	}
	return t, nil
}

// authRequest decides whether a request is authorised. It returns a
// message for the 401 body when not.
func authRequest(key []byte, allowAAD bool, now time.Time, method string, rt route, h http.Header) error {
	tok, err := parseAuthorization(h.Get("Authorization"))
	if err != nil {
		return err
	}
	date := h.Get(hdrDate)
	if date == "" {
		date = h.Get("Date")
	}
	if date == "" {
		return errors.New("the request has no x-ms-date header")
	}
	t, err := http.ParseTime(date)
	if err != nil {
		return errors.New("the x-ms-date header is not a valid HTTP date")
	}
	if d := now.Sub(t); d > maxClockSkew || d < -maxClockSkew {
		return errors.New("the authorization token is not valid at the current time")
	}
	switch tok.typ {
	case "aad":
		if allowAAD {
			return nil
		}
		return errors.New("AAD tokens are not accepted by this gateway (enable them with WithAllowAAD)")
	case "master":
		want := masterSignature(key, method, rt.resType, rt.resLink, date)
		if hmac.Equal([]byte(want), []byte(tok.sig)) {
			return nil
		}
		// Clients that address resources by _rid lower-case the link
		// before signing.
		alt := masterSignature(key, method, rt.resType, strings.ToLower(rt.resLink), date)
		if hmac.Equal([]byte(alt), []byte(tok.sig)) {
			return nil
		}
		return errors.New("the input authorization token can't serve the request: the MAC signature found in the HTTP request is not the same as the computed signature")
	default:
		return errors.New("authorization type " + tok.typ + " is not supported")
	}
}

// SignRequest signs r with the master key as the SDKs do: it sets x-ms-date
// to now and Authorization to the master-key signature of r's method and
// path. Tests use it for requests that no SDK call sends as such.
func SignRequest(r *http.Request, key string, now time.Time) error {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return err
	}
	rt := classify(r.Method, r.URL.EscapedPath(), r.Header)
	date := now.UTC().Format(http.TimeFormat)
	r.Header.Set(hdrDate, date)
	sig := masterSignature(k, r.Method, rt.resType, rt.resLink, date)
	r.Header.Set("Authorization", url.QueryEscape("type=master&ver=1.0&sig="+sig))
	return nil
}
