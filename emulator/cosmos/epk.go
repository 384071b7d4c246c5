package cosmos

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strings"
	"unicode/utf8"
)

// Effective partition keys (EPKs) are how Cosmos DB places a logical
// partition key on a physical partition key range. The emulator computes the
// real V2 hash so that a document lands in the same range a real account
// with the same range boundaries would use; SDK code that computes EPKs on
// the client (azcosmos ReadManyItems, .NET/Java query routing) therefore
// agrees with the emulator.

// epkMax is the exclusive upper bound of the whole EPK space, as the
// service writes it in pkranges.
const epkMax = "FF"

// epkHashSpace is the exclusive upper bound of routable V2 hashes: the top
// two bits of every V2 hash are cleared, so values stay below 0x40…0.
var epkHashSpace = new(big.Int).Lsh(big.NewInt(1), 126)

// pkUndefined marks a partition key component that the document does not
// have (the service hashes it as the "undefined" type).
type pkUndefined struct{}

// Partition-key component type markers used when hashing (V2 layout).
const (
	pkTypeUndefined = 0x00
	pkTypeNull      = 0x01
	pkTypeFalse     = 0x02
	pkTypeTrue      = 0x03
	pkTypeNumber    = 0x05
	pkTypeString    = 0x08
)

// hashComponentV2 returns the unmasked 16-byte V2 hash of one partition key
// component, as upper-case hex (the form the service's baselines use).
func hashComponentV2(v any) (string, error) {
	var buf []byte
	switch x := v.(type) {
	case pkUndefined:
		buf = append(buf, pkTypeUndefined)
	case nil:
		buf = append(buf, pkTypeNull)
	case bool:
		if x {
			buf = append(buf, pkTypeTrue)
		} else {
			buf = append(buf, pkTypeFalse)
		}
	case float64:
		buf = append(buf, pkTypeNumber)
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(x))
	case string:
		if !utf8.ValidString(x) {
			return "", fmt.Errorf("partition key string is not valid UTF-8")
		}
		buf = append(buf, pkTypeString)
		buf = append(buf, x...)
		buf = append(buf, 0xFF)
	default:
		return "", fmt.Errorf("partition key component of type %T is not supported", v)
	}
	h1, h2 := murmur3x64_128(buf, 0)
	// The service treats the 128-bit result as a little-endian UInt128 and
	// writes it most-significant byte first.
	var out [16]byte
	binary.BigEndian.PutUint64(out[0:8], h2)
	binary.BigEndian.PutUint64(out[8:16], h1)
	return strings.ToUpper(hex.EncodeToString(out[:])), nil
}

// effectivePartitionKey returns the routing EPK of a partition key value
// (one component per partition key path). Each component is hashed on its
// own and the results are concatenated, which covers both single-path
// ("Hash") and hierarchical ("MultiHash") containers. The top two bits of
// each hash are cleared, as the service does for routing.
func effectivePartitionKey(components []any) (string, error) {
	var sb strings.Builder
	for _, c := range components {
		h, err := hashComponentV2(c)
		if err != nil {
			return "", err
		}
		b, _ := hex.DecodeString(h)
		b[0] &= 0x3F
		sb.WriteString(strings.ToUpper(hex.EncodeToString(b)))
	}
	return sb.String(), nil
}

// compareEPK orders two EPK hex strings. Shorter strings compare as if
// padded with zeros, so "" == "00" and "05" == "0500"; "FF" sorts after
// every routable hash.
func compareEPK(a, b string) int {
	a, b = strings.ToUpper(a), strings.ToUpper(b)
	n := max(len(a), len(b))
	a += strings.Repeat("0", n-len(a))
	b += strings.Repeat("0", n-len(b))
	return strings.Compare(a, b)
}

// epkInRange reports whether epk lies in [minInclusive, maxExclusive).
func epkInRange(epk, minInclusive, maxExclusive string) bool {
	return compareEPK(minInclusive, epk) <= 0 && compareEPK(epk, maxExclusive) < 0
}

// epkToInt parses an EPK boundary into the 128-bit hash space. "FF" (and
// anything at or beyond the routable space) maps to epkHashSpace.
func epkToInt(s string) *big.Int {
	if compareEPK(s, epkMax) >= 0 {
		return new(big.Int).Set(epkHashSpace)
	}
	s = strings.ToUpper(s)
	if len(s) > 32 {
		s = s[:32]
	}
	s += strings.Repeat("0", 32-len(s))
	v, ok := new(big.Int).SetString(s, 16)
	if !ok || v.Cmp(epkHashSpace) > 0 {
		return new(big.Int).Set(epkHashSpace)
	}
	return v
}

// intToEPK formats a point of the hash space as a 32-digit upper-case
// boundary; 0 is "" and the end of the space is "FF", as in real pkranges.
func intToEPK(v *big.Int) string {
	if v.Sign() == 0 {
		return ""
	}
	if v.Cmp(epkHashSpace) >= 0 {
		return epkMax
	}
	return fmt.Sprintf("%032X", v)
}

// initialBoundaries splits the EPK space into n contiguous ranges of equal
// hash width and returns their n+1 boundaries, from "" to "FF".
func initialBoundaries(n int) []string {
	if n < 1 {
		n = 1
	}
	out := make([]string, n+1)
	step := new(big.Int).Div(epkHashSpace, big.NewInt(int64(n)))
	for i := 0; i <= n; i++ {
		if i == n {
			out[i] = epkMax
			continue
		}
		out[i] = intToEPK(new(big.Int).Mul(step, big.NewInt(int64(i))))
	}
	return out
}

// splitPoint returns the boundary that halves [minInclusive, maxExclusive)
// by hash width, or an error when the range cannot be split further.
func splitPoint(minInclusive, maxExclusive string) (string, error) {
	lo, hi := epkToInt(minInclusive), epkToInt(maxExclusive)
	mid := new(big.Int).Add(lo, hi)
	mid.Rsh(mid, 1)
	if mid.Cmp(lo) <= 0 || mid.Cmp(hi) >= 0 {
		return "", fmt.Errorf("range [%q,%q) is too narrow to split", minInclusive, maxExclusive)
	}
	return intToEPK(mid), nil
}

// murmur3x64_128 is MurmurHash3's x64 128-bit variant (public domain
// algorithm by Austin Appleby), which the service uses for V2 hashing.
func murmur3x64_128(data []byte, seed uint64) (h1, h2 uint64) {
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	h1, h2 = seed, seed
	n := len(data)
	nblocks := n / 16
	for i := 0; i < nblocks; i++ {
		k1 := binary.LittleEndian.Uint64(data[i*16:])
		k2 := binary.LittleEndian.Uint64(data[i*16+8:])
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}
	tail := data[nblocks*16:]
	var k1, k2 uint64
	for i := len(tail) - 1; i >= 8; i-- {
		k2 ^= uint64(tail[i]) << (8 * (i - 8))
	}
	if len(tail) > 8 {
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
	}
	for i := min(len(tail), 8) - 1; i >= 0; i-- {
		k1 ^= uint64(tail[i]) << (8 * i)
	}
	if len(tail) > 0 {
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
	}
	h1 ^= uint64(n)
	h2 ^= uint64(n)
	h1 += h2
	h2 += h1
	h1 = fmix64(h1)
	h2 = fmix64(h2)
	h1 += h2
	h2 += h1
	return h1, h2
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
