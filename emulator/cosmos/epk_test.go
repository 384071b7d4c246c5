package cosmos

import (
	"math"
	"testing"
)

// Baseline vectors published with the service's partition-key hashing
// (PartitionKeyHashBaselineTest, V2 column, unmasked).
func TestHashComponentV2Baseline(t *testing.T) {
	cases := []struct {
		name string
		in   any
		want string
	}{
		{"empty string", "", "B2E9366E637A71B4E710384B2F4970A0"},
		{"asdf", "asdf", "608BF1D598F5B63AD5520F04FE58C5E8"},
		{"undefined", pkUndefined{}, "51622DAA78F835834610ABE56EFF5CB5"},
		{"null", nil, "778867E4430E67857ACE5C908374FE16"},
		{"true", true, "4E711127C5B5A8E4726AC6DD306A3E59"},
		{"false", false, "EFE1BE91E90A3439635E0E9E37361EF2"},
		{"zero", 0.0, "555B95BEDAC4B1E9EC1CDC9BB0DDDE58"},
		{"negative zero", math.Copysign(0, -1), "3D018BB1DF3DB27235766E81FD10406E"},
		{"one", 1.0, "A0CD98B339BA78A5D0CF6953B87070B0"},
		{"minus one", -1.0, "59938E7A936C1C5B9E3AE842BBC16839"},
		{"max float", 1.7976931348623157e308, "71424D996457102634591FF245DBCC4D"},
		{"path1", "/path1", "B499FD5198AE0F1EB6B77F6E428D2FF0"},
	}
	for _, c := range cases {
		got, err := hashComponentV2(c.in)
		if err != nil || got != c.want {
			t.Errorf("%s: got %s, %v; want %s", c.name, got, err, c.want)
		}
	}
}
