package testkit

import (
	"runtime"
	"testing"
)

// Allocated returns the bytes fn allocates (the heap's running total
// before and after it). Fuzz targets of parsers use it to check that a
// parser allocates in proportion to its input, never to a length or count
// the input declares; anything else running meanwhile counts too, so call
// it around pure functions.
func Allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// BoundedAlloc fails t when fn allocates more than perByte bytes for each
// of n input bytes plus fixed. fn must do the same work each call: it is
// measured up to three times and the least counts, since under go test
// -fuzz the fuzzing engine allocates beside it in the same process.
func BoundedAlloc(t testing.TB, n int, perByte, fixed uint64, fn func()) {
	t.Helper()
	limit := perByte*uint64(n) + fixed
	least := ^uint64(0)
	for range 3 {
		if least = min(least, Allocated(fn)); least <= limit {
			return
		}
	}
	t.Fatalf("%d bytes allocated for %d bytes of input (bound %d)", least, n, limit)
}
