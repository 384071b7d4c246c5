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

// The effective partition key (EPK) of a logical partition is where the
// service places it among the feed ranges: for a single-path "Hash"
// container with partition key version 2, the MurmurHash3 x64 128-bit hash
// of the value's binary encoding (a type marker, then the value), written
// most significant byte first with the top two bits cleared, as 32
// upper-case hex digits. Snapshots use it to read one logical partition's
// change feed from the one range that holds it (azcosmos v1.5.0 does not
// compute it for the change feed, and sends the partition key together with
// the range id of every range its feed range overlaps).

// Type markers of a partition key component in the version 2 encoding.
const (
	epkTypeNull   = 0x01
	epkTypeFalse  = 0x02
	epkTypeTrue   = 0x03
	epkTypeNumber = 0x05
	epkTypeString = 0x08
)

// hashV2 is the unmasked version 2 hash of one partition key value (a
// string, a float64, a bool or nil) as 32 upper-case hex digits, the form
// of the service's published baselines.
func hashV2(v any) (string, error) {
	var buf []byte
	switch x := v.(type) {
	case nil:
		buf = append(buf, epkTypeNull)
	case bool:
		if x {
			buf = append(buf, epkTypeTrue)
		} else {
			buf = append(buf, epkTypeFalse)
		}
	case float64:
		buf = append(buf, epkTypeNumber)
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(x))
	case string:
		if !utf8.ValidString(x) {
			return "", fmt.Errorf("cosmos: partition key %q is not valid UTF-8", x)
		}
		buf = append(buf, epkTypeString)
		buf = append(buf, x...)
		buf = append(buf, 0xFF)
	default:
		return "", fmt.Errorf("cosmos: a partition key value of type %T has no hash", v)
	}
	lo, hi := murmur3x64x128(buf)
	// The 128-bit result is a little-endian integer (lo, then hi), written
	// most significant byte first.
	var out [16]byte
	binary.BigEndian.PutUint64(out[:8], hi)
	binary.BigEndian.PutUint64(out[8:], lo)
	return strings.ToUpper(hex.EncodeToString(out[:])), nil
}

// effectivePartitionKey is the EPK of a single-path version 2 partition
// key value.
func effectivePartitionKey(v any) (string, error) {
	h, err := hashV2(v)
	if err != nil {
		return "", err
	}
	b, _ := hex.DecodeString(h)
	b[0] &= 0x3F
	return strings.ToUpper(hex.EncodeToString(b)), nil
}

// epkAfter is the EPK right after epk (a 32-digit hash), so [epk,
// epkAfter(epk)) is the feed range of exactly that logical partition.
func epkAfter(epk string) string {
	n, ok := new(big.Int).SetString(epk, 16)
	if !ok {
		return epk + "00" // not a hash: any larger boundary will do
	}
	return fmt.Sprintf("%032X", n.Add(n, big.NewInt(1)))
}

// murmur3x64x128 is MurmurHash3's x64 128-bit variant with seed 0 (Austin
// Appleby's public-domain algorithm).
func murmur3x64x128(data []byte) (h1, h2 uint64) {
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	n := len(data)
	for len(data) >= 16 {
		k1 := binary.LittleEndian.Uint64(data)
		k2 := binary.LittleEndian.Uint64(data[8:])
		data = data[16:]
		h1 ^= bits.RotateLeft64(k1*c1, 31) * c2
		h1 = (bits.RotateLeft64(h1, 27)+h2)*5 + 0x52dce729
		h2 ^= bits.RotateLeft64(k2*c2, 33) * c1
		h2 = (bits.RotateLeft64(h2, 31)+h1)*5 + 0x38495ab5
	}
	var k1, k2 uint64
	for i := len(data) - 1; i >= 8; i-- {
		k2 = k2<<8 | uint64(data[i])
	}
	for i := min(len(data), 8) - 1; i >= 0; i-- {
		k1 = k1<<8 | uint64(data[i])
	}
	if len(data) > 8 {
		h2 ^= bits.RotateLeft64(k2*c2, 33) * c1
	}
	if len(data) > 0 {
		h1 ^= bits.RotateLeft64(k1*c1, 31) * c2
	}
	h1 ^= uint64(n)
	h2 ^= uint64(n)
	h1 += h2
	h2 += h1
	h1, h2 = fmix64(h1), fmix64(h2)
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
