package ingest

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/imsflow/imsflow/pkg/events"
)

// maxEvents bounds the events of one EventGrid delivery (EG sends at most
// 20 per request).
const maxEvents = 100

// eventGrid handles one EventGrid delivery.
// Its token was checked before the body was read (authenticEG).
func (s *Server) eventGrid(r *http.Request, body []byte) reply {
	if !s.limiter.Allow() {
		return throttled(s.cfg.RateLimit)
	}
	evs, err := egEvents(r.Header, body)
	if err != nil {
		return failure(http.StatusBadRequest, "%v", err)
	}
	var recs []events.ObjectRecord
	var undecodable [][]byte
	var res result
	for _, ev := range evs {
		rs, skipped, err := events.SplitObjectEvents(ev)
		if err != nil {
			s.log.Warn().Err(err).Msg("an EventGrid event that is no OBS notification: passed on to be rejected")
			undecodable = append(undecodable, ev)
			continue
		}
		recs = append(recs, rs...)
		res.Skipped += len(skipped)
	}
	return s.publishAll(r.Context(), "eventgrid", recs, undecodable, res)
}

// authenticEG checks the shared token. EventGrid's webhook targets send
// static headers only (their target detail has header_parameters, some
// marked secret), so a token is what it can prove itself with.
func (s *Server) authenticEG(r *http.Request) (reply, bool) {
	if len(s.tokens) == 0 {
		return refuse(http.StatusForbidden, "not_configured", "EventGrid deliveries are refused: INGEST_EG_TOKEN is not set"), false
	}
	got := r.Header.Get("X-Imsflow-Token")
	if a := r.Header.Get("Authorization"); got == "" && a != "" {
		scheme, tok, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return refuse(http.StatusUnauthorized, "no_token", "Authorization is not \"Bearer <token>\""), false
		}
		got = strings.TrimSpace(tok)
	}
	if got == "" {
		return refuse(http.StatusUnauthorized, "no_token", "no token: send \"Authorization: Bearer <token>\" or \"X-Imsflow-Token: <token>\""), false
	}
	// Compare digests, so that the time taken says nothing of the length.
	g := sha256.Sum256([]byte(got))
	for _, t := range s.tokens {
		w := sha256.Sum256([]byte(t))
		if subtle.ConstantTimeCompare(g[:], w[:]) == 1 {
			return reply{}, true
		}
	}
	return refuse(http.StatusForbidden, "bad_token", "the token is not INGEST_EG_TOKEN"), false
}

// egEvents returns the events of a delivery, each a JSON object: a
// binary-mode CloudEvent (ce-* headers, data in the body), a structured
// one, a JSON array of them (application/cloudevents-batch+json), or
// {"events":[...]} as EG's documentation draws a pass-through delivery.
// Any other JSON object is one event, left to the decoder: an OBS
// notification relayed as it is works too.
func egEvents(h http.Header, body []byte) ([]json.RawMessage, error) {
	if sv := h.Get("Ce-Specversion"); sv != "" {
		return binaryEvent(h, body)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("the body is empty: want a CloudEvent")
	}
	var evs []json.RawMessage
	switch trimmed[0] {
	case '[':
		if err := json.Unmarshal(trimmed, &evs); err != nil {
			return nil, fmt.Errorf("the body is not a JSON array of events: %v", err)
		}
	case '{':
		var wrapped struct {
			SpecVersion json.RawMessage `json:"specversion"`
			Events      json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(trimmed, &wrapped); err != nil {
			return nil, fmt.Errorf("the body is not JSON: %v", err)
		}
		evs = []json.RawMessage{trimmed}
		if wrapped.SpecVersion == nil && len(wrapped.Events) > 0 && wrapped.Events[0] == '[' {
			if err := json.Unmarshal(wrapped.Events, &evs); err != nil {
				return nil, fmt.Errorf("events: %v", err)
			}
		}
	default:
		if !json.Valid(trimmed) {
			return nil, fmt.Errorf("the body is not JSON")
		}
		return nil, fmt.Errorf("the body is a JSON %s: want a CloudEvent object or an array of them", jsonKind(trimmed[0]))
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("the batch holds no event")
	}
	if len(evs) > maxEvents {
		return nil, fmt.Errorf("the batch holds %d events; at most %d are taken", len(evs), maxEvents)
	}
	for i, ev := range evs {
		if t := bytes.TrimSpace(ev); len(t) == 0 || t[0] != '{' {
			return nil, fmt.Errorf("event %d is not a JSON object", i)
		}
	}
	return evs, nil
}

// binaryEvent turns a binary-mode CloudEvent into the structured one.
func binaryEvent(h http.Header, body []byte) ([]json.RawMessage, error) {
	if !json.Valid(body) {
		return nil, fmt.Errorf("the binary-mode CloudEvent's data is not JSON")
	}
	ev := map[string]json.RawMessage{"data": bytes.TrimSpace(body)}
	for k, v := range h {
		name, ok := strings.CutPrefix(strings.ToLower(k), "ce-")
		if !ok || name == "" || name == "data" || len(v) == 0 {
			continue
		}
		val := v[0]
		if u, err := url.PathUnescape(val); err == nil {
			val = u // the HTTP binding percent-encodes header values
		}
		b, _ := json.Marshal(val)
		ev[name] = b
	}
	if ct := h.Get("Content-Type"); ct != "" {
		b, _ := json.Marshal(ct)
		ev["datacontenttype"] = b
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return []json.RawMessage{b}, nil
}

func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}
