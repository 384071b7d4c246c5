package cosmos

import (
	"testing"
	"time"

	"github.com/changecast/changecast/lease"
)

func ptr(s string) *string { return &s }

func TestResumeFor(t *testing.T) {
	full := lease.FeedRange{Min: "", Max: "FF"}
	left := lease.FeedRange{Min: "", Max: "7F"}
	right := lease.FeedRange{Min: "7F", Max: "FF"}
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	twoEntries := token{Version: 1, ResourceID: "rid", Continuation: []tokenRange{
		{Min: "7F", Max: "FF", ETag: ptr(`"9"`)}, {Min: "", Max: "7F", ETag: ptr(`"12"`)}}}.String()
	tests := []struct {
		name      string
		cont      string
		r         lease.FeedRange
		def       Start
		etag      string // "" for none
		startFrom bool
		err       bool
	}{
		{name: "empty, default now", r: full, etag: "*"},
		{name: "empty, beginning", r: full, def: Start{Kind: StartBeginning}},
		{name: "empty, time", r: full, def: Start{Kind: StartTime, Time: at}, startFrom: true},
		{name: "bare etag (.NET)", cont: `"42"`, r: full, etag: `"42"`},
		{name: "single entry", cont: rangeToken("rid", full, ptr(`"5"`), nil).String(), r: full, etag: `"5"`},
		{name: "parent token, child range", cont: rangeToken("rid", full, ptr(`"5"`), nil).String(), r: right, etag: `"5"`},
		{name: "split token, left child", cont: twoEntries, r: left, etag: `"12"`},
		{name: "split token, right child", cont: twoEntries, r: right, etag: `"9"`},
		{name: "split token, whole range takes the oldest", cont: twoEntries, r: full, etag: `"9"`},
		{name: "beginning token", cont: rangeToken("rid", full, nil, nil).String(), r: right},
		{name: "time token", cont: rangeToken("rid", full, nil, &at).String(), r: left, startFrom: true},
		{name: "other container", cont: rangeToken("other", full, ptr(`"5"`), nil).String(), r: full, err: true},
		{name: "not covering", cont: rangeToken("rid", left, ptr(`"5"`), nil).String(), r: right, err: true},
		{name: "garbage", cont: "{nope", r: full, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := resumeFor(tc.cont, tc.r, "rid", tc.def)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			got := ""
			if rs.etag != nil {
				got = *rs.etag
			}
			if got != tc.etag || (rs.startFrom != nil) != tc.startFrom {
				t.Fatalf("resume = etag %q startFrom %v", got, rs.startFrom)
			}
			opts := rs.options("rid", tc.r, 10)
			switch {
			case rs.etag != nil && opts.Continuation == nil:
				t.Fatal("an ETag must be sent as a composite token, never bare")
			case rs.etag == nil && (opts.FeedRange == nil || opts.Continuation != nil):
				t.Fatal("a start without ETag must read by FeedRange")
			case tc.startFrom != (opts.StartFrom != nil):
				t.Fatal("StartFrom mismatch")
			}
		})
	}
}

func TestSessionLSN(t *testing.T) {
	for in, want := range map[string]int64{
		"0:-1#12345": 12345, "0:-1#12345#Region1=1#Region2=2": 12345, "0:-1#5,1:-1#9": 9,
	} {
		if got, ok := sessionLSN(in); !ok || got != want {
			t.Errorf("sessionLSN(%q) = %d %v, want %d", in, got, ok, want)
		}
	}
	if _, ok := sessionLSN(""); ok {
		t.Error("empty session token parsed")
	}
}

func TestTokenLSN(t *testing.T) {
	full := lease.FeedRange{Min: "", Max: "FF"}
	at := time.Now()
	for _, tc := range []struct {
		cont string
		lsn  int64
		ok   bool
	}{
		{rangeToken("r", full, ptr(`"7"`), nil).String(), 7, true},
		{rangeToken("r", full, nil, nil).String(), 0, true},
		{rangeToken("r", full, nil, &at).String(), 0, false},
		{rangeToken("r", full, ptr("*"), nil).String(), 0, false},
		{`"3"`, 3, true},
	} {
		if n, ok := tokenLSN(tc.cont); n != tc.lsn || ok != tc.ok {
			t.Errorf("tokenLSN(%s) = %d %v", tc.cont, n, ok)
		}
	}
}

func TestEPK(t *testing.T) {
	if compareEPK("", "00") != 0 || compareEPK("7F", "7F00") != 0 || compareEPK("05C1", "0BFF") >= 0 {
		t.Fatal("compareEPK")
	}
	if !overlaps("", "7F", "7E", "FF") || overlaps("", "7F", "7F", "FF") || !overlaps("", "", "10", "20") {
		t.Fatal("overlaps")
	}
}
