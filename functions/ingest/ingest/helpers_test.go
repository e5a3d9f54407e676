package ingest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

const (
	testTopic = "urn:smn:cn-north-4:0553db98c800d5192f9bc01232b89622:imsflow-uploads"
	testToken = "eg-token-for-tests"
)

// testPKI is a certificate authority made by the tests, a TLS certificate
// for 127.0.0.1 it issued, and SMN signing keys with their certificates.
type testPKI struct {
	ca      *x509.Certificate
	caKey   crypto.Signer
	pool    *x509.CertPool
	tls     tls.Certificate
	tlsPEM  [2][]byte // certificate, key
	signers map[string]signer
}

type signer struct {
	key     crypto.Signer
	hash    crypto.Hash
	certPEM []byte
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki = newPKI(t) })
	if pki == nil {
		t.Fatal("no test PKI")
	}
	return pki
}

func newPKI(t testing.TB) *testPKI {
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	// An RSA authority: a certificate's signature algorithm is its
	// issuer's, and SMN's Java sample takes the hash from it.
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imsflow test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	p := &testPKI{ca: ca, caKey: caKey, pool: x509.NewCertPool(), signers: map[string]signer{}}
	p.pool.AddCert(ca)

	issue := func(serial int64, pub crypto.PublicKey, tmpl *x509.Certificate, alg x509.SignatureAlgorithm) []byte {
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.SignatureAlgorithm = alg
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		must(err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	tlsCert := issue(2, tlsKey.Public(), &x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, x509.SHA256WithRSA)
	keyDER, err := x509.MarshalPKCS8PrivateKey(tlsKey)
	must(err)
	p.tlsPEM = [2][]byte{tlsCert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	p.tls, err = tls.X509KeyPair(p.tlsPEM[0], p.tlsPEM[1])
	must(err)

	// SMN signs with RSA; its certificate's algorithm names the hash.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	p.signers["rsa-sha256"] = signer{rsaKey, crypto.SHA256,
		issue(3, rsaKey.Public(), &x509.Certificate{Subject: pkix.Name{CommonName: "SMN test signing"}}, x509.SHA256WithRSA)}
	p.signers["rsa-sha512"] = signer{rsaKey, crypto.SHA512,
		issue(4, rsaKey.Public(), &x509.Certificate{Subject: pkix.Name{CommonName: "SMN test signing"}}, x509.SHA512WithRSA)}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	p.signers["ecdsa-sha256"] = signer{ecKey, crypto.SHA256,
		issue(5, ecKey.Public(), &x509.Certificate{Subject: pkix.Name{CommonName: "SMN test signing"}}, x509.SHA256WithRSA)}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	// "impostor": a certificate for one key, signatures by another.
	p.signers["impostor"] = signer{other, crypto.SHA256, p.signers["rsa-sha256"].certPEM}
	return p
}

// smnSite is a stand-in for SMN's HTTPS endpoints: signing certificates at
// /smn/SMN_<signer>.pem and subscription confirmation at /confirm.
type smnSite struct {
	*httptest.Server
	certFetches atomic.Int64
	confirms    atomic.Int64
	confirmFail atomic.Bool
}

func startSMNSite(t testing.TB, p *testPKI) *smnSite {
	s := newSMNSite(p)
	t.Cleanup(s.Close)
	return s
}

// newSMNSite starts an SMN stand-in that the caller closes.
func newSMNSite(p *testPKI) *smnSite {
	s := &smnSite{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /smn/{file}", func(w http.ResponseWriter, r *http.Request) {
		s.certFetches.Add(1)
		name := strings.TrimSuffix(strings.TrimPrefix(r.PathValue("file"), "SMN_"), ".pem")
		switch name {
		case "broken":
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		case "redirect": // to another host
			http.Redirect(w, r, "https://localhost:"+r.URL.Port()+"/smn/SMN_rsa-sha256.pem", http.StatusFound)
			return
		}
		sg, ok := p.signers[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(sg.certPEM)
	})
	mux.HandleFunc("GET /confirm", func(w http.ResponseWriter, r *http.Request) {
		if s.confirmFail.Load() || r.URL.Query().Get("token") == "" {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		s.confirms.Add(1)
		_, _ = io.WriteString(w, `{"request_id":"1","subscription_urn":"urn"}`)
	})
	s.Server = httptest.NewUnstartedServer(mux)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{p.tls}}
	s.StartTLS()
	return s
}

// host returns the site's host:port.
func (s *smnSite) host() string { return strings.TrimPrefix(s.URL, "https://") }

// fixture is a running ingest function over HTTPS, its NATS and the SMN
// stand-in.
type fixture struct {
	t      testing.TB
	pki    *testPKI
	smn    *smnSite
	nats   *testenv.NATS
	js     jetstream.JetStream
	srv    *Server
	url    string
	client *http.Client
	logs   syncBuffer
}

// metric is the value of one of the server's counters, summed over the
// samples with the given labels.
func (f *fixture) metric(name string, labels ...string) int64 {
	return int64(f.srv.Telemetry().Value(name, labels...))
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// noSecrets fails the test if the logs name any of secrets.
func (f *fixture) noSecrets(secrets ...string) {
	f.t.Helper()
	logs := f.logs.String()
	if logs == "" {
		f.t.Fatal("nothing logged: the check would prove nothing")
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			f.t.Errorf("the logs name the secret %q", s)
		}
	}
}

func newFixture(t testing.TB, change func(*Config)) *fixture {
	t.Helper()
	return newFixtureWith(t, startSMNSite(t, getPKI(t)), change)
}

// newFixtureWith is newFixture with a given SMN stand-in.
func newFixtureWith(t testing.TB, site *smnSite, change func(*Config)) *fixture {
	t.Helper()
	p := getPKI(t)
	f := &fixture{t: t, pki: p, smn: site, nats: testenv.StartNATS(t)}
	_, f.js = f.nats.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	if err := runner.Ensure(ctx, f.js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for file, b := range map[string][]byte{certFile: p.tlsPEM[0], keyFile: p.tlsPEM[1]} {
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Addr: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile, Subject: "imsflow.in.objects.obs",
		MaxBodyBytes: 64 << 10, RateLimit: 1000, RateBurst: 1000, PublishTimeout: 5 * time.Second, MaxConcurrent: 64,
		SMNMaxAge: 24 * time.Hour,
		SMNTopics: []string{testTopic}, SMNCertHosts: []string{site.host()}, SMNConfirmHosts: []string{site.host(), "127.0.0.1:1"}, SMNConfirm: true,
		EGToken: imsapi.Secret("old-token, " + testToken),
	}
	if change != nil {
		change(&cfg)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}
	f.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var err error
	f.srv, err = New(cfg, f.js, zerolog.New(&f.logs).Level(zerolog.DebugLevel), WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	f.url = "https://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := testenv.Await(t, done, "the ingest server to stop"); err != nil {
			t.Errorf("Serve: %v", err)
		}
		tr.CloseIdleConnections()
	})
	return f
}

// answer is an HTTP answer of the ingest.
type answer struct {
	code   int
	header http.Header
	body   result
	raw    string
}

func (f *fixture) post(path string, header map[string]string, body []byte) answer {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return f.do(req)
}

func (f *fixture) get(path string) answer {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.url+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(req)
}

func (f *fixture) do(req *http.Request) answer {
	f.t.Helper()
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &a.body); err != nil {
			f.t.Fatalf("answer %s: %v", b, err)
		}
	}
	return a
}

// stored returns the messages in the input stream, oldest first.
func (f *fixture) stored() []*jetstream.RawStreamMsg {
	f.t.Helper()
	ctx := context.Background()
	st, err := f.js.Stream(ctx, runner.StreamIn)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// smnBody is an SMN message of testTopic, signed with the named signer
// ("" leaves it unsigned), its string to sign built here from the SMN
// user guide, independently of the code under test.
func (f *fixture) smnBody(typ, message, signerName string, before, after func(map[string]any)) []byte {
	f.t.Helper()
	m := map[string]any{
		"type": typ, "topic_urn": testTopic, "message": message, "signature_version": "v1",
		"timestamp": time.Now().UTC().Format(time.RFC3339), "signing_cert_url": f.smn.URL + "/smn/SMN_" + signerName + ".pem",
	}
	switch typ {
	case smnNotification:
		m["subject"] = "OBS event"
		m["unsubscribe_url"] = f.smn.URL + "/unsubscribe?token=unsub-secret"
	default:
		m["subscribe_url"] = f.smn.URL + "/confirm?token=t0k3n"
	}
	if before != nil {
		before(m)
	}
	if _, ok := m["message_id"]; !ok { // one per distinct message, as SMN's
		b, _ := json.Marshal(m)
		sum := sha256.Sum256(append(b, signerName...))
		m["message_id"] = hex.EncodeToString(sum[:16])
	}
	if signerName != "" {
		sg := f.pki.signers[signerName]
		str := func(k string) string { s, _ := m[k].(string); return s }
		var b strings.Builder
		keys := []string{"message", "message_id", "subject", "timestamp", "topic_urn", "type"}
		if str("type") != smnNotification {
			keys = []string{"message", "message_id", "subscribe_url", "timestamp", "topic_urn", "type"}
		}
		for _, k := range keys {
			if k == "subject" && str(k) == "" {
				continue
			}
			b.WriteString(k + "\n" + str(k) + "\n")
		}
		h := sg.hash.New()
		h.Write([]byte(b.String()))
		sig, err := sg.key.Sign(rand.Reader, h.Sum(nil), sg.hash)
		if err != nil {
			f.t.Fatal(err)
		}
		m["signature"] = base64.StdEncoding.EncodeToString(sig)
	}
	if after != nil {
		after(m) // a change after signing tampers with the message
	}
	b, err := json.Marshal(m)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func smnHeaders(typ string) map[string]string {
	return map[string]string{
		"Content-Type": "application/json; charset=UTF-8", "X-SMN-MESSAGE-TYPE": typ,
		"X-SMN-MESSAGE-ID": "d86c201092574e71a3ca85826652c58b", "X-SMN-TOPIC-URN": testTopic,
	}
}

// obsMessage is an OBS notification (the SMN message) of records.
func obsMessage(records ...string) string {
	return `{"Records":[` + strings.Join(records, ",") + `]}`
}

func obsRecord(event, key string, size int64, etag, sequencer string) string {
	b, _ := json.Marshal(map[string]any{
		"eventVersion": "3.0", "eventSource": "OBS", "eventRegion": "cn-north-4", "eventTime": "2026-11-23T08:15:29.000Z",
		"eventName": event,
		"obs": map[string]any{
			"Version": "1.0", "configurationId": "imsflow",
			"bucket": map[string]any{"name": "images", "bucket": "images"},
			"object": map[string]any{"key": key, "eTag": etag, "size": size, "versionId": "null", "sequencer": sequencer},
		},
	})
	return string(b)
}
