package signalr

import (
	"strings"
	"testing"
)

func TestParseConnectionString(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ConnectionString
		wantErr string
	}{
		{in: "Endpoint=https://x.service.signalr.net;AccessKey=k=;Version=1.0;",
			want: ConnectionString{Endpoint: "https://x.service.signalr.net", ServerEndpoint: "https://x.service.signalr.net", ClientEndpoint: "https://x.service.signalr.net", AccessKey: "k=", Version: "1.0"}},
		{in: " endpoint = http://localhost/ ; PORT=8888; accesskey=ABC;version=1.0",
			want: ConnectionString{Endpoint: "http://localhost:8888", ServerEndpoint: "http://localhost:8888", ClientEndpoint: "http://localhost:8888", AccessKey: "ABC", Version: "1.0"}},
		{in: "Endpoint=https://x.net;AuthType=azure;ClientEndpoint=https://edge.example/;Version=1.0",
			want: ConnectionString{Endpoint: "https://x.net", ServerEndpoint: "https://x.net", ClientEndpoint: "https://edge.example", AuthType: "azure", Version: "1.0"}},
		{in: "Endpoint=http://[::1];Port=9;AccessKey=a",
			want: ConnectionString{Endpoint: "http://[::1]:9", ServerEndpoint: "http://[::1]:9", ClientEndpoint: "http://[::1]:9", AccessKey: "a"}},
		{in: "Endpoint=https://x.net;AccessKey=secretvalue;AccessKey=b", wantErr: "given twice"},
		{in: "Endpoint=https://x.net", wantErr: "expected"},
		{in: "AccessKey=secretvalue;Version=1.0", wantErr: "Endpoint is required"},
		{in: "Endpoint=ftp://x;AccessKey=secretvalue", wantErr: "not an http(s) URL"},
		{in: "Endpoint=https://x.net;Port=70000;AccessKey=secretvalue", wantErr: "Port"},
		{in: "Endpoint=https://x.net;Version=2.0;AccessKey=secretvalue", wantErr: "Version"},
		{in: "Endpoint=https://x.net;Version=1.0", wantErr: "AccessKey is required"},
		{in: "Endpoint=https://x.net;AuthType=aad;Version=1.0", wantErr: "not supported"},
		{in: "Endpoint=https://x.net;secretvalue;Version=1.0", wantErr: "key=value"},
	} {
		got, err := ParseConnectionString(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secretvalue") {
				t.Errorf("%q: error leaks the key: %v", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParseConnectionString(got.String()); err != nil || again.Endpoint != got.Endpoint || again.AccessKey != got.AccessKey || again.ClientEndpoint != got.ClientEndpoint {
			t.Errorf("%q: String does not round-trip: %q", tc.in, got.String())
		}
	}
}
