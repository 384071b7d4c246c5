package cosmos

import (
	"math"
	"slices"
	"testing"

	"github.com/changecast/changecast/lease"
)

// The service's published partition key hash baselines
// (PartitionKeyHashBaselineTest, version 2, before the top bits are
// cleared).
func TestHashV2Baseline(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{"", "B2E9366E637A71B4E710384B2F4970A0"},
		{"asdf", "608BF1D598F5B63AD5520F04FE58C5E8"},
		{"/path1", "B499FD5198AE0F1EB6B77F6E428D2FF0"},
		{nil, "778867E4430E67857ACE5C908374FE16"},
		{true, "4E711127C5B5A8E4726AC6DD306A3E59"},
		{false, "EFE1BE91E90A3439635E0E9E37361EF2"},
		{0.0, "555B95BEDAC4B1E9EC1CDC9BB0DDDE58"},
		{math.Copysign(0, -1), "3D018BB1DF3DB27235766E81FD10406E"},
		{1.0, "A0CD98B339BA78A5D0CF6953B87070B0"},
		{-1.0, "59938E7A936C1C5B9E3AE842BBC16839"},
		{math.MaxFloat64, "71424D996457102634591FF245DBCC4D"},
	}
	for _, c := range cases {
		if got, err := hashV2(c.in); err != nil || got != c.want {
			t.Errorf("hashV2(%#v) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	// Effective partition keys clear the top two bits.
	if got, _ := effectivePartitionKey("asdf"); got != "208BF1D598F5B63AD5520F04FE58C5E8" {
		t.Errorf("effectivePartitionKey(asdf) = %s", got)
	}
	if _, err := hashV2([]any{1}); err == nil {
		t.Error("an array has a hash")
	}
}

func TestEPKAfter(t *testing.T) {
	for in, want := range map[string]string{
		"208BF1D598F5B63AD5520F04FE58C5E8": "208BF1D598F5B63AD5520F04FE58C5E9",
		"0000000000000000000000000000FFFF": "00000000000000000000000000010000",
		"3FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF": "40000000000000000000000000000000",
	} {
		if got := epkAfter(in); got != want || compareEPK(in, got) >= 0 || compareEPK(got, "FF") >= 0 {
			t.Errorf("epkAfter(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestPKValues(t *testing.T) {
	for text, want := range map[string][]any{
		"acme":  {"acme"},
		"42":    {"42", 42.0},
		"-1.5":  {"-1.5", -1.5},
		"007":   {"007"}, // not a JSON number
		"true":  {"true", true},
		"True":  {"True"},
		"1e400": {"1e400"}, // out of range
		"":      {""},
	} {
		if got := pkValues(text); !slices.Equal(got, want) {
			t.Errorf("pkValues(%q) = %#v, want %#v", text, got, want)
		}
	}
}

func TestPublishedLSN(t *testing.T) {
	tok := func(min, max, etag string) string {
		return rangeToken("rid", lease.FeedRange{Min: min, Max: max}, &etag, nil).String()
	}
	ls := []*lease.Lease{
		{Range: lease.FeedRange{Min: "", Max: "80"}, Continuation: tok("", "80", `"12"`)},
		{Range: lease.FeedRange{Min: "80", Max: "FF"}, Continuation: tok("80", "FF", `"7"`)},
		{Range: lease.FeedRange{Partition: "x"}, Continuation: "0/0"}, // not a range lease
	}
	for _, c := range []struct {
		r    lease.FeedRange
		want int64
	}{
		{lease.FeedRange{Min: "", Max: "40"}, 12},
		{lease.FeedRange{Min: "10", Max: "11"}, 12},
		{lease.FeedRange{Min: "", Max: "FF"}, 7},
		{lease.FeedRange{Min: "90", Max: "FF"}, 7},
	} {
		if got := publishedLSN(ls, c.r); got != c.want {
			t.Errorf("publishedLSN(%v) = %d, want %d", c.r, got, c.want)
		}
	}
	// A part without a lease, or a lease without a position: unknown.
	if got := publishedLSN(ls[:1], lease.FeedRange{Min: "", Max: "FF"}); got != -1 {
		t.Errorf("half covered: %d", got)
	}
	fresh := []*lease.Lease{{Range: lease.FeedRange{Min: "", Max: "FF"}}}
	if got := publishedLSN(fresh, lease.FeedRange{Min: "", Max: "FF"}); got != -1 {
		t.Errorf("no checkpoint yet: %d", got)
	}
}
