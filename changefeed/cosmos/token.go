package cosmos

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/lease"
)

// token is azcosmos's composite continuation token. The SDK's type is
// unexported but its JSON is fixed (cosmos.md §1.2):
//
//	{"version":1,"resourceId":"<collRid>","continuation":[
//	  {"minInclusive":"","maxExclusive":"FF","continuationToken":"\"42\""}]}
//
// A lease's Continuation always holds such a token, never a bare ETag: the
// SDK silently ignores a bare ETag and reads from the beginning.
// StartFrom is ours: a range without an ETag is read from that time on its
// first read. The SDK ignores the field, so anything else reading the token
// starts from the beginning: more changes, never fewer.
type token struct {
	Version      int          `json:"version,omitempty"`
	ResourceID   string       `json:"resourceId"`
	Continuation []tokenRange `json:"continuation"`
	StartFrom    *time.Time   `json:"changecastStartFrom,omitempty"`
}

type tokenRange struct {
	Min  string  `json:"minInclusive"`
	Max  string  `json:"maxExclusive"`
	ETag *string `json:"continuationToken,omitempty"`
}

const tokenVersion = 1

// etagNow is the If-None-Match value that reads only changes made after the
// read (the service answers 304 with the current LSN as ETag).
const etagNow = "*"

func (t token) String() string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // strings and a time only
	}
	return string(b)
}

// rangeToken returns a single-range token for [min, max) at etag (nil: from
// the beginning, or from startFrom when set).
func rangeToken(rid string, r lease.FeedRange, etag *string, startFrom *time.Time) token {
	return token{Version: tokenVersion, ResourceID: rid, StartFrom: startFrom,
		Continuation: []tokenRange{{Min: r.Min, Max: r.Max, ETag: etag}}}
}

func parseToken(s string) (token, error) {
	var t token
	if err := json.Unmarshal([]byte(s), &t); err != nil {
		return t, fmt.Errorf("cosmos: continuation is not a composite continuation token: %w", err)
	}
	if len(t.Continuation) == 0 {
		return t, errors.New("cosmos: continuation token has no ranges")
	}
	return t, nil
}

// StartKind says where a feed range without a checkpoint starts.
type StartKind int

const (
	StartNow StartKind = iota
	StartBeginning
	StartTime
)

// Start is a parsed start position (source.cosmos.startFrom).
type Start struct {
	Kind StartKind
	Time time.Time // StartTime only
}

// ParseStart reads "beginning", "now" or an RFC 3339 time; "" means now.
func ParseStart(s string) (Start, error) {
	switch s {
	case "", "now":
		return Start{Kind: StartNow}, nil
	case "beginning":
		return Start{Kind: StartBeginning}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return Start{}, fmt.Errorf("cosmos: start %q is not beginning, now or an RFC 3339 time", s)
	}
	return Start{Kind: StartTime, Time: t.UTC()}, nil
}

func (s Start) String() string {
	switch s.Kind {
	case StartBeginning:
		return "beginning"
	case StartTime:
		return s.Time.Format(time.RFC3339)
	}
	return "now"
}

// resume is where one feed range is read from next.
type resume struct {
	etag      *string    // the range's ETag ("*" for now); nil: beginning or startFrom
	startFrom *time.Time // with etag nil: from this time
}

// resumeFor derives where lease range r resumes from a stored continuation
// cont. The stored token may cover more than r (a parent's token inherited
// by a split child) or several ranges (a read that found a split, a "now"
// anchor taken over a stale topology): r then resumes from the oldest
// position among the entries that overlap it, which can repeat changes but
// never skip one. A bare quoted ETag (as the .NET processor stores) is
// accepted too. "" yields def.
func resumeFor(cont string, r lease.FeedRange, rid string, def Start) (resume, error) {
	switch {
	case cont == "":
		switch def.Kind {
		case StartBeginning:
			return resume{}, nil
		case StartTime:
			t := def.Time
			return resume{startFrom: &t}, nil
		}
		now := etagNow
		return resume{etag: &now}, nil
	case strings.HasPrefix(cont, `"`):
		return resume{etag: &cont}, nil
	}
	t, err := parseToken(cont)
	if err != nil {
		return resume{}, err
	}
	if t.ResourceID != "" && rid != "" && t.ResourceID != rid {
		return resume{}, fmt.Errorf("cosmos: continuation is for container %q, not this container %q (dropped and re-created?); reset the checkpoints", t.ResourceID, rid)
	}
	var best *tokenRange
	for i := range t.Continuation {
		e := &t.Continuation[i]
		if !overlaps(e.Min, e.Max, r.Min, r.Max) {
			continue
		}
		if best == nil || older(e.ETag, best.ETag) {
			best = e
		}
	}
	if best == nil {
		return resume{}, fmt.Errorf("cosmos: continuation does not cover range [%s, %s)", r.Min, r.Max)
	}
	if best.ETag == nil {
		return resume{startFrom: t.StartFrom}, nil
	}
	return resume{etag: best.ETag}, nil
}

// older reports whether ETag a is an earlier position than b: nil (the
// beginning) is the earliest, "*" (now) the latest.
func older(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b != nil
	}
	la, oka := etagLSN(*a)
	lb, okb := etagLSN(*b)
	switch {
	case oka && okb:
		return la < lb
	case *b == etagNow:
		return *a != etagNow
	}
	return false
}

// options returns the read options for r from rs. StartFrom is set only
// here, on a range's first read: the SDK applies it to every sub-request,
// and the service may combine it with If-None-Match (cosmos.md §1.3).
func (rs resume) options(rid string, r lease.FeedRange, maxItems int) azcosmos.ChangeFeedOptions {
	opts := azcosmos.ChangeFeedOptions{MaxItemCount: int32(maxItems)}
	if rs.etag != nil {
		s := rangeToken(rid, r, rs.etag, nil).String()
		opts.Continuation = &s
		return opts
	}
	opts.FeedRange = &azcosmos.FeedRange{MinInclusive: r.Min, MaxExclusive: r.Max}
	if rs.startFrom != nil {
		t := *rs.startFrom
		opts.StartFrom = &t
	}
	return opts
}

// etagLSN parses a change feed ETag ("\"42\"") as an LSN.
func etagLSN(etag string) (int64, bool) {
	n, err := strconv.ParseInt(strings.Trim(etag, `"`), 10, 64)
	return n, err == nil && n >= 0
}

// tokenLSN is the oldest LSN of a stored continuation: what has been
// delivered for sure. ok is false when it is unknown ("now" not yet
// resolved, a time start) ; a start from the beginning is LSN 0.
func tokenLSN(cont string) (int64, bool) {
	if strings.HasPrefix(cont, `"`) {
		return etagLSN(cont)
	}
	t, err := parseToken(cont)
	if err != nil {
		return 0, false
	}
	var out int64 = -1
	for _, e := range t.Continuation {
		if e.ETag == nil {
			if t.StartFrom != nil {
				return 0, false
			}
			return 0, true
		}
		n, ok := etagLSN(*e.ETag)
		if !ok {
			return 0, false
		}
		if out < 0 || n < out {
			out = n
		}
	}
	return out, out >= 0
}

// sessionLSN parses the global LSN out of an x-ms-session-token such as
// "0:-1#12345" or "0:-1#12345#Region1=1" (the .NET estimator's format); a
// list of tokens ("0:…,1:…") yields the largest.
func sessionLSN(h string) (int64, bool) {
	var best int64 = -1
	for _, tok := range strings.Split(h, ",") {
		_, rest, ok := strings.Cut(strings.TrimSpace(tok), "#")
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '#'); i >= 0 {
			rest = rest[:i]
		}
		if n, err := strconv.ParseInt(rest, 10, 64); err == nil && n > best {
			best = n
		}
	}
	return best, best >= 0
}

// compareEPK compares effective partition key boundaries: uppercase hex
// strings where trailing zeros do not matter ("" == "00") and "" as a max
// means the end ("FF").
func compareEPK(a, b string) int {
	a, b = strings.ToUpper(a), strings.ToUpper(b)
	for len(a) < len(b) {
		a += "0"
	}
	for len(b) < len(a) {
		b += "0"
	}
	return strings.Compare(a, b)
}

func normMax(m string) string {
	if m == "" {
		return "FF"
	}
	return m
}

// overlaps reports whether [amin, amax) and [bmin, bmax) intersect.
func overlaps(amin, amax, bmin, bmax string) bool {
	return compareEPK(amin, normMax(bmax)) < 0 && compareEPK(bmin, normMax(amax)) < 0
}
