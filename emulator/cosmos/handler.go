package cosmos

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxBodyBytes bounds request bodies; the service's limit for a document
// is 2 MB, and a batch can be larger.
const maxBodyBytes = 16 << 20

// reply is a gateway response before it is written.
type reply struct {
	status  int
	sub     int
	header  http.Header
	body    []byte
	message string // error text, for the {"code","message"} body
	// additionalErrorInfo, when set, is sent as the error body's
	// additionalErrorInfo: the gateway puts the query plan there when it
	// cannot serve a cross-partition query, and SDKs (@azure/cosmos) retry
	// with it only when it is present.
	additionalErrorInfo string
}

func errReply(status, sub int, format string, args ...any) *reply {
	return &reply{status: status, sub: sub, message: fmt.Sprintf(format, args...)}
}

func jsonReply(status int, body []byte) *reply {
	return &reply{status: status, body: body, header: http.Header{}}
}

func (r *reply) set(k, v string) *reply {
	if r.header == nil {
		r.header = http.Header{}
	}
	r.header.Set(k, v)
	return r
}

// statusCodes maps statuses to the service's error codes.
var statusCodes = map[int]string{
	400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
	409: "Conflict", 410: "Gone", 412: "PreconditionFailed", 413: "RequestEntityTooLarge",
	429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable",
}

// Handler returns the gateway's HTTP handler: the Cosmos DB REST API, and
// the /_admin/ routes when WithAdminRoutes(true) is set.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// KindOf tells which Kind of request r is, as the gateway counts it and
// matches it against faults. It reads only the method, the path and
// headers.
func KindOf(r *http.Request) Kind { return classify(r.Method, r.URL.EscapedPath(), r.Header).kind }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_admin/") {
		if s.cfg.admin {
			s.AdminHandler().ServeHTTP(w, r)
		} else {
			http.NotFound(w, r)
		}
		return
	}
	rt := classify(r.Method, r.URL.EscapedPath(), r.Header)
	var rep *reply
	if rt.badPath {
		rep = errReply(http.StatusBadRequest, 0, "the request path is not validly percent-encoded or has an empty segment")
	} else {
		rep = s.handle(r, rt)
	}
	s.write(w, r, rep)
}

func (s *Server) handle(r *http.Request, rt route) *reply {
	s.mu.Lock()
	s.counts[rt.kind]++
	s.mu.Unlock()
	if err := authRequest(s.key, s.cfg.allowAAD, s.cfg.now(), r.Method, rt, r.Header); err != nil {
		return errReply(http.StatusUnauthorized, 0, "%s", err.Error())
	}
	s.mu.Lock()
	f := s.takeFault(rt)
	s.mu.Unlock()
	if f != nil {
		if f.Delay > 0 {
			if err := sleepCtx(r.Context(), f.Delay); err != nil {
				return errReply(http.StatusRequestTimeout, 0, "the client went away")
			}
		}
		if f.Status != 0 {
			rep := errReply(f.Status, f.SubStatus, "injected fault: %d", f.Status)
			if f.RetryAfter > 0 {
				rep.set(hdrRetryAfterMs, strconv.FormatInt(f.RetryAfter.Milliseconds(), 10))
			}
			return rep
		}
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			return errReply(http.StatusBadRequest, 0, "reading the request body: %v", err)
		}
		if len(b) > maxBodyBytes {
			return errReply(http.StatusRequestEntityTooLarge, 0, "the request body is too large")
		}
		body = b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dispatchLocked(r, rt, body)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, rep *reply) {
	h := w.Header()
	for k, v := range rep.header {
		h[k] = v
	}
	if id := r.Header.Get(hdrActivityID); id != "" {
		h.Set(hdrActivityID, id)
	}
	if h.Get(hdrRequestCharge) == "" {
		h.Set(hdrRequestCharge, "1")
	}
	h.Set(hdrGatewayVersion, "version=2.14.0")
	h.Set(hdrServiceVersion, "version=2.14.0.0")
	h.Set(hdrSchemaVersion, "1.18")
	h.Set("Date", s.cfg.now().UTC().Format(http.TimeFormat))
	if rep.sub != 0 {
		h.Set(hdrSubStatus, strconv.Itoa(rep.sub))
	}
	body := rep.body
	if rep.status >= 400 {
		code := statusCodes[rep.status]
		if code == "" {
			code = http.StatusText(rep.status)
		}
		e := map[string]string{"code": code, "message": rep.message}
		if rep.additionalErrorInfo != "" {
			e["additionalErrorInfo"] = rep.additionalErrorInfo
		}
		body, _ = json.Marshal(e)
	}
	if len(body) > 0 || rep.status >= 400 {
		h.Set("Content-Type", contentTypeJSON)
	}
	if rep.status == http.StatusNotModified || rep.status == http.StatusNoContent {
		body = nil
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rep.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// ---- dispatch ----

func (s *Server) dispatchLocked(r *http.Request, rt route, body []byte) *reply {
	switch rt.kind {
	case KindAccount:
		return s.accountLocked(r)
	case KindDatabase:
		return s.databaseLocked(r, rt, body)
	case KindContainer:
		return s.containerLocked(r, rt, body)
	case KindOffer:
		return s.offersLocked(r, rt, body)
	case KindUnknown:
		return errReply(http.StatusBadRequest, 0, "the fake gateway does not serve %s %s", r.Method, r.URL.Path)
	}
	if rt.unaddressable {
		// The gateway resolves "/" in the path (also escaped as %2F) as a
		// separator, so a document whose id holds "/" cannot be addressed.
		return errReply(http.StatusNotFound, 0,
			"The value '%s' specified for the resource does not resolve to a document: a document id that contains '/' cannot be addressed by URL", rt.resLink)
	}
	// Everything else addresses a container.
	c := s.ensureContainerLocked(rt.db, rt.coll, s.cfg.autoCreate && rt.kind != KindDelete)
	if c == nil {
		return errReply(http.StatusNotFound, 0, "Resource Not Found. Container dbs/%s/colls/%s does not exist", rt.db, rt.coll)
	}
	switch rt.kind {
	case KindPKRanges:
		return s.pkRangesLocked(c, r.Header)
	case KindChangeFeed:
		return s.changeFeedLocked(c, r.Header)
	case KindReadFeed:
		return s.queryLocked(c, r.Header, &sqlQuery{star: true, top: -1, limit: -1, alias: "c"}, nil)
	case KindQuery:
		return s.queryRequestLocked(c, r.Header, body)
	case KindQueryPlan:
		return s.queryPlanLocked(c, body)
	case KindBatch:
		return s.batchLocked(c, r.Header, body)
	default:
		return s.itemLocked(c, rt, r.Header, body)
	}
}

// ---- account ----

func (s *Server) accountLocked(r *http.Request) *reply {
	endpoint := s.cfg.endpoint
	if endpoint == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		// Advertise where the client actually reached us: the SDKs send
		// every later request to this host:port.
		endpoint = scheme + "://" + r.Host + "/"
	}
	loc := []map[string]string{{"name": s.cfg.region, "databaseAccountEndpoint": endpoint}}
	body, _ := json.Marshal(map[string]any{
		"_self": "", "id": "localfake", "_rid": "localfake.documents.azure.com", "media": "//media/",
		"addresses": "//addresses/", "_dbs": "//dbs/",
		"writableLocations": loc, "readableLocations": loc,
		"enableMultipleWriteLocations": false,
		"userReplicationPolicy":        map[string]any{"asyncReplication": false, "minReplicaSetSize": 1, "maxReplicasetSize": 4},
		"userConsistencyPolicy":        map[string]any{"defaultConsistencyLevel": s.cfg.consistency, "maxStalenessPrefix": 100, "maxIntervalInSeconds": 5},
		"systemReplicationPolicy":      map[string]any{"minReplicaSetSize": 1, "maxReplicasetSize": 4},
		"readPolicy":                   map[string]any{"primaryReadCoefficient": 1, "secondaryReadCoefficient": 1},
		"queryEngineConfiguration":     `{"maxSqlQueryInputLength":262144,"maxJoinsPerSqlQuery":5,"maxLogicalAndPerSqlQuery":500,"maxLogicalOrPerSqlQuery":500,"maxUdfRefPerSqlQuery":10,"maxInExpressionItemsCount":16000,"queryMaxInMemorySortDocumentCount":500,"maxQueryRequestTimeoutFraction":0.9,"sqlAllowNonFiniteNumbers":false,"sqlAllowAggregateFunctions":true,"sqlAllowSubQuery":true,"sqlAllowScalarSubQuery":true,"allowNewKeywords":true,"sqlAllowLike":true,"sqlAllowGroupByClause":true,"maxSpatialQueryCells":12,"spatialMaxGeometryPointCount":256,"sqlDisableOptimizationFlags":0,"sqlAllowTop":true,"enableSpatialIndexing":true}`,
	})
	return jsonReply(http.StatusOK, body)
}

// ---- databases ----

func (s *Server) dbJSON(d *database) []byte {
	return encodeObject([]member{strMember("id", d.id)}, strMember("_rid", d.rid), strMember("_self", "dbs/"+d.rid+"/"),
		strMember("_etag", d.etag), strMember("_colls", "colls/"), strMember("_users", "users/"), intMember("_ts", d.ts))
}

func (s *Server) databaseLocked(r *http.Request, rt route, body []byte) *reply {
	if rt.shape == 1 { // /dbs
		switch r.Method {
		case http.MethodGet:
			return s.listLocked("Databases", s.allDBsJSON(), nil, r.Header)
		case http.MethodPost:
			if isQueryRequest(r.Header) {
				return s.queryResourcesLocked("Databases", s.allDBsJSON(), r.Header, body)
			}
			var in struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(body, &in); err != nil {
				return errReply(http.StatusBadRequest, 0, "the request body is not valid JSON")
			}
			if err := validateID(in.ID); err != nil {
				return errReply(http.StatusBadRequest, 0, "%s", err.Error())
			}
			tp, err := throughputFromHeaders(r.Header)
			if err != nil {
				return errReply(http.StatusBadRequest, 0, "%s", err.Error())
			}
			if s.dbs[in.ID] != nil {
				return errReply(http.StatusConflict, 0, "Entity with the specified id already exists in the system.")
			}
			d := s.createDatabaseLocked(in.ID)
			if !tp.none() {
				s.newOfferLocked("dbs/"+d.rid+"/", d.rid, tp)
			}
			return jsonReply(http.StatusCreated, s.dbJSON(d)).set("etag", d.etag)
		}
		return errReply(http.StatusMethodNotAllowed, 0, "method %s is not allowed on /dbs", r.Method)
	}
	d := s.dbs[rt.db]
	switch r.Method {
	case http.MethodGet:
		// No auto-create on a read of the database itself: SDKs'
		// createIfNotExists reads first and creates, with the caller's
		// settings, only on a 404.
		if d == nil {
			return errReply(http.StatusNotFound, 0, "Resource Not Found. Database %s does not exist", rt.db)
		}
		return jsonReply(http.StatusOK, s.dbJSON(d)).set("etag", d.etag)
	case http.MethodDelete:
		if d == nil {
			return errReply(http.StatusNotFound, 0, "Resource Not Found. Database %s does not exist", rt.db)
		}
		rids := []string{d.rid}
		for _, c := range d.colls {
			rids = append(rids, c.rid)
		}
		s.dropOffersLocked(rids...)
		delete(s.dbs, rt.db)
		return &reply{status: http.StatusNoContent}
	}
	return errReply(http.StatusMethodNotAllowed, 0, "method %s is not allowed on a database", r.Method)
}

func (s *Server) allDBsJSON() []queryRow {
	ids := make([]string, 0, len(s.dbs))
	for id := range s.dbs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	rows := make([]queryRow, 0, len(ids))
	for _, id := range ids {
		j := s.dbJSON(s.dbs[id])
		var v map[string]any
		_ = json.Unmarshal(j, &v)
		rows = append(rows, queryRow{value: v, json: j})
	}
	return rows
}

// ---- containers ----

func (s *Server) collJSON(c *container) []byte {
	return encodeObject(c.props, strMember("_rid", c.rid), strMember("_self", "dbs/"+c.db.rid+"/colls/"+c.rid+"/"),
		strMember("_etag", c.etag), strMember("_docs", "docs/"), strMember("_sprocs", "sprocs/"),
		strMember("_triggers", "triggers/"), strMember("_udfs", "udfs/"), strMember("_conflicts", "conflicts/"),
		intMember("_ts", c.ts))
}

func (s *Server) containerLocked(r *http.Request, rt route, body []byte) *reply {
	d := s.dbs[rt.db]
	if d == nil && s.cfg.autoCreate && r.Method == http.MethodPost {
		d = s.createDatabaseLocked(rt.db)
	}
	if d == nil {
		return errReply(http.StatusNotFound, 0, "Resource Not Found. Database %s does not exist", rt.db)
	}
	if rt.shape == 3 { // /dbs/{db}/colls
		var rows []queryRow
		ids := make([]string, 0, len(d.colls))
		for id := range d.colls {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			j := s.collJSON(d.colls[id])
			var v map[string]any
			_ = json.Unmarshal(j, &v)
			rows = append(rows, queryRow{value: v, json: j})
		}
		switch r.Method {
		case http.MethodGet:
			return s.listLocked("DocumentCollections", rows, nil, r.Header)
		case http.MethodPost:
			if isQueryRequest(r.Header) {
				return s.queryResourcesLocked("DocumentCollections", rows, r.Header, body)
			}
			members, value, err := parseObject(body)
			if err != nil {
				return errReply(http.StatusBadRequest, 0, "%s", err.Error())
			}
			id, _ := value["id"].(string)
			if err := validateID(id); err != nil {
				return errReply(http.StatusBadRequest, 0, "%s", err.Error())
			}
			if d.colls[id] != nil {
				return errReply(http.StatusConflict, 0, "Entity with the specified id already exists in the system.")
			}
			if _, ok := value["partitionKey"]; !ok {
				members = append(members, defaultContainerProps(id, []string{s.cfg.pkPath})[2])
			} else {
				members = withHashV2(members)
			}
			if _, ok := value["indexingPolicy"]; !ok {
				members = append(members, member{key: "indexingPolicy", raw: json.RawMessage(defaultIndexingPolicy)})
			}
			tp, err := throughputFromHeaders(r.Header)
			if err != nil {
				return errReply(http.StatusBadRequest, 0, "%s", err.Error())
			}
			c := s.createContainerLocked(d, id, members, max(s.cfg.partitions, (tp.ru()+9999)/10000), tp)
			return jsonReply(http.StatusCreated, s.collJSON(c)).set("etag", c.etag)
		}
		return errReply(http.StatusMethodNotAllowed, 0, "method %s is not allowed on a container feed", r.Method)
	}
	c := d.colls[rt.coll]
	switch r.Method {
	case http.MethodGet:
		// As for databases: a read answers 404 so that createIfNotExists
		// creates the container with the caller's partition key; data
		// operations (items, queries, the change feed) create it on first use.
		if c == nil {
			return errReply(http.StatusNotFound, 0, "Resource Not Found. Container dbs/%s/colls/%s does not exist", rt.db, rt.coll)
		}
		return jsonReply(http.StatusOK, s.collJSON(c)).set("etag", c.etag)
	case http.MethodPut:
		if c == nil {
			return errReply(http.StatusNotFound, 0, "Resource Not Found")
		}
		members, value, err := parseObject(body)
		if err != nil {
			return errReply(http.StatusBadRequest, 0, "%s", err.Error())
		}
		if value["id"] != c.id {
			return errReply(http.StatusBadRequest, 0, "the id in the body does not match the container")
		}
		if im := r.Header.Get("If-Match"); im != "" && im != c.etag {
			return errReply(http.StatusPreconditionFailed, 0, "One of the specified pre-condition is not met")
		}
		// The partition key definition cannot change.
		for i, m := range members {
			if m.key == "partitionKey" {
				members = slices.Delete(members, i, i+1)
				break
			}
		}
		for _, m := range c.props {
			if m.key == "partitionKey" {
				members = append(members, m)
			}
		}
		c.props = members
		c.etag = s.newEtag()
		c.ts = s.cfg.now().Unix()
		return jsonReply(http.StatusOK, s.collJSON(c)).set("etag", c.etag)
	case http.MethodDelete:
		if c == nil {
			return errReply(http.StatusNotFound, 0, "Resource Not Found")
		}
		s.dropOffersLocked(c.rid)
		delete(d.colls, rt.coll)
		return &reply{status: http.StatusNoContent}
	}
	return errReply(http.StatusMethodNotAllowed, 0, "method %s is not allowed on a container", r.Method)
}

// withHashV2 records version 2 in a partitionKey definition that has no
// version. The emulator always places documents with the V2 hash; a client
// that reads the definition back (azcosmos ReadManyItems treats a missing
// version as V1) then computes the same EPKs as the emulator.
func withHashV2(members []member) []member {
	for i, m := range members {
		if m.key != "partitionKey" {
			continue
		}
		var pk map[string]any
		if json.Unmarshal(m.raw, &pk) != nil || pk == nil {
			continue
		}
		if _, ok := pk["version"]; !ok {
			pk["version"] = 2
		}
		if _, ok := pk["kind"]; !ok {
			pk["kind"] = "Hash"
		}
		members[i].raw, _ = json.Marshal(pk)
	}
	return members
}

func isQueryRequest(h http.Header) bool {
	return isTrue(h.Get(hdrQuery)) || isTrue(h.Get(hdrIsQuery)) ||
		strings.HasPrefix(strings.ToLower(h.Get("Content-Type")), contentTypeQuery)
}

// ---- partition key ranges ----

func (s *Server) pkRangesLocked(c *container, h http.Header) *reply {
	etag := fmt.Sprintf("%q", strconv.FormatInt(c.rangeSeq, 10))
	var since int64 = -1
	if inm := h.Get("If-None-Match"); inm != "" && inm != "*" {
		n, err := strconv.ParseInt(strings.Trim(inm, `"`), 10, 64)
		if err != nil {
			return errReply(http.StatusBadRequest, 0, "invalid If-None-Match %q", inm)
		}
		since = n
	} else if inm == "*" {
		since = c.rangeSeq
	}
	var list []*pkRange
	for _, r := range c.currentRanges() {
		if since < 0 || r.seq > since {
			list = append(list, r)
		}
	}
	// The pkranges feed is itself a change feed: once the client is
	// current it must see 304, or azcosmos keeps paging (up to 1000 times)
	// and then fails the refresh.
	if since >= 0 && len(list) == 0 {
		return (&reply{status: http.StatusNotModified}).set("etag", etag)
	}
	items := make([]json.RawMessage, len(list))
	for i, r := range list {
		rid := base64.StdEncoding.EncodeToString(append(mustB64(c.rid), byte(0), byte(0), byte(0), byte(len(c.ranges))))
		b, _ := json.Marshal(map[string]any{
			"_rid": rid, "id": r.id, "_etag": fmt.Sprintf("\"%08x-0000-0000-0000-%012d\"", r.seq, i),
			"minInclusive": r.min, "maxExclusive": r.max, "ridPrefix": atoiOr(r.id, 0),
			"_self":              "dbs/" + c.db.rid + "/colls/" + c.rid + "/pkranges/" + rid + "/",
			"throughputFraction": 1.0 / float64(len(c.currentRanges())), "status": "online",
			"parents": r.parents, "ownedArchivalPKRangeIds": []string{}, "_ts": r.ts, "lsn": r.lsn,
		})
		items[i] = b
	}
	body, _ := json.Marshal(map[string]any{"_rid": c.rid, "PartitionKeyRanges": items, "_count": len(items)})
	return jsonReply(http.StatusOK, body).set("etag", etag).set(hdrItemCount, strconv.Itoa(len(items)))
}

func mustB64(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

// ---- documents ----

func (c *container) docKey(pk []any, id string) string { return pkString(pk) + "\x00" + id }

// docJSON renders a stored document as the service returns it; withLSN
// adds _lsn, which only the change feed includes.
func (c *container) docJSON(d *document, withLSN bool) []byte {
	sys := []member{strMember("_rid", d.rid), strMember("_self", "dbs/"+c.db.rid+"/colls/"+c.rid+"/docs/"+d.rid+"/"),
		strMember("_etag", d.etag), strMember("_attachments", "attachments/"), intMember("_ts", d.ts)}
	if withLSN {
		sys = append(sys, intMember("_lsn", d.lsn))
	}
	return encodeObject(d.members, sys...)
}

func sessionToken(r *pkRange) string {
	return r.id + ":-1#" + strconv.FormatInt(r.lsn, 10)
}

// headerPK decodes the partition key header against the container's
// definition.
func (c *container) headerPK(h http.Header) ([]any, *reply) {
	v := h.Get(hdrPartitionKey)
	if v == "" {
		return nil, errReply(http.StatusBadRequest, 0, "PartitionKey value must be supplied for this operation.")
	}
	pk, err := parsePartitionKeyHeader(v)
	if err != nil {
		return nil, errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	if len(pk) != len(c.pkPaths) {
		return nil, errReply(http.StatusBadRequest, 0,
			"Partition key provided either doesn't correspond to definition in the collection or doesn't match partition key field values specified in the document.")
	}
	return pk, nil
}

func (s *Server) itemLocked(c *container, rt route, h http.Header, body []byte) *reply {
	pk, rep := c.headerPK(h)
	if rep != nil {
		return rep
	}
	minimal := strings.EqualFold(strings.TrimSpace(h.Get(hdrPrefer)), valPreferMinimal)
	d, status, rep := s.docOpLocked(c, rt.kind, pk, rt.doc, body, h.Get("If-Match"))
	if rep != nil {
		return rep
	}
	switch rt.kind {
	case KindRead:
		if inm := h.Get("If-None-Match"); inm != "" && (inm == d.etag || inm == "*") {
			return (&reply{status: http.StatusNotModified}).set("etag", d.etag)
		}
		return s.docReply(c, d, http.StatusOK, false)
	case KindDelete:
		rg := c.rangeForEPK(d.epk)
		return (&reply{status: http.StatusNoContent}).set(hdrSessionToken, sessionToken(rg)).
			set(hdrRequestCharge, "5.71").set(hdrLSN, strconv.FormatInt(rg.lsn, 10))
	}
	return s.docReply(c, d, status, minimal)
}

// docOpLocked performs one document operation in the logical partition pk;
// point operations and the operations of a transactional batch share it.
// id is the addressed id (replace, patch, read, delete). It returns the
// document written or read (for a delete, the one removed) and the
// operation's status, or the error reply.
func (s *Server) docOpLocked(c *container, kind Kind, pk []any, id string, body []byte, ifMatch string) (*document, int, *reply) {
	switch kind {
	case KindCreate, KindUpsert, KindReplace:
		members, value, err := parseObject(body)
		if err != nil {
			return nil, 0, errReply(http.StatusBadRequest, 0, "%s", err.Error())
		}
		if pkString(c.extractPK(value)) != pkString(pk) {
			return nil, 0, errReply(http.StatusBadRequest, 1001,
				"PartitionKey extracted from document doesn't match the one specified in the header.")
		}
		d, created, rep := s.writeDocLocked(c, kind, id, pk, members, value, ifMatch)
		if rep != nil {
			return nil, 0, rep
		}
		if created {
			return d, http.StatusCreated, nil
		}
		return d, http.StatusOK, nil
	case KindPatch, KindRead, KindDelete:
		d := c.docs[c.docKey(pk, id)]
		if d == nil {
			return nil, 0, errReply(http.StatusNotFound, 0, "Entity with the specified id does not exist in the system.")
		}
		if kind != KindRead && ifMatch != "" && ifMatch != "*" && ifMatch != d.etag {
			return nil, 0, errReply(http.StatusPreconditionFailed, 0, "One of the specified pre-condition is not met.")
		}
		switch kind {
		case KindRead:
			return d, http.StatusOK, nil
		case KindDelete:
			s.deleteDocLocked(c, d)
			return d, http.StatusNoContent, nil
		}
		value, rep := applyPatch(d.value, body)
		if rep != nil {
			return nil, 0, rep
		}
		if id, _ := value["id"].(string); id != d.id || pkString(c.extractPK(value)) != pkString(pk) {
			return nil, 0, errReply(http.StatusBadRequest, 0, "a patch cannot change the id or the partition key")
		}
		d, _, rep = s.writeDocLocked(c, KindReplace, d.id, pk, mapToMembers(d.members, value), value, "")
		if rep != nil {
			return nil, 0, rep
		}
		return d, http.StatusOK, nil
	}
	return nil, 0, errReply(http.StatusBadRequest, 0, "unsupported document operation")
}

func (s *Server) docReply(c *container, d *document, status int, minimal bool) *reply {
	rg := c.rangeForEPK(d.epk)
	var body []byte
	if !minimal {
		body = c.docJSON(d, false)
	}
	rep := &reply{status: status, body: body}
	rep.set("etag", d.etag).set(hdrSessionToken, sessionToken(rg)).set(hdrLSN, strconv.FormatInt(rg.lsn, 10)).
		set(hdrAltContentPath, "dbs/"+c.db.id+"/colls/"+c.id).set(hdrContentPath, c.rid)
	if status != http.StatusOK || minimal {
		rep.set(hdrRequestCharge, "5.71")
	}
	return rep
}

// writeDocLocked stores a create/upsert/replace. Every write takes the
// next LSN of the document's range, which moves the document to the tail
// of that range's change feed (latest-version semantics).
func (s *Server) writeDocLocked(c *container, kind Kind, urlID string, pk []any, members []member,
	value map[string]any, ifMatch string) (*document, bool, *reply) {
	id, ok := value["id"].(string)
	if !ok {
		return nil, false, errReply(http.StatusBadRequest, 0,
			"The input content is invalid because the required properties - 'id; ' - are missing")
	}
	if err := validateItemID(id); err != nil {
		return nil, false, errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	if kind == KindReplace && id != urlID {
		return nil, false, errReply(http.StatusBadRequest, 0, "the id in the body (%q) does not match the id in the URL (%q)", id, urlID)
	}
	key := c.docKey(pk, id)
	old := c.docs[key]
	switch kind {
	case KindCreate:
		if old != nil {
			return nil, false, errReply(http.StatusConflict, 0, "Entity with the specified id already exists in the system.")
		}
	case KindReplace:
		if old == nil {
			return nil, false, errReply(http.StatusNotFound, 0, "Entity with the specified id does not exist in the system.")
		}
	}
	if ifMatch != "" && ifMatch != "*" && (old == nil || old.etag != ifMatch) {
		if old == nil {
			return nil, false, errReply(http.StatusNotFound, 0, "Entity with the specified id does not exist in the system.")
		}
		return nil, false, errReply(http.StatusPreconditionFailed, 0, "One of the specified pre-condition is not met.")
	}
	epk, err := effectivePartitionKey(pk)
	if err != nil {
		return nil, false, errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	rg := c.rangeForEPK(epk)
	rg.lsn++
	now := s.cfg.now()
	d := &document{id: id, pk: pk, pkKey: pkString(pk), epk: epk, members: members, value: value,
		etag: s.newEtag(), ts: now.Unix(), mtime: now, lsn: rg.lsn}
	c.writeSeq++
	d.wseq = c.writeSeq
	if old != nil {
		d.rid, d.seq = old.rid, old.seq
	} else {
		c.docSeq++
		d.seq = c.docSeq
		rid := append(mustB64(c.rid), make([]byte, 8)...)
		for i := 0; i < 8; i++ {
			rid[8+i] = byte(c.docSeq >> (8 * (7 - i)))
		}
		d.rid = base64.StdEncoding.EncodeToString(rid)
	}
	c.docs[key] = d
	return d, old == nil, nil
}

// deleteDocLocked removes a document. The delete consumes an LSN like any
// write, but latest-version change feed never shows deletes.
func (s *Server) deleteDocLocked(c *container, d *document) *pkRange {
	rg := c.rangeForEPK(d.epk)
	rg.lsn++
	delete(c.docs, c.docKey(d.pk, d.id))
	return rg
}

// ---- change feed ----

// changeFeedLocked serves GET …/docs with A-IM. It reads one range
// (x-ms-documentdb-partitionkeyrangeid, or the range owning the
// x-ms-documentdb-partitionkey value) from a position given by
// If-None-Match ("<lsn>", "*" for now, absent for the beginning) or, when
// absent, If-Modified-Since.
func (s *Server) changeFeedLocked(c *container, h http.Header) *reply {
	if aim := strings.TrimSpace(h.Get(hdrAIM)); !strings.EqualFold(aim, valIncrementalFeed) {
		return errReply(http.StatusBadRequest, 0, "A-IM %q is not supported by the fake gateway (only Incremental Feed)", aim)
	}
	var rg *pkRange
	var pkFilter string
	if v := h.Get(hdrPKRangeID); v != "" {
		rg = c.rangeByID(v)
		if rg == nil || rg.gone {
			return errReply(http.StatusGone, 1002, "PartitionKeyRange with id '%s' in collection '%s' doesn't exist.", v, c.rid)
		}
	}
	if h.Get(hdrPartitionKey) != "" {
		pk, rep := c.headerPK(h)
		if rep != nil {
			return rep
		}
		epk, err := effectivePartitionKey(pk)
		if err != nil {
			return errReply(http.StatusBadRequest, 0, "%s", err.Error())
		}
		if rg == nil {
			rg = c.rangeForEPK(epk)
		} else if !epkInRange(epk, rg.min, rg.max) {
			return errReply(http.StatusBadRequest, 0, "the partition key is not in partition key range %s", rg.id)
		}
		pkFilter = pkString(pk)
	}
	if rg == nil {
		cur := c.currentRanges()
		if len(cur) != 1 {
			return errReply(http.StatusBadRequest, 0,
				"a change-feed read of a container with %d partition key ranges needs x-ms-documentdb-partitionkeyrangeid or a partition key", len(cur))
		}
		rg = cur[0]
	}
	epkMin, epkMaxEx := rg.min, rg.max
	if strings.EqualFold(h.Get(hdrReadKeyType), readKeyTypeEPKRange) {
		if v := h.Get(hdrStartEPK); v != "" && compareEPK(v, epkMin) > 0 {
			epkMin = v
		}
		if v := h.Get(hdrEndEPK); v != "" && compareEPK(v, epkMaxEx) < 0 {
			epkMaxEx = v
		}
	}

	var since int64
	var sinceTime *time.Time
	switch inm := strings.TrimSpace(h.Get("If-None-Match")); inm {
	case "":
		since = 0
		if ims := h.Get("If-Modified-Since"); ims != "" {
			t, err := parseFeedTime(ims)
			if err != nil {
				return errReply(http.StatusBadRequest, 0, "invalid If-Modified-Since %q", ims)
			}
			sinceTime = &t
		}
	case "*":
		since = rg.lsn
	default:
		n, err := strconv.ParseInt(strings.Trim(inm, `"`), 10, 64)
		if err != nil || n < 0 {
			return errReply(http.StatusBadRequest, 0, "invalid change feed continuation (If-None-Match) %q", inm)
		}
		since = n
	}
	limit := s.cfg.maxPageItems
	if v, err := strconv.Atoi(h.Get(hdrMaxItemCount)); err == nil {
		if v > 0 {
			limit = v
		} else if v == -1 {
			limit = int(^uint(0) >> 1)
		}
	}

	var docs []*document
	for _, d := range c.docs {
		if d.lsn <= since || !epkInRange(d.epk, epkMin, epkMaxEx) || !epkInRange(d.epk, rg.min, rg.max) {
			continue
		}
		if pkFilter != "" && d.pkKey != pkFilter {
			continue
		}
		if sinceTime != nil && d.mtime.Before(*sinceTime) {
			continue
		}
		docs = append(docs, d)
	}
	slices.SortFunc(docs, func(a, b *document) int { return cmp.Or(cmp.Compare(a.lsn, b.lsn), cmp.Compare(a.wseq, b.wseq)) })

	// The continuation is the range's current LSN once everything is
	// returned (skipping LSNs used by deletes and other logical
	// partitions), else the LSN of the last document in the page.
	next := max(since, rg.lsn)
	if len(docs) > limit {
		// A page never splits one LSN (a transactional batch's documents
		// share it): the continuation is an LSN, and a split would lose
		// the rest.
		for limit < len(docs) && docs[limit].lsn == docs[limit-1].lsn {
			limit++
		}
		if limit < len(docs) {
			docs = docs[:limit]
			next = docs[len(docs)-1].lsn
		}
	}
	etag := fmt.Sprintf("%q", strconv.FormatInt(next, 10))
	var rep *reply
	if len(docs) == 0 {
		rep = &reply{status: http.StatusNotModified}
	} else {
		items := make([]json.RawMessage, len(docs))
		for i, d := range docs {
			items[i] = c.docJSON(d, true)
		}
		body, _ := json.Marshal(map[string]any{"_rid": c.rid, "Documents": items, "_count": len(items)})
		rep = jsonReply(http.StatusOK, body)
	}
	return rep.set("etag", etag).set(hdrSessionToken, sessionToken(rg)).set(hdrLSN, strconv.FormatInt(rg.lsn, 10)).
		set(hdrGlobalLSN, strconv.FormatInt(rg.lsn, 10)).set(hdrItemCount, strconv.Itoa(len(docs))).
		set(hdrAltContentPath, "dbs/"+c.db.id+"/colls/"+c.id).set(hdrContentPath, c.rid)
}

// parseFeedTime reads If-Modified-Since. It accepts an HTTP date (RFC 9110:
// IMF-fixdate in GMT, or the obsolete RFC 850 and asctime forms) and the
// same RFC 1123 date with the zone written "UTC", which is what azcosmos
// v1.5.0 sends for ChangeFeedOptions.StartFrom (it formats a UTC time with
// time.RFC1123). The service accepts what its SDKs send; anything that is
// not such a date is refused.
func parseFeedTime(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if t, err := http.ParseTime(v); err == nil {
		return t.UTC(), nil
	}
	if rest, ok := strings.CutSuffix(v, " UTC"); ok {
		return time.Parse(http.TimeFormat, rest+" GMT")
	}
	return time.Time{}, fmt.Errorf("not an RFC 1123 date in GMT or UTC: %q", v)
}

// ---- queries ----

type queryBody struct {
	Query      string `json:"query"`
	Parameters []struct {
		Name  string `json:"name"`
		Value any    `json:"value"`
	} `json:"parameters"`
}

func decodeQuery(body []byte) (*sqlQuery, map[string]any, *reply) {
	var qb queryBody
	if err := json.Unmarshal(body, &qb); err != nil {
		return nil, nil, errReply(http.StatusBadRequest, 0, "the query body is not valid JSON: %v", err)
	}
	q, err := parseQuery(qb.Query)
	if err != nil {
		return nil, nil, errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	params := map[string]any{}
	for _, p := range qb.Parameters {
		params[p.Name] = p.Value
	}
	return q, params, nil
}

func (s *Server) queryRequestLocked(c *container, h http.Header, body []byte) *reply {
	var qb queryBody
	if err := json.Unmarshal(body, &qb); err != nil {
		return errReply(http.StatusBadRequest, 0, "the query body is not valid JSON: %v", err)
	}
	if rep := crossPartitionCheck(c, h, qb); rep != nil {
		return rep
	}
	q, params, rep := decodeQuery(body)
	if rep != nil {
		return rep
	}
	return s.queryLocked(c, h, q, params)
}

// crossPartitionCheck applies the gateway's rules for queries that name
// no partition (see crosspart.go) before the query runs.
func crossPartitionCheck(c *container, h http.Header, qb queryBody) *reply {
	if h.Get(hdrPartitionKey) != "" || h.Get(hdrPKRangeID) != "" {
		return nil
	}
	params := map[string]any{}
	for _, p := range qb.Parameters {
		params[p.Name] = p.Value
	}
	sc, err := analyzeQuery(qb.Query, params)
	if err != nil {
		return errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	if sc.pinsPartitionKey(c.pkPaths) {
		return nil
	}
	if !isTrue(h.Get(hdrEnableCrossPart)) {
		return errReply(http.StatusBadRequest, 0, "%s", msgCrossPartitionDisabled)
	}
	if sc.feature != "" {
		rep := errReply(http.StatusBadRequest, subCrossPartitionNotServed, "%s", msgCrossPartitionNotServed)
		rep.additionalErrorInfo = string(queryPlan())
		return rep
	}
	return nil
}

func (s *Server) queryLocked(c *container, h http.Header, q *sqlQuery, params map[string]any) *reply {
	docs := make([]*document, 0, len(c.docs))
	var pkFilter string
	if h.Get(hdrPartitionKey) != "" {
		pk, rep := c.headerPK(h)
		if rep != nil {
			return rep
		}
		pkFilter = pkString(pk)
	}
	var rg *pkRange
	if v := h.Get(hdrPKRangeID); v != "" {
		rg = c.rangeByID(v)
		if rg == nil || rg.gone {
			return errReply(http.StatusGone, 1002, "PartitionKeyRange with id '%s' in collection '%s' doesn't exist.", v, c.rid)
		}
	}
	for _, d := range c.docs {
		if pkFilter != "" && d.pkKey != pkFilter {
			continue
		}
		if rg != nil && !epkInRange(d.epk, rg.min, rg.max) {
			continue
		}
		docs = append(docs, d)
	}
	slices.SortFunc(docs, func(a, b *document) int { return cmp.Compare(a.seq, b.seq) })
	start := time.Now()
	rows := make([]queryRow, len(docs))
	for i, d := range docs {
		rows[i] = queryRow{value: d.value, json: c.docJSON(d, false)}
	}
	loaded := time.Now()
	out, err := q.run(rows, params)
	if err != nil {
		return errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	ran := time.Now()
	rep, page := s.pageLocked(c.rid, "Documents", out, h)
	if isTrue(h.Get(hdrPopulateQueryMetrics)) {
		m := queryMetrics{retrieved: len(rows), output: len(page), load: loaded.Sub(start), vm: ran.Sub(loaded),
			total: time.Since(start)}
		for _, r := range rows {
			m.retrievedSize += len(r.json)
		}
		for _, p := range page {
			m.outputSize += len(p)
		}
		rep.set(hdrQueryMetrics, m.String())
	}
	if isTrue(h.Get(hdrPopulateIndexMetrics)) {
		rep.set(hdrIndexUtilization, indexUtilization)
	}
	return rep
}

// queryMetrics is what x-ms-documentdb-query-metrics reports for one page:
// the emulator scans every document of the partitions in scope (it has no
// index), so retrieved counts are the scan and the times are measured.
type queryMetrics struct {
	retrieved, retrievedSize, output, outputSize int
	load, vm, total                              time.Duration
}

// String renders the service's semicolon-separated name=value form.
func (m queryMetrics) String() string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64) }
	ratio := 0.0
	if m.retrieved > 0 {
		ratio = float64(m.output) / float64(m.retrieved)
	}
	return "totalExecutionTimeInMs=" + ms(m.total) + ";queryCompileTimeInMs=0.00;queryLogicalPlanBuildTimeInMs=0.00" +
		";queryPhysicalPlanBuildTimeInMs=0.00;queryOptimizationTimeInMs=0.00;VMExecutionTimeInMs=" + ms(m.vm) +
		";indexLookupTimeInMs=0.00;documentLoadTimeInMs=" + ms(m.load) +
		";systemFunctionExecuteTimeInMs=0.00;userFunctionExecuteTimeInMs=0.00" +
		";retrievedDocumentCount=" + strconv.Itoa(m.retrieved) + ";retrievedDocumentSize=" + strconv.Itoa(m.retrievedSize) +
		";outputDocumentCount=" + strconv.Itoa(m.output) + ";outputDocumentSize=" + strconv.Itoa(m.outputSize) +
		";writeOutputTimeInMs=0.00;indexUtilizationRatio=" + strconv.FormatFloat(ratio, 'f', 2, 64)
}

// indexUtilization is x-ms-cosmos-index-utilization as the service sends it
// (base64 of a JSON object). The emulator has no indexes, so it reports
// none used and none to add.
var indexUtilization = base64.StdEncoding.EncodeToString([]byte(
	`{"UtilizedSingleIndexes":[],"PotentialSingleIndexes":[],"UtilizedCompositeIndexes":[],"PotentialCompositeIndexes":[]}`))

// pageLocked slices a result into pages by x-ms-max-item-count, with an
// opaque x-ms-continuation that the SDK echoes back.
func (s *Server) pageLocked(rid, field string, out []json.RawMessage, h http.Header) (*reply, []json.RawMessage) {
	start := 0
	if ct := h.Get(hdrContinuation); ct != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(ct, "fake-offset:"))
		if err != nil || n < 0 {
			return errReply(http.StatusBadRequest, 0, "invalid continuation token %q", ct), nil
		}
		start = min(n, len(out))
	}
	limit := s.cfg.maxPageItems
	if v, err := strconv.Atoi(h.Get(hdrMaxItemCount)); err == nil {
		if v > 0 {
			limit = v
		} else if v == -1 {
			limit = len(out) + 1
		}
	}
	end := min(start+limit, len(out))
	page := out[start:end]
	if page == nil {
		page = []json.RawMessage{}
	}
	body, _ := json.Marshal(map[string]any{"_rid": rid, field: page, "_count": len(page)})
	rep := jsonReply(http.StatusOK, body).set(hdrItemCount, strconv.Itoa(len(page))).set(hdrRequestCharge, "2.79")
	if end < len(out) {
		rep.set(hdrContinuation, "fake-offset:"+strconv.Itoa(end))
	}
	return rep, page
}

func (s *Server) listLocked(field string, rows []queryRow, params map[string]any, h http.Header) *reply {
	q := &sqlQuery{star: true, top: -1, limit: -1, alias: "c"}
	out, _ := q.run(rows, params)
	rep, _ := s.pageLocked("", field, out, h)
	return rep
}

func (s *Server) queryResourcesLocked(field string, rows []queryRow, h http.Header, body []byte) *reply {
	q, params, rep := decodeQuery(body)
	if rep != nil {
		return rep
	}
	out, err := q.run(rows, params)
	if err != nil {
		return errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	rep, _ = s.pageLocked("", field, out, h)
	return rep
}

// queryPlanLocked answers the gateway query-plan request that .NET, Java
// and Python SDKs send before a cross-partition query: the emulator asks them
// to fan the query out over the whole EPK space with no client-side
// ordering or aggregation (the emulator evaluates those per range).
func (s *Server) queryPlanLocked(c *container, body []byte) *reply {
	var qb queryBody
	if err := json.Unmarshal(body, &qb); err != nil {
		return errReply(http.StatusBadRequest, 0, "the query body is not valid JSON: %v", err)
	}
	if _, err := parseQuery(qb.Query); err != nil {
		return errReply(http.StatusBadRequest, 0, "%s", err.Error())
	}
	return jsonReply(http.StatusOK, queryPlan())
}

// queryPlan is the plan the emulator gives for every query: fan it out
// over the whole EPK space with no client-side ordering or aggregation
// (the emulator evaluates those per range).
func queryPlan() []byte {
	plan := map[string]any{
		"partitionedQueryExecutionInfoVersion": 2,
		"queryInfo": map[string]any{
			"distinctType": "None", "top": nil, "offset": nil, "limit": nil, "orderBy": []any{},
			"orderByExpressions": []any{}, "groupByExpressions": []any{}, "groupByAliases": []any{},
			"aggregates": []any{}, "groupByAliasToAggregateType": map[string]any{}, "rewrittenQuery": "",
			"hasSelectValue": false, "dCountInfo": nil, "hasNonStreamingOrderBy": false,
		},
		"queryRanges": []any{map[string]any{"min": "", "max": "FF", "isMinInclusive": true, "isMaxInclusive": false}},
	}
	b, _ := json.Marshal(plan)
	return b
}
