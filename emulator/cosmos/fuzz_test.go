package cosmos

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseFeedTime: If-Modified-Since is outside bytes. Whatever it
// accepts must be a date that formats back to the same instant in both
// zone spellings it accepts.
func FuzzParseFeedTime(f *testing.F) {
	for _, s := range []string{"Mon, 07 Dec 2026 16:09:26 GMT", "Mon, 07 Dec 2026 16:09:26 UTC", "yesterday", "", " UTC", "Monday, 07-Dec-26 16:09:26 GMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseFeedTime(s)
		if err != nil {
			return
		}
		if tm.Location() != time.UTC {
			t.Fatalf("%q parsed to a non-UTC time %v", s, tm)
		}
		gmt := tm.Format(http.TimeFormat)
		for _, v := range []string{gmt, strings.TrimSuffix(gmt, "GMT") + "UTC"} {
			back, err := parseFeedTime(v)
			if err != nil || !back.Equal(tm.Truncate(time.Second)) {
				t.Fatalf("%q -> %v; %q -> %v, %v", s, tm, v, back, err)
			}
		}
	})
}
