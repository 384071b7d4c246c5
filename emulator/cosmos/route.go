package cosmos

import (
	"net/http"
	"net/url"
	"strings"
)

// Kind names a class of request, for counters, fault injection and the
// request log.
type Kind string

// Request kinds the gateway distinguishes.
const (
	KindAccount    Kind = "account"    // GET / (database account, region topology)
	KindDatabase   Kind = "database"   // create/read/delete/list/query databases
	KindContainer  Kind = "container"  // create/read/replace/delete/list containers
	KindPKRanges   Kind = "pkranges"   // GET …/pkranges
	KindChangeFeed Kind = "changefeed" // GET …/docs with A-IM: Incremental Feed
	KindReadFeed   Kind = "readfeed"   // GET …/docs without A-IM (list documents)
	KindQuery      Kind = "query"      // POST …/docs with a query header
	KindQueryPlan  Kind = "queryplan"  // POST …/docs with x-ms-cosmos-is-query-plan-request
	KindCreate     Kind = "create"     // POST …/docs
	KindUpsert     Kind = "upsert"     // POST …/docs with x-ms-documentdb-is-upsert: true
	KindRead       Kind = "read"       // GET …/docs/{id}
	KindReplace    Kind = "replace"    // PUT …/docs/{id}
	KindPatch      Kind = "patch"      // PATCH …/docs/{id}
	KindDelete     Kind = "delete"     // DELETE …/docs/{id}
	KindBatch      Kind = "batch"      // POST …/docs with x-ms-cosmos-is-batch-request
	KindOffer      Kind = "offer"      // GET/POST /offers, GET/PUT /offers/{id} (throughput)
	KindUnknown    Kind = "unknown"    // anything else (answered 400/404/405)
)

// Header names the gateway reads or writes. Go canonicalises them, so the
// spelling here only matters for readability.
const (
	hdrAIM                  = "A-IM"
	hdrActivityID           = "x-ms-activity-id"
	hdrAltContentPath       = "x-ms-alt-content-path"
	hdrContentPath          = "x-ms-content-path"
	hdrContinuation         = "x-ms-continuation"
	hdrDate                 = "x-ms-date"
	hdrEndEPK               = "x-ms-end-epk"
	hdrEnableCrossPart      = "x-ms-documentdb-query-enablecrosspartition"
	hdrGlobalLSN            = "x-ms-global-committed-lsn"
	hdrIsBatch              = "x-ms-cosmos-is-batch-request"
	hdrIsQuery              = "x-ms-documentdb-isquery"
	hdrIsQueryPlan          = "x-ms-cosmos-is-query-plan-request"
	hdrIsUpsert             = "x-ms-documentdb-is-upsert"
	hdrItemCount            = "x-ms-item-count"
	hdrLSN                  = "lsn"
	hdrMaxItemCount         = "x-ms-max-item-count"
	hdrPartitionKey         = "x-ms-documentdb-partitionkey"
	hdrPKRangeID            = "x-ms-documentdb-partitionkeyrangeid"
	hdrPrefer               = "Prefer"
	hdrPopulateQueryMetrics = "x-ms-documentdb-populatequerymetrics"
	hdrQueryMetrics         = "x-ms-documentdb-query-metrics"
	hdrPopulateIndexMetrics = "x-ms-cosmos-populateindexmetrics"
	hdrIndexUtilization     = "x-ms-cosmos-index-utilization"
	hdrQuery                = "x-ms-documentdb-query"
	hdrReadKeyType          = "x-ms-read-key-type"
	hdrRequestCharge        = "x-ms-request-charge"
	hdrRetryAfterMs         = "x-ms-retry-after-ms"
	hdrSessionToken         = "x-ms-session-token"
	hdrStartEPK             = "x-ms-start-epk"
	hdrSubStatus            = "x-ms-substatus"
	hdrGatewayVersion       = "x-ms-gatewayversion"
	hdrServiceVersion       = "x-ms-serviceversion"
	hdrSchemaVersion        = "x-ms-schemaversion"
	valIncrementalFeed      = "incremental feed"
	valPreferMinimal        = "return=minimal"
	contentTypeQuery        = "application/query+json"
	contentTypeJSON         = "application/json"
	readKeyTypeEPKRange     = "EffectivePartitionKeyRange"
)

// route is what a request addresses, decided from the method, the path
// and a few headers only (no state), so it is unit-testable.
type route struct {
	kind Kind
	// resType and resLink are the two path-derived inputs of the master-key
	// signature: the resource type segment and the resource link.
	resType string
	resLink string
	db      string
	coll    string
	doc     string
	offer   string
	// unaddressable marks a document URL whose id spans more than one path
	// segment once "%2F" is read as "/", as the gateway reads it.
	unaddressable bool
	// badPath marks a path that is not validly percent-encoded.
	badPath bool
	// shape is the number of path segments (0 = account).
	shape int
}

// splitPath turns an escaped URL path into unescaped segments. Splitting
// before unescaping keeps an escaped "/" inside one segment, where
// classify finds it.
func splitPath(escapedPath string) ([]string, bool) {
	p := strings.Trim(escapedPath, "/")
	if p == "" {
		return nil, true
	}
	raw := strings.Split(p, "/")
	segs := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return nil, false
		}
		segs[i] = u
	}
	return segs, true
}

// classify maps a request onto a route. Paths follow the REST API's
// name-based addressing: an odd number of segments is a feed
// (type = last segment, link = its owner), an even number is one resource
// (type = second-to-last segment, link = the whole path).
func classify(method, escapedPath string, h http.Header) route {
	segs, ok := splitPath(escapedPath)
	if !ok {
		return route{kind: KindUnknown, badPath: true}
	}
	// A document id holding "/" (sent raw or as %2F) makes the path longer
	// than a document's: it is one unaddressable document route whose
	// signature covers the whole path, as clients sign it.
	if len(segs) >= 6 && segs[0] == "dbs" && segs[2] == "colls" && segs[4] == "docs" {
		if id := strings.Join(segs[5:], "/"); len(segs) > 6 || strings.Contains(id, "/") {
			r := classifySegs(method, append(segs[:5:5], id), h)
			r.unaddressable = true
			return r
		}
	}
	return classifySegs(method, segs, h)
}

func classifySegs(method string, segs []string, h http.Header) route {
	r := route{shape: len(segs)}
	switch {
	case len(segs) == 0:
		r.kind = KindUnknown
		if method == http.MethodGet {
			r.kind = KindAccount
		}
		return r
	case len(segs)%2 == 1:
		r.resType = segs[len(segs)-1]
		r.resLink = strings.Join(segs[:len(segs)-1], "/")
	default:
		r.resType = segs[len(segs)-2]
		r.resLink = strings.Join(segs, "/")
	}
	if segs[0] == "offers" && len(segs) <= 2 {
		// Offers are addressed by id (rid-based): the resource link is the
		// offer id, which azcosmos lower-cases before signing
		// (authRequest accepts both).
		r.kind = KindOffer
		if len(segs) == 2 {
			r.offer = segs[1]
			r.resLink = segs[1]
		}
		return r
	}
	if segs[0] != "dbs" {
		r.kind = KindUnknown
		return r
	}
	if len(segs) >= 2 {
		r.db = segs[1]
	}
	if len(segs) >= 3 && segs[2] != "colls" {
		r.kind = KindUnknown
		return r
	}
	if len(segs) >= 4 {
		r.coll = segs[3]
	}
	switch len(segs) {
	case 1, 2:
		r.kind = KindDatabase
	case 3, 4:
		r.kind = KindContainer
	case 5:
		switch segs[4] {
		case "pkranges":
			r.kind = KindUnknown
			if method == http.MethodGet {
				r.kind = KindPKRanges
			}
		case "docs":
			r.kind = classifyDocsFeed(method, h)
		default:
			r.kind = KindUnknown
		}
	case 6:
		r.kind = KindUnknown
		if segs[4] == "docs" {
			r.doc = segs[5]
			switch method {
			case http.MethodGet:
				r.kind = KindRead
			case http.MethodPut:
				r.kind = KindReplace
			case http.MethodPatch:
				r.kind = KindPatch
			case http.MethodDelete:
				r.kind = KindDelete
			}
		}
	default:
		r.kind = KindUnknown
	}
	return r
}

// classifyDocsFeed tells apart the operations that share the …/docs feed
// URL. Both query markers are accepted: azcosmos sends
// x-ms-documentdb-query, the REST reference and other clients send
// x-ms-documentdb-isquery.
func classifyDocsFeed(method string, h http.Header) Kind {
	switch method {
	case http.MethodGet:
		// Any A-IM value is a change-feed read; the handler rejects modes
		// other than Incremental Feed.
		if h.Get(hdrAIM) != "" {
			return KindChangeFeed
		}
		return KindReadFeed
	case http.MethodPost:
		switch {
		case isTrue(h.Get(hdrIsQueryPlan)):
			return KindQueryPlan
		case isTrue(h.Get(hdrIsBatch)):
			return KindBatch
		case isTrue(h.Get(hdrQuery)) || isTrue(h.Get(hdrIsQuery)) ||
			strings.HasPrefix(strings.ToLower(h.Get("Content-Type")), contentTypeQuery):
			return KindQuery
		case isTrue(h.Get(hdrIsUpsert)):
			return KindUpsert
		default:
			return KindCreate
		}
	}
	return KindUnknown
}

func isTrue(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "true") }
