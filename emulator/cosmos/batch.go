package cosmos

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// A transactional batch is a POST to …/docs with
// x-ms-cosmos-is-batch-request: True, x-ms-cosmos-batch-atomic: True and
// the logical partition in x-ms-documentdb-partitionkey. The body is a
// JSON array of operations ({"operationType":"Create|Upsert|Replace|
// Read|Delete|Patch","id":…,"ifMatch":…,"resourceBody":…}), as azcosmos
// ExecuteTransactionalBatch writes them. All operations commit or none
// do: the response is 200 with one result per operation
// ({"statusCode","requestCharge","eTag","resourceBody"}), or 207 with the
// failing operation's status and 424 (Failed Dependency) for every other
// one, and nothing changed.

const (
	hdrBatchAtomic = "x-ms-cosmos-batch-atomic"
	// maxBatchOperations is the service's limit on operations per batch.
	maxBatchOperations = 100
	// maxBatchBytes is the service's limit on a batch request's size.
	maxBatchBytes = 2 << 20
)

type batchOp struct {
	OperationType string          `json:"operationType"`
	ID            string          `json:"id"`
	IfMatch       string          `json:"ifMatch"`
	ResourceBody  json.RawMessage `json:"resourceBody"`
}

type batchResult struct {
	StatusCode    int             `json:"statusCode"`
	SubStatusCode int             `json:"subStatusCode,omitempty"`
	RequestCharge float64         `json:"requestCharge"`
	ETag          string          `json:"eTag,omitempty"`
	ResourceBody  json.RawMessage `json:"resourceBody,omitempty"`
}

var batchKinds = map[string]Kind{"create": KindCreate, "upsert": KindUpsert, "replace": KindReplace,
	"read": KindRead, "delete": KindDelete, "patch": KindPatch}

// decodeBatch reads and checks a batch body: a JSON array of 1 to
// maxBatchOperations known operations.
func decodeBatch(body []byte) ([]batchOp, *reply) {
	if len(body) > maxBatchBytes {
		return nil, errReply(http.StatusRequestEntityTooLarge, 0, "the batch request is larger than %d bytes", maxBatchBytes)
	}
	var ops []batchOp
	if err := json.Unmarshal(body, &ops); err != nil {
		return nil, errReply(http.StatusBadRequest, 0, "the batch request body is not a JSON array of operations: %v", err)
	}
	if len(ops) == 0 {
		return nil, errReply(http.StatusBadRequest, 0, "the batch request has no operations")
	}
	if len(ops) > maxBatchOperations {
		return nil, errReply(http.StatusBadRequest, 0, "the batch request has %d operations; at most %d are allowed", len(ops), maxBatchOperations)
	}
	for i, op := range ops {
		if _, ok := batchKinds[strings.ToLower(op.OperationType)]; !ok {
			return nil, errReply(http.StatusBadRequest, 0, "operation %d has an unknown operationType %q", i, op.OperationType)
		}
	}
	return ops, nil
}

// batchLocked runs a transactional batch: every operation in order, then
// either all of them stay or the container is put back as it was.
func (s *Server) batchLocked(c *container, h http.Header, body []byte) *reply {
	if !isTrue(h.Get(hdrBatchAtomic)) {
		return errReply(http.StatusBadRequest, 0, "only atomic batches (%s: True) are supported", hdrBatchAtomic)
	}
	pk, rep := c.headerPK(h)
	if rep != nil {
		return rep
	}
	ops, rep := decodeBatch(body)
	if rep != nil {
		return rep
	}
	minimal := strings.EqualFold(strings.TrimSpace(h.Get(hdrPrefer)), valPreferMinimal)

	// What a rollback restores: the documents of this logical partition
	// and every range's LSN (a batch touches one range, but it is cheap).
	undoDocs := map[string]*document{}
	undoLSN := map[*pkRange]int64{}
	for _, r := range c.ranges {
		undoLSN[r] = r.lsn
	}
	undoSeq := c.docSeq
	results := make([]batchResult, len(ops))
	failed := -1
	for i, op := range ops {
		kind := batchKinds[strings.ToLower(op.OperationType)]
		id := op.ID
		if kind == KindCreate || kind == KindUpsert {
			var v struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(op.ResourceBody, &v)
			id = v.ID
		}
		key := c.docKey(pk, id)
		if _, seen := undoDocs[key]; !seen {
			undoDocs[key] = c.docs[key]
		}
		d, status, rep := s.docOpLocked(c, kind, pk, op.ID, op.ResourceBody, op.IfMatch)
		if rep != nil {
			results[i] = batchResult{StatusCode: rep.status, SubStatusCode: rep.sub}
			failed = i
			break
		}
		res := batchResult{StatusCode: status, RequestCharge: 1}
		if kind != KindDelete {
			res.ETag = d.etag
			if kind == KindRead || !minimal {
				res.ResourceBody = c.docJSON(d, false)
			}
		}
		results[i] = res
	}
	if failed >= 0 {
		for key, d := range undoDocs {
			if d == nil {
				delete(c.docs, key)
			} else {
				c.docs[key] = d
			}
		}
		for r, lsn := range undoLSN {
			r.lsn = lsn
		}
		c.docSeq = undoSeq
		for i := range results {
			if i != failed {
				results[i] = batchResult{StatusCode: http.StatusFailedDependency}
			}
		}
	} else {
		s.commitBatchLSNLocked(c, pk, undoLSN)
	}
	b, _ := json.Marshal(results)
	status := http.StatusOK
	if failed >= 0 {
		status = http.StatusMultiStatus
	}
	epk, _ := effectivePartitionKey(pk)
	rg := c.rangeForEPK(epk)
	return jsonReply(status, b).set(hdrSessionToken, sessionToken(rg)).set(hdrLSN, strconv.FormatInt(rg.lsn, 10)).
		set(hdrRequestCharge, strconv.Itoa(len(ops)))
}

// commitBatchLSNLocked gives every document a successful batch wrote one
// LSN, the batch's: it is one transaction in the partition's log, and
// the change feed delivers it whole.
func (s *Server) commitBatchLSNLocked(c *container, pk []any, before map[*pkRange]int64) {
	epk, err := effectivePartitionKey(pk)
	if err != nil {
		return
	}
	rg := c.rangeForEPK(epk)
	if rg.lsn == before[rg] {
		return // only reads
	}
	lsn := before[rg] + 1
	for _, d := range c.docs {
		if d.lsn > before[rg] && d.pkKey == pkString(pk) {
			d.lsn = lsn
		}
	}
	rg.lsn = lsn
}
