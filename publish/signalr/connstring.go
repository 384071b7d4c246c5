package signalr

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// ConnectionString is a parsed Azure SignalR connection string:
//
//	Endpoint=https://x.service.signalr.net;AccessKey=...;Version=1.0;
//	Endpoint=https://x.service.signalr.net;AuthType=azure;Version=1.0;
//	Endpoint=http://127.0.0.1;Port=8080;AccessKey=...;Version=1.0;   (the built-in hub)
type ConnectionString struct {
	// Endpoint is the service URL with Port applied and no trailing slash.
	Endpoint string
	// ServerEndpoint is where REST calls go; Endpoint when not given.
	ServerEndpoint string
	// ClientEndpoint is the URL handed to clients; Endpoint when not given.
	ClientEndpoint string
	// AccessKey signs tokens (HS256 over its UTF-8 bytes); empty with AuthType.
	AccessKey string
	// AuthType is "" (access key) or "azure" (Microsoft Entra ID through
	// DefaultAzureCredential).
	AuthType string
	Version  string
}

var versionRe = regexp.MustCompile(`^1\.\d+(?:[\w.-]+)?$`)

// ParseConnectionString parses s by the rules of the Azure SignalR SDK:
// `;`-separated key=value pairs, keys case-insensitive, values trimmed,
// duplicate keys refused. Errors never quote the AccessKey.
func ParseConnectionString(s string) (ConnectionString, error) {
	kv := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			// The part is not shown: it may be a piece of the key.
			return ConnectionString{}, errors.New("connection string: a part is not key=value")
		}
		if _, dup := kv[k]; dup {
			return ConnectionString{}, fmt.Errorf("connection string: %s is given twice", k)
		}
		kv[k] = strings.TrimSpace(v)
	}
	if len(kv) < 2 {
		return ConnectionString{}, errors.New("connection string: expected Endpoint=...;AccessKey=...;Version=1.0;")
	}
	var cs ConnectionString
	ep, err := parseEndpoint("Endpoint", kv["endpoint"])
	if err != nil {
		return cs, err
	}
	if p, ok := kv["port"]; ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return cs, fmt.Errorf("connection string: Port %q is not 1-65535", p)
		}
		ep.Host = ep.Hostname() + ":" + p
		if strings.Contains(ep.Hostname(), ":") { // IPv6 literal
			ep.Host = "[" + ep.Hostname() + "]:" + p
		}
	}
	cs.Endpoint = strings.TrimRight(ep.String(), "/")
	cs.ServerEndpoint, cs.ClientEndpoint = cs.Endpoint, cs.Endpoint
	for _, k := range []struct {
		key, name string
		dst       *string
	}{{"serverendpoint", "ServerEndpoint", &cs.ServerEndpoint}, {"clientendpoint", "ClientEndpoint", &cs.ClientEndpoint}} {
		if v, ok := kv[k.key]; ok {
			u, err := parseEndpoint(k.name, v)
			if err != nil {
				return cs, err
			}
			*k.dst = strings.TrimRight(u.String(), "/")
		}
	}
	if v, ok := kv["version"]; ok && !versionRe.MatchString(v) {
		return cs, fmt.Errorf("connection string: Version %q is not 1.x", v)
	}
	cs.Version = kv["version"]
	cs.AccessKey = kv["accesskey"]
	switch at := strings.ToLower(kv["authtype"]); at {
	case "":
		if cs.AccessKey == "" {
			return cs, errors.New("connection string: AccessKey is required unless AuthType=azure")
		}
	case "azure":
		cs.AuthType = at
	default:
		return cs, fmt.Errorf("connection string: AuthType %q is not supported (use azure, or an AccessKey)", kv["authtype"])
	}
	return cs, nil
}

func parseEndpoint(name, v string) (*url.URL, error) {
	if v == "" {
		return nil, fmt.Errorf("connection string: %s is required", name)
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("connection string: %s %q is not an http(s) URL", name, v)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// String renders the connection string back (with the AccessKey: do not log it).
func (cs ConnectionString) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Endpoint=%s;", cs.Endpoint)
	if cs.AccessKey != "" {
		fmt.Fprintf(&b, "AccessKey=%s;", cs.AccessKey)
	}
	if cs.AuthType != "" {
		fmt.Fprintf(&b, "AuthType=%s;", cs.AuthType)
	}
	if cs.ClientEndpoint != cs.Endpoint {
		fmt.Fprintf(&b, "ClientEndpoint=%s;", cs.ClientEndpoint)
	}
	if cs.ServerEndpoint != cs.Endpoint {
		fmt.Fprintf(&b, "ServerEndpoint=%s;", cs.ServerEndpoint)
	}
	v := cs.Version
	if v == "" {
		v = "1.0"
	}
	fmt.Fprintf(&b, "Version=%s;", v)
	return b.String()
}
