package cosmos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Throughput is held in offers, addressed by their own id (/offers/{id})
// and found by the resource they belong to (offerResourceId, the _rid of a
// database or container). azcosmos ReadThroughput queries
// /offers for "SELECT * FROM c WHERE c.offerResourceId = '<rid>'" and then
// reads /offers/{id}; ReplaceThroughput reads and PUTs the offer back with
// new content.
//
// Limits as the service documents them: manual throughput at least 400
// RU/s in steps of 100; autoscale maximum at least 1000 RU/s in steps of
// 1000, which scales between a tenth of it and it (content.offerThroughput
// reports the tenth: the emulator has no load to scale on).

const (
	hdrOfferThroughput = "x-ms-offer-throughput"
	hdrOfferAutoscale  = "x-ms-cosmos-offer-autopilot-settings"
	hdrOfferMinRU      = "x-ms-cosmos-min-throughput"
	hdrOfferPending    = "x-ms-offer-replace-pending"

	minManualRU    = 400
	minAutoscaleRU = 1000
	// defaultContainerRU is what a container created with no throughput in
	// a database without shared throughput gets, as on a provisioned
	// account.
	defaultContainerRU = 400
)

// offer is the throughput of one database or container.
type offer struct {
	id       string
	resource string // "dbs/<dbrid>/" or "dbs/<dbrid>/colls/<collrid>/"
	ridOf    string // offerResourceId
	manual   int    // RU/s, when not autoscale
	autoMax  int    // autoscale maximum RU/s, 0 for manual
	autoInc  int    // autoscale auto-upgrade increment percent, 0 when absent
	etag     string
	ts       int64
}

// throughputSpec is the throughput a create request asks for.
type throughputSpec struct {
	manual, autoMax, autoInc int
}

func (t throughputSpec) none() bool { return t.manual == 0 && t.autoMax == 0 }

// ru is the most RU/s the spec provisions, for placing ranges.
func (t throughputSpec) ru() int { return max(t.manual, t.autoMax) }

// throughputFromHeaders reads x-ms-offer-throughput or
// x-ms-cosmos-offer-autopilot-settings from a create request.
func throughputFromHeaders(h http.Header) (throughputSpec, error) {
	var t throughputSpec
	if v := h.Get(hdrOfferThroughput); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return t, fmt.Errorf("%s %q is not a number", hdrOfferThroughput, v)
		}
		t.manual = n
	}
	if v := h.Get(hdrOfferAutoscale); v != "" {
		if t.manual != 0 {
			return t, fmt.Errorf("%s and %s cannot both be set", hdrOfferThroughput, hdrOfferAutoscale)
		}
		var a autopilot
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			return t, fmt.Errorf("%s is not valid JSON: %v", hdrOfferAutoscale, err)
		}
		t.autoMax, t.autoInc = a.MaxThroughput, a.increment()
	}
	return t, t.validate()
}

func (t throughputSpec) validate() error {
	switch {
	case t.none():
		return nil
	case t.autoMax != 0:
		if t.autoMax < minAutoscaleRU || t.autoMax%1000 != 0 {
			return fmt.Errorf("the autoscale maximum throughput %d is invalid: it must be at least %d RU/s, in steps of 1000", t.autoMax, minAutoscaleRU)
		}
	default:
		if t.manual < minManualRU || t.manual%100 != 0 {
			return fmt.Errorf("the offer throughput %d is invalid: it must be at least %d RU/s, in steps of 100", t.manual, minManualRU)
		}
	}
	return nil
}

type autopilot struct {
	MaxThroughput int `json:"maxThroughput"`
	AutoUpgrade   *struct {
		ThroughputPolicy *struct {
			IncrementPercent int `json:"incrementPercent"`
		} `json:"throughputPolicy"`
	} `json:"autoUpgradePolicy,omitempty"`
}

func (a autopilot) increment() int {
	if a.AutoUpgrade == nil || a.AutoUpgrade.ThroughputPolicy == nil {
		return 0
	}
	return a.AutoUpgrade.ThroughputPolicy.IncrementPercent
}

// newOfferLocked records an offer for a database or container.
func (s *Server) newOfferLocked(resource, rid string, t throughputSpec) {
	s.offerSeq++
	o := &offer{id: offerID(s.offerSeq), resource: resource, ridOf: rid, manual: t.manual, autoMax: t.autoMax,
		autoInc: t.autoInc, etag: s.newEtag(), ts: s.cfg.now().Unix()}
	s.offers = append(s.offers, o)
}

func (s *Server) hasOfferLocked(rid string) bool {
	return slices.ContainsFunc(s.offers, func(o *offer) bool { return o.ridOf == rid })
}

// offerID makes a short id like the service's four-character offer ids.
func offerID(n uint32) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := []byte{'A', 'A', 'A', 'A'}
	for i := 3; i >= 0 && n > 0; i-- {
		b[i] = alphabet[n%uint32(len(alphabet))]
		n /= uint32(len(alphabet))
	}
	return string(b)
}

// dropOffersLocked removes the offers of resources that no longer exist.
func (s *Server) dropOffersLocked(rids ...string) {
	s.offers = slices.DeleteFunc(s.offers, func(o *offer) bool { return slices.Contains(rids, o.ridOf) })
}

func (o *offer) json() []byte {
	content := map[string]any{"offerIsRUPerMinuteThroughputEnabled": false}
	if o.autoMax > 0 {
		content["offerThroughput"] = o.autoMax / 10
		ap := map[string]any{"maxThroughput": o.autoMax}
		if o.autoInc > 0 {
			ap["autoUpgradePolicy"] = map[string]any{"throughputPolicy": map[string]any{"incrementPercent": o.autoInc}}
		}
		content["offerAutopilotSettings"] = ap
	} else {
		content["offerThroughput"] = o.manual
	}
	b, _ := json.Marshal(map[string]any{
		"resource": o.resource, "offerType": "Invalid", "offerResourceId": o.ridOf, "offerVersion": "V2",
		"content": content, "id": o.id, "_rid": o.id, "_self": "offers/" + o.id + "/", "_etag": o.etag, "_ts": o.ts,
	})
	return b
}

func (o *offer) minRU() int {
	if o.autoMax > 0 {
		return minAutoscaleRU
	}
	return minManualRU
}

// offersLocked serves /offers (list, query) and /offers/{id} (read,
// replace).
func (s *Server) offersLocked(r *http.Request, rt route, body []byte) *reply {
	if rt.shape == 1 {
		rows := make([]queryRow, len(s.offers))
		for i, o := range s.offers {
			j := o.json()
			var v map[string]any
			_ = json.Unmarshal(j, &v)
			rows[i] = queryRow{value: v, json: j}
		}
		switch {
		case r.Method == http.MethodGet:
			return s.listLocked("Offers", rows, nil, r.Header)
		case r.Method == http.MethodPost && isQueryRequest(r.Header):
			return s.queryResourcesLocked("Offers", rows, r.Header, body)
		}
		return errReply(http.StatusMethodNotAllowed, 0, "method %s is not allowed on /offers", r.Method)
	}
	var o *offer
	for _, x := range s.offers {
		if strings.EqualFold(x.id, rt.offer) {
			o = x
		}
	}
	if o == nil {
		return errReply(http.StatusNotFound, 0, "Resource Not Found. Offer %s does not exist", rt.offer)
	}
	switch r.Method {
	case http.MethodGet:
		if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == o.etag || inm == "*") {
			return (&reply{status: http.StatusNotModified}).set("etag", o.etag)
		}
		return jsonReply(http.StatusOK, o.json()).set("etag", o.etag).set(hdrOfferMinRU, strconv.Itoa(o.minRU())).
			set(hdrOfferPending, "false")
	case http.MethodPut:
		if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != o.etag {
			return errReply(http.StatusPreconditionFailed, 0, "One of the specified pre-condition is not met.")
		}
		var in struct {
			ID              string `json:"id"`
			OfferResourceID string `json:"offerResourceId"`
			Content         struct {
				OfferThroughput int        `json:"offerThroughput"`
				Autopilot       *autopilot `json:"offerAutopilotSettings"`
			} `json:"content"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return errReply(http.StatusBadRequest, 0, "the request body is not valid JSON: %v", err)
		}
		if (in.ID != "" && !strings.EqualFold(in.ID, o.id)) || (in.OfferResourceID != "" && in.OfferResourceID != o.ridOf) {
			return errReply(http.StatusBadRequest, 0, "the offer in the body does not match the offer addressed")
		}
		var t throughputSpec
		if in.Content.Autopilot != nil {
			t.autoMax, t.autoInc = in.Content.Autopilot.MaxThroughput, in.Content.Autopilot.increment()
		} else {
			t.manual = in.Content.OfferThroughput
		}
		if t.none() {
			return errReply(http.StatusBadRequest, 0, "the offer content has neither offerThroughput nor offerAutopilotSettings.maxThroughput")
		}
		if err := t.validate(); err != nil {
			return errReply(http.StatusBadRequest, 0, "%s", err.Error())
		}
		// Switching between manual and autoscale is a separate migration
		// operation on the service, not an offer replace.
		if (t.autoMax > 0) != (o.autoMax > 0) {
			return errReply(http.StatusBadRequest, 0,
				"an offer replace cannot switch between manual and autoscale throughput (the service migrates offers with a separate operation, which the emulator does not implement)")
		}
		o.manual, o.autoMax, o.autoInc = t.manual, t.autoMax, t.autoInc
		o.etag, o.ts = s.newEtag(), s.cfg.now().Unix()
		return jsonReply(http.StatusOK, o.json()).set("etag", o.etag).set(hdrOfferMinRU, strconv.Itoa(o.minRU())).
			set(hdrOfferPending, "false")
	}
	return errReply(http.StatusMethodNotAllowed, 0, "method %s is not allowed on an offer", r.Method)
}
