package ingest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
)

// TestSMNNotification: a signed notification of an upload and a deletion
// publishes the upload alone, once however often SMN delivers it.
func TestSMNNotification(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	msg := obsMessage(
		obsRecord("ObjectCreated:Put", "web%2Fdisk+1.qcow2", 5<<30, "e1", "0000017F3E3B2C1D"),
		obsRecord("ObjectRemoved:Delete", "old.qcow2", 0, "", "0000017F3E3B2C1E"))
	body := f.smnBody(smnNotification, msg, "rsa-sha256", nil, nil)
	for i := range 3 {
		a := f.post("/smn", smnHeaders(smnNotification), body)
		want := result{Published: 1, Skipped: 1}
		if i > 0 {
			want = result{Replayed: true} // the same message_id: handled before
		}
		if a.code != http.StatusOK || a.body != want {
			t.Fatalf("delivery %d: %d %s; want 200 %+v", i+1, a.code, a.raw, want)
		}
	}
	stored := f.stored()
	if len(stored) != 1 {
		t.Fatalf("%d messages stored, want 1", len(stored))
	}
	m := stored[0]
	if m.Subject != "imsflow.in.objects.obs" || m.Header.Get(HeaderVia) != "smn" || !strings.HasPrefix(m.Header.Get(events.HeaderMsgID), "ingest:") {
		t.Errorf("stored %s with headers %v", m.Subject, m.Header)
	}
	got, skipped, err := events.DecodeObjectEvents(m.Data)
	if err != nil || len(got) != 1 || len(skipped) != 0 {
		t.Fatalf("stored body %s decodes to %+v, %q, %v", m.Data, got, skipped, err)
	}
	if o := got[0]; o.Bucket != "images" || o.Key != "web/disk 1.qcow2" || o.Size != 5<<30 || o.ETag != "e1" || o.Sequencer != "0000017F3E3B2C1D" {
		t.Errorf("stored record %+v", o)
	}
	if n := f.smn.certFetches.Load(); n != 1 {
		t.Errorf("the signing certificate was fetched %d times, want once (cached)", n)
	}
	if n := f.metric("imsflow_ingest_smn_replays_total"); n != 2 {
		t.Errorf("replays counted %d, want 2", n)
	}
}

// TestSMNSignatureAlgorithms: the hash is the one the signing
// certificate's algorithm names, and ECDSA keys are verified too; a
// subject left empty is left out of the string to sign.
func TestSMNSignatureAlgorithms(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for i, name := range []string{"rsa-sha256", "rsa-sha512", "ecdsa-sha256"} {
		for _, subject := range []any{"OBS event", "", nil} {
			msg := obsMessage(obsRecord("ObjectCreated:Put", name+".qcow2", 1<<30, "e", "0"+string(rune('a'+i))))
			body := f.smnBody(smnNotification, msg, name, func(m map[string]any) {
				if subject == nil {
					delete(m, "subject")
				} else {
					m["subject"] = subject
				}
			}, nil)
			if a := f.post("/smn", smnHeaders(smnNotification), body); a.code != http.StatusOK || a.body.Published+a.body.Duplicates != 1 {
				t.Errorf("%s, subject %v: %d %s; want 200 and the record", name, subject, a.code, a.raw)
			}
		}
	}
}

// TestSMNRefused: what cannot be shown to come from SMN for a configured
// topic is refused with 401 or 403, counted, and never published.
func TestSMNRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	msg := obsMessage(obsRecord("ObjectCreated:Put", "a.qcow2", 1<<30, "e1", "01"))
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	type refusal struct {
		name          string
		signer        string
		before, after func(map[string]any)
		code          int
		reason        string
	}
	cases := []refusal{
		{"tampered message", "rsa-sha256", nil, set("message", obsMessage(obsRecord("ObjectCreated:Put", "evil.qcow2", 1<<30, "e2", "02"))), 403, "signature"},
		{"tampered subject", "rsa-sha256", nil, set("subject", "other"), 403, "signature"},
		{"signed by another key", "impostor", nil, nil, 403, "signature"},
		{"signature not base64", "rsa-sha256", nil, set("signature", "%%%"), 403, "signature"},
		{"unsigned", "", nil, nil, 403, "unsigned"},
		{"wrong topic", "rsa-sha256", set("topic_urn", "urn:smn:cn-north-4:0553db98c800d5192f9bc01232b89622:someone-elses"), nil, 403, "topic"},
		{"certificate from another host", "rsa-sha256", set("signing_cert_url", "https://example.com/certs/rsa-sha256.pem"), nil, 403, "certificate_url"},
		{"certificate over HTTP", "rsa-sha256", set("signing_cert_url", "http://127.0.0.1/certs/rsa-sha256.pem"), nil, 403, "certificate_url"},
		{"certificate from a bucket", "rsa-sha256", set("signing_cert_url", "https://smn.obs.cn-north-4.myhuaweicloud.com/smn/SMN_cn-north-4_1.pem"), nil, 403, "certificate_url"},
		{"certificate with a query", "rsa-sha256", func(m map[string]any) { m["signing_cert_url"] = m["signing_cert_url"].(string) + "?x=1" }, nil, 403, "certificate_url"},
		{"certificate elsewhere on the host", "rsa-sha256", func(m map[string]any) { m["signing_cert_url"] = f.smn.URL + "/certs/SMN_rsa-sha256.pem" }, nil, 403, "certificate_url"},
		{"replayed", "rsa-sha256", set("timestamp", time.Now().Add(-48*time.Hour).UTC().Format(time.RFC3339)), nil, 403, "stale"},
		{"certificate redirected elsewhere", "rsa-sha256", func(m map[string]any) { m["signing_cert_url"] = f.smn.URL + "/smn/SMN_redirect.pem" }, nil, 403, "certificate"},
		{"certificate unavailable", "rsa-sha256", func(m map[string]any) { m["signing_cert_url"] = f.smn.URL + "/smn/SMN_broken.pem" }, nil, 503, ""},
		{"signature version", "rsa-sha256", set("signature_version", "v9"), nil, 403, "signature_version"},
	}
	for _, tc := range cases {
		body := f.smnBody(smnNotification, msg, tc.signer, tc.before, tc.after)
		h := smnHeaders(smnNotification)
		if tc.reason == "topic" {
			delete(h, "X-SMN-TOPIC-URN")
		}
		a := f.post("/smn", h, body)
		if a.code != tc.code || a.body.Error == "" {
			t.Errorf("%s: %d %s; want %d and an error", tc.name, a.code, a.raw, tc.code)
		}
		if tc.reason != "" {
			if n := f.metric("imsflow_ingest_refused_total", "endpoint", "smn", "reason", tc.reason); n == 0 {
				t.Errorf("%s: not counted as refused for %q", tc.name, tc.reason)
			}
		}
	}
	forbidden := 0
	for _, tc := range cases {
		if tc.code == http.StatusForbidden {
			forbidden++
		}
	}
	if tc := cases[slices.IndexFunc(cases, func(c refusal) bool { return c.name == "certificate unavailable" })]; f.post("/smn", smnHeaders(smnNotification), f.smnBody(smnNotification, msg, tc.signer, tc.before, nil)).header.Get("Retry-After") == "" {
		t.Error("an unavailable certificate: no Retry-After")
	}
	if n := len(f.stored()); n != 0 {
		t.Errorf("%d messages published from refused requests", n)
	}
	m := f.get("/metrics").raw
	for _, want := range []string{
		`imsflow_ingest_refused_total{endpoint="smn",reason="signature"} 4`,
		`imsflow_ingest_refused_total{endpoint="smn",reason="unsigned"} 1`,
		fmt.Sprintf(`imsflow_ingest_requests_total{code="403",endpoint="smn"} %d`, forbidden),
		"# TYPE imsflow_ingest_refused_total counter",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, m)
		}
	}
}

// TestCertificatesPinned: once a certificate has verified a message,
// requests naming other certificate URLs, however many, neither evict it
// nor make it fetched again; and they are fetched at a bounded rate.
func TestCertificatesPinned(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	msg := func(i int) string {
		return obsMessage(obsRecord("ObjectCreated:Put", fmt.Sprintf("k%d.qcow2", i), 1<<30, "e", "01"))
	}
	if a := f.post("/smn", smnHeaders(smnNotification), f.smnBody(smnNotification, msg(0), "rsa-sha256", nil, nil)); a.code != 200 {
		t.Fatalf("genuine: %d %s", a.code, a.raw)
	}
	fetches := f.smn.certFetches.Load()
	busy := 0
	for i := range 40 {
		bogus := func(m map[string]any) { m["signing_cert_url"] = fmt.Sprintf("%s/smn/SMN_bogus-%d.pem", f.smn.URL, i) }
		switch a := f.post("/smn", smnHeaders(smnNotification), f.smnBody(smnNotification, msg(i), "rsa-sha256", bogus, nil)); a.code {
		case http.StatusServiceUnavailable:
			busy++
		case http.StatusForbidden:
		default:
			t.Fatalf("bogus certificate %d: %d %s", i, a.code, a.raw)
		}
	}
	if busy == 0 || f.smn.certFetches.Load()-fetches > 40-int64(busy) {
		t.Errorf("40 unknown certificate URLs: %d refused as busy, %d fetched; want the fetches limited", busy, f.smn.certFetches.Load()-fetches)
	}
	fetches = f.smn.certFetches.Load()
	if a := f.post("/smn", smnHeaders(smnNotification), f.smnBody(smnNotification, msg(1000), "rsa-sha256", nil, nil)); a.code != 200 || a.body.Published != 1 {
		t.Fatalf("genuine after the flood: %d %s", a.code, a.raw)
	}
	if f.smn.certFetches.Load() != fetches {
		t.Error("the pinned certificate was fetched again")
	}
}

// TestEventGridTokenBeforeBody: a delivery without the token is refused
// before its body is read, however large.
func TestEventGridTokenBeforeBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if a := f.post("/eventgrid", nil, make([]byte, 1<<20)); a.code != http.StatusUnauthorized {
		t.Errorf("1 MiB without a token: %d %s; want 401, not 413", a.code, a.raw)
	}
}

// TestMaxConcurrent: past INGEST_MAX_CONCURRENT requests under way, the
// answer is 503 at once.
func TestMaxConcurrent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.MaxConcurrent = 1 })
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, f.url+"/smn", pr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := f.client.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	if _, err := pw.Write([]byte(`{"type":`)); err != nil { // the request is being read
		t.Fatal(err)
	}
	waitFor(t, "a second request to be turned away", func() bool {
		return f.post("/smn", nil, []byte(`{}`)).code == http.StatusServiceUnavailable
	})
	_ = pw.Close()
	testenv.Await(t, done, "the first request to finish")
	if a := f.post("/smn", nil, []byte(`{}`)); a.code != http.StatusBadRequest {
		t.Errorf("after the slow request: %d %s; want 400", a.code, a.raw)
	}
}

// TestSMNUnsignedMembers: what a signed message carries beside its signed
// members is ignored. A body with an EventGrid envelope added after
// signing, one that the decoder would read before SMN's shape, publishes
// nothing of it.
func TestSMNUnsignedMembers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	msg := obsMessage(obsRecord("ObjectRemoved:Delete", "a.qcow2", 0, "", "01"))
	forged := `{"specversion":"1.0","type":"OBS:DWR:ObjectCreated:PUT","data":` + obsRecord("ObjectCreated:Put", "evil.qcow2", 1<<30, "e", "02") + `}`
	inject := func(m map[string]any) {
		m["specversion"], m["data"] = "1.0", json.RawMessage(forged[len(`{"specversion":"1.0","type":"OBS:DWR:ObjectCreated:PUT","data":`):len(forged)-1])
		m["Records"] = json.RawMessage("[" + obsRecord("ObjectCreated:Put", "evil2.qcow2", 1<<30, "e", "03") + "]")
	}
	a := f.post("/smn", smnHeaders(smnNotification), f.smnBody(smnNotification, msg, "rsa-sha256", nil, inject))
	if a.code != 200 || a.body != (result{Skipped: 1}) {
		t.Errorf("%d %s; want 200, the deletion skipped, nothing published", a.code, a.raw)
	}
	if n := len(f.stored()); n != 0 {
		t.Errorf("%d messages published from unsigned members", n)
	}
}

// TestSMNUnsignedAllowed: INGEST_SMN_ALLOW_UNSIGNED takes unsigned
// messages, and still refuses badly signed ones.
func TestSMNUnsignedAllowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.SMNAllowUnsigned = true })
	msg := obsMessage(obsRecord("ObjectCreated:Put", "a.qcow2", 1<<30, "e1", "01"))
	if a := f.post("/smn", smnHeaders(smnNotification), f.smnBody(smnNotification, msg, "", nil, nil)); a.code != 200 || a.body.Published != 1 {
		t.Errorf("unsigned: %d %s; want 200, published", a.code, a.raw)
	}
	if a := f.post("/smn", smnHeaders(smnNotification), f.smnBody(smnNotification, msg, "impostor", nil, nil)); a.code != 403 {
		t.Errorf("badly signed: %d %s; want 403", a.code, a.raw)
	}
}

// TestSMNSubscription: a signed confirmation of a configured topic is
// confirmed by fetching its subscribe_url; one pointing elsewhere is not
// fetched; a failed fetch is a 502 for SMN to retry.
func TestSMNSubscription(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	msg := "You are invited to subscribe to topic " + testTopic
	a := f.post("/smn", smnHeaders(smnSubscription), f.smnBody(smnSubscription, msg, "rsa-sha256", nil, nil))
	if a.code != 200 || !a.body.Confirmed || f.smn.confirms.Load() != 1 {
		t.Fatalf("confirmation: %d %s, %d confirmations; want 200, confirmed once", a.code, a.raw, f.smn.confirms.Load())
	}
	for _, u := range []string{"https://evil.example/confirm?token=secret-t", "http://127.0.0.1/confirm?token=secret-t"} {
		elsewhere := func(m map[string]any) { m["subscribe_url"] = u }
		a := f.post("/smn", smnHeaders(smnSubscription), f.smnBody(smnSubscription, msg, "rsa-sha256", elsewhere, nil))
		if a.code != 403 || strings.Contains(a.raw, "secret-t") {
			t.Errorf("subscribe_url %s: %d %s; want 403 without the token", u, a.code, a.raw)
		}
	}
	other := func(m map[string]any) { m["topic_urn"] = "urn:smn:cn-north-4:1:other" }
	if a := f.post("/smn", nil, f.smnBody(smnSubscription, msg, "rsa-sha256", other, nil)); a.code != 403 {
		t.Errorf("another topic: %d %s; want 403", a.code, a.raw)
	}
	f.smn.confirmFail.Store(true)
	a = f.post("/smn", smnHeaders(smnSubscription), f.smnBody(smnSubscription, msg+" again", "rsa-sha256", nil, nil))
	if a.code != http.StatusBadGateway || strings.Contains(a.raw, "t0k3n") {
		t.Errorf("failed confirmation: %d %s; want 502 without the URL's token", a.code, a.raw)
	}
	unreachable := func(m map[string]any) { m["subscribe_url"] = "https://127.0.0.1:1/confirm?token=secret-t" }
	a = f.post("/smn", smnHeaders(smnSubscription), f.smnBody(smnSubscription, msg, "rsa-sha256", unreachable, nil))
	if a.code != http.StatusBadGateway || strings.Contains(a.raw, "secret-t") || !strings.Contains(a.raw, "127.0.0.1:1/confirm") {
		t.Errorf("unreachable confirmation: %d %s; want 502 naming the URL without its token", a.code, a.raw)
	}
	if n := f.smn.confirms.Load(); n != 1 {
		t.Errorf("%d confirmations, want 1", n)
	}
	a = f.post("/smn", smnHeaders(smnUnsubscribe), f.smnBody(smnUnsubscribe, "unsubscribed", "rsa-sha256", nil, nil))
	if a.code != 200 || f.metric("imsflow_ingest_smn_unsubscriptions_total") != 1 {
		t.Errorf("unsubscribe confirmation: %d %s; want 200 and counted", a.code, a.raw)
	}
	if n := len(f.stored()); n != 0 {
		t.Errorf("%d messages published from confirmations", n)
	}
	f.noSecrets("t0k3n", "secret-t", "token=")
}

// TestBadRequests: bodies that are too large or not JSON get a clear 4xx
// and publish nothing; an authentic notification whose message is no OBS
// notification is passed on, for the import function to reject.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	big := f.smnBody(smnNotification, obsMessage(obsRecord("ObjectCreated:Put", strings.Repeat("k", 5000)+".qcow2", 1, "e", "1")), "rsa-sha256", nil, nil)
	if a := f.post("/smn", smnHeaders(smnNotification), big); a.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize: %d %s; want 413", a.code, a.raw)
	}
	for _, body := range []string{`{"type":"Notification",`, `not json`, ``, `[]`, `{"message":"x"}`} {
		if a := f.post("/smn", smnHeaders(smnNotification), []byte(body)); a.code != http.StatusBadRequest || a.body.Error == "" {
			t.Errorf("SMN body %q: %d %s; want 400 with a reason", body, a.code, a.raw)
		}
	}
	eg := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/cloudevents+json"}
	for _, body := range []string{`{"specversion":"1.0",`, `"a string"`, `[]`, `[1,2]`, ``} {
		if a := f.post("/eventgrid", eg, []byte(body)); a.code != http.StatusBadRequest || a.body.Error == "" {
			t.Errorf("EventGrid body %q: %d %s; want 400 with a reason", body, a.code, a.raw)
		}
	}
	if a := f.get("/smn"); a.code != http.StatusMethodNotAllowed {
		t.Errorf("GET /smn: %d; want 405", a.code)
	}
	if n := len(f.stored()); n != 0 {
		t.Fatalf("%d messages published from bad requests", n)
	}

	notOBS := f.smnBody(smnNotification, `{"alarm":"cpu high"}`, "rsa-sha256", nil, nil)
	a := f.post("/smn", smnHeaders(smnNotification), notOBS)
	if a.code != 200 || a.body.Rejected != 1 {
		t.Fatalf("authentic non-OBS notification: %d %s; want 200, rejected 1", a.code, a.raw)
	}
	stored := f.stored()
	if len(stored) != 1 || string(stored[0].Data) != `{"alarm":"cpu high"}` {
		t.Fatalf("stored %d messages; want the notification's message (no signature, no URLs) as it came", len(stored))
	}
	if _, _, err := events.DecodeObjectEvents(stored[0].Data); err == nil {
		t.Error("the passed-on notification decodes; the import function would not reject it")
	}
}

// TestEventGrid: deliveries with the token are published, structured,
// batched, wrapped or binary; without it they are refused.
func TestEventGrid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	event := func(id, key, seq string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"HC.OBS.DWR","type":"OBS:DWR:ObjectCreated:PUT","subject":"` + key +
			`","time":"2026-11-23T08:15:30Z","datacontenttype":"application/json","data":` + obsRecord("ObjectCreated:Put", key, 2<<30, "e-"+key, seq) + `}`
	}
	auth := func(ct string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": ct}
	}
	cases := []struct {
		name   string
		header map[string]string
		body   string
		want   result
	}{
		{"structured", auth("application/cloudevents+json; charset=utf-8"), event("1", "a.vhd", "1"), result{Published: 1}},
		{"batch", auth("application/cloudevents-batch+json"), "[" + event("2", "b.vhd", "2") + "," + event("3", "c.vhd", "3") + "]", result{Published: 2}},
		{"wrapped", auth("application/json"), `{"events":[` + event("4", "d.vhd", "4") + `]}`, result{Published: 1}},
		{"retried batch", map[string]string{"X-Imsflow-Token": testToken}, "[" + event("2", "b.vhd", "2") + "," + event("3", "c.vhd", "3") + "]", result{Duplicates: 2}},
		{"binary", map[string]string{"Authorization": "bearer " + testToken, "Content-Type": "application/json", "Ce-Specversion": "1.0",
			"Ce-Id": "5", "Ce-Source": "HC.OBS.DWR", "Ce-Type": "OBS%3ADWR%3AObjectCreated%3APUT"}, obsRecord("ObjectCreated:Put", "e.vhd", 1<<30, "e5", "5"), result{Published: 1}},
		{"other event", auth("application/cloudevents+json"), `{"specversion":"1.0","id":"6","type":"OBS:DWR:ObjectRemoved:DELETE","data":` + obsRecord("ObjectRemoved:Delete", "f.vhd", 0, "", "6") + `}`, result{Skipped: 1}},
		{"another type", auth("application/cloudevents+json"), `{"specversion":"1.0","id":"7","type":"com.example.other","data":{"x":1}}`, result{Skipped: 1}},
		{"upload without object", auth("application/cloudevents+json"), `{"specversion":"1.0","id":"8","type":"OBS:DWR:ObjectCreated:PUT","data":{"x":1}}`, result{Rejected: 1}},
	}
	for _, tc := range cases {
		a := f.post("/eventgrid", tc.header, []byte(tc.body))
		if a.code != 200 || a.body != tc.want {
			t.Errorf("%s: %d %s; want 200 %+v", tc.name, a.code, a.raw, tc.want)
		}
	}
	stored := f.stored()
	if len(stored) != 6 {
		t.Fatalf("%d messages stored, want 6 (5 records, 1 passed on)", len(stored))
	}
	for _, m := range stored[:5] {
		got, _, err := events.DecodeObjectEvents(m.Data)
		if err != nil || len(got) != 1 || got[0].Shape != events.ShapeEventGrid || m.Header.Get(HeaderVia) != "eventgrid" {
			t.Errorf("stored %s: %+v, %v", m.Data, got, err)
		}
	}

	before := len(stored)
	for _, tc := range []struct {
		name   string
		header map[string]string
		code   int
		reason string
	}{
		{"no token", map[string]string{"Content-Type": "application/cloudevents+json"}, 401, "no_token"},
		{"basic auth", map[string]string{"Authorization": "Basic dTpw"}, 401, "no_token"},
		{"wrong token", map[string]string{"Authorization": "Bearer " + testToken + "x"}, 403, "bad_token"},
		{"wrong header token", map[string]string{"X-Imsflow-Token": "nope"}, 403, "bad_token"},
	} {
		a := f.post("/eventgrid", tc.header, []byte(event("9", "z.vhd", "9")))
		if a.code != tc.code || f.metric("imsflow_ingest_refused_total", "endpoint", "eventgrid", "reason", tc.reason) == 0 {
			t.Errorf("%s: %d %s; want %d counted as %s", tc.name, a.code, a.raw, tc.code, tc.reason)
		}
		if tc.code == 401 && a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	if n := len(f.stored()); n != before {
		t.Errorf("refused deliveries published %d messages", n-before)
	}
	f.noSecrets(testToken, "old-token")
}

// TestEventGridNotConfigured: with no token configured, EventGrid is
// refused, whatever the request carries.
func TestEventGridNotConfigured(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.EGToken = "" })
	a := f.post("/eventgrid", map[string]string{"Authorization": "Bearer "}, []byte(`{}`))
	if a.code != 403 {
		t.Errorf("%d %s; want 403", a.code, a.raw)
	}
}

// TestNATSUnavailable: while NATS is down the ingest is not ready and
// answers 503 with Retry-After, storing nothing; once NATS is back, the
// sender's retry is stored, once.
func TestNATSUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if a := f.get("/readyz"); a.code != 200 {
		t.Fatalf("/readyz: %d %s; want 200", a.code, a.raw)
	}
	body := f.smnBody(smnNotification, obsMessage(obsRecord("ObjectCreated:Put", "a.qcow2", 1<<30, "e1", "01")), "rsa-sha256", nil, nil)
	f.nats.Shutdown()
	waitFor(t, "NATS to be seen gone", func() bool { return f.get("/readyz").code == http.StatusServiceUnavailable })
	a := f.post("/smn", smnHeaders(smnNotification), body)
	if a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("NATS down: %d %s; want 503 with Retry-After", a.code, a.raw)
	}
	if a := f.get("/healthz"); a.code != 200 {
		t.Errorf("/healthz with NATS down: %d; want 200 (the process is alive)", a.code)
	}
	f.nats.Restart(t)
	waitFor(t, "NATS to be back", func() bool { return f.get("/readyz").code == http.StatusOK })
	a = f.post("/smn", smnHeaders(smnNotification), body)
	if a.code != 200 || a.body.Published+a.body.Duplicates != 1 {
		t.Fatalf("NATS back: %d %s; want 200", a.code, a.raw)
	}
	if n := len(f.stored()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// TestRateLimit: past the request rate the answer is 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.001, 2 })
	var codes []int
	for i := range 3 {
		body := f.smnBody(smnNotification, obsMessage(obsRecord("ObjectCreated:Put", fmt.Sprintf("a%d.qcow2", i), 1<<30, "e1", "01")), "rsa-sha256", nil, nil)
		codes = append(codes, f.post("/smn", smnHeaders(smnNotification), body).code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusTooManyRequests {
		t.Errorf("codes %v; want [200 200 429]", codes)
	}
}

// waitFor polls cond until it holds, failing the test after
// testenv.Patience.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, what, cond)
}
