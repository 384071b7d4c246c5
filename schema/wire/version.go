package wire

import "strings"

// CompareVersions orders two document versions ("1842", "23456789.3"):
// dot-separated decimal integers compared segment by segment as numbers
// (without parsing them, so 64-bit LSNs and longer never overflow). It
// returns -1, 0 or +1. A missing segment counts as smaller.
func CompareVersions(a, b string) int {
	for {
		as, arest, amore := strings.Cut(a, ".")
		bs, brest, bmore := strings.Cut(b, ".")
		as = strings.TrimLeft(as, "0")
		bs = strings.TrimLeft(bs, "0")
		switch {
		case len(as) < len(bs):
			return -1
		case len(as) > len(bs):
			return 1
		case as < bs:
			return -1
		case as > bs:
			return 1
		}
		switch {
		case !amore && !bmore:
			return 0
		case !amore:
			return -1
		case !bmore:
			return 1
		}
		a, b = arest, brest
	}
}
