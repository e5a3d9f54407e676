package ingest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	_ "crypto/sha1" // hashes a signing certificate may name
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/pkg/events"
)

// SMN message types (the type member and the X-SMN-MESSAGE-TYPE header).
const (
	smnNotification  = "Notification"
	smnSubscription  = "SubscriptionConfirmation"
	smnUnsubscribe   = "UnsubscribeConfirmation"
	smnSignatureV1   = "v1"
	maxCertBytes     = 64 << 10
	smnFetchDeadline = 10 * time.Second
)

// smnMessage is the body SMN posts to an HTTP(S) subscriber (SMN user
// guide, "HTTP/HTTPS Message Format").
type smnMessage struct {
	Type             string  `json:"type"`
	Signature        string  `json:"signature"`
	SignatureVersion string  `json:"signature_version"`
	TopicURN         string  `json:"topic_urn"`
	MessageID        string  `json:"message_id"`
	Subject          *string `json:"subject"`
	Message          string  `json:"message"`
	Timestamp        string  `json:"timestamp"`
	SubscribeURL     string  `json:"subscribe_url"`
	UnsubscribeURL   string  `json:"unsubscribe_url"`
	SigningCertURL   string  `json:"signing_cert_url"`
}

// stringsToSign returns what SMN signs for m: its members in alphabetical
// order, each name and each value on a line of its own. A notification
// with an empty subject leaves the subject out; SMN's samples disagree on
// whether an empty (not missing) one is signed, so both are returned.
func (m *smnMessage) stringsToSign() []string {
	line := func(b *strings.Builder, k, v string) {
		b.WriteString(k)
		b.WriteByte('\n')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	build := func(withSubject bool) string {
		var b strings.Builder
		line(&b, "message", m.Message)
		line(&b, "message_id", m.MessageID)
		switch {
		case m.Type != smnNotification:
			line(&b, "subscribe_url", m.SubscribeURL)
		case withSubject:
			line(&b, "subject", *m.Subject)
		}
		line(&b, "timestamp", m.Timestamp)
		line(&b, "topic_urn", m.TopicURN)
		line(&b, "type", m.Type)
		return b.String()
	}
	if m.Type != smnNotification || m.Subject == nil {
		return []string{build(false)}
	}
	if *m.Subject != "" {
		return []string{build(true)}
	}
	return []string{build(false), build(true)}
}

// verifySMN checks m's signature with the public key of cert. The hash is
// the one of the certificate's own signature algorithm, as SMN's Java
// sample does (Signature.getInstance(cert.getSigAlgName())), then SHA-256,
// as its Go sample does.
func verifySMN(cert *x509.Certificate, m *smnMessage) error {
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return errors.New("signature is not base64")
	}
	hashes := []crypto.Hash{certHash(cert.SignatureAlgorithm)}
	if hashes[0] != crypto.SHA256 {
		hashes = append(hashes, crypto.SHA256)
	}
	for _, s := range m.stringsToSign() {
		for _, h := range hashes {
			d := h.New()
			d.Write([]byte(s))
			sum := d.Sum(nil)
			switch pub := cert.PublicKey.(type) {
			case *rsa.PublicKey:
				if rsa.VerifyPKCS1v15(pub, h, sum, sig) == nil {
					return nil
				}
			case *ecdsa.PublicKey:
				if ecdsa.VerifyASN1(pub, sum, sig) {
					return nil
				}
			default:
				return fmt.Errorf("the signing certificate's key is a %T; want RSA or ECDSA", cert.PublicKey)
			}
		}
	}
	return errors.New("signature does not match the message")
}

func certHash(a x509.SignatureAlgorithm) crypto.Hash {
	switch a {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1:
		return crypto.SHA1
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		return crypto.SHA384
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		return crypto.SHA512
	}
	return crypto.SHA256
}

// fetchError is a failure to fetch a certificate or a confirmation;
// transient ones (network, 5xx, 429) are worth a retry by the sender.
type fetchError struct {
	transient bool
	err       error
}

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// certCache holds signing certificates in two pools. A certificate that
// has verified a message is pinned: kept for certPinnedTTL (SMN names each
// certificate's URL after it) and never pushed out by unverified ones, so
// that requests with forged certificate URLs cannot evict the genuine
// certificate. Every other fetch, done or under way, is pending: at most
// certPendingSize of them, started at most certMissRate per second, a
// failure remembered for certFailTTL.
type certCache struct {
	client  *http.Client
	mu      sync.Mutex
	pinned  map[string]pinnedCert
	pending map[string]*certEntry
	misses  *rate.Limiter
	now     func() time.Time
}

const (
	certPinnedSize  = 16
	certPinnedTTL   = 30 * 24 * time.Hour
	certPendingSize = 16
	certPendingTTL  = time.Hour
	certFailTTL     = 10 * time.Second
	certMissRate    = 2
	certMissBurst   = 8
)

type pinnedCert struct {
	cert     *x509.Certificate
	verified time.Time
}

type certEntry struct {
	done    chan struct{}
	cert    *x509.Certificate
	err     error
	fetched time.Time
}

// errCertBusy: too many certificates are being fetched.
var errCertBusy = &fetchError{transient: true, err: errors.New("too many unknown signing certificates asked for at once; retry")}

func newCertCache(c *http.Client) *certCache {
	return &certCache{
		client: c, pinned: make(map[string]pinnedCert), pending: make(map[string]*certEntry),
		misses: rate.NewLimiter(certMissRate, certMissBurst), now: time.Now,
	}
}

// get returns the certificate at url (normalised by the caller), fetching
// it once however many requests ask at the same time.
func (c *certCache) get(ctx context.Context, url string) (*x509.Certificate, error) {
	c.mu.Lock()
	now := c.now()
	if p, ok := c.pinned[url]; ok && now.Sub(p.verified) < certPinnedTTL {
		c.mu.Unlock()
		return p.cert, nil
	}
	e, ok := c.pending[url]
	if ok {
		select {
		case <-e.done:
			if (e.err != nil && now.Sub(e.fetched) > certFailTTL) || (e.err == nil && now.Sub(e.fetched) > certPendingTTL) {
				delete(c.pending, url)
				ok = false
			}
		default:
		}
	}
	if !ok {
		if len(c.pending) >= certPendingSize && !c.evictLocked() || !c.misses.AllowN(now, 1) {
			c.mu.Unlock()
			return nil, errCertBusy
		}
		e = &certEntry{done: make(chan struct{})}
		c.pending[url] = e
		go func() {
			// Not ctx: the fetch serves every request waiting for it.
			fctx, cancel := context.WithTimeout(context.Background(), smnFetchDeadline)
			defer cancel()
			cert, err := fetchCert(fctx, c.client, url)
			c.mu.Lock()
			e.cert, e.err, e.fetched = cert, err, c.now()
			c.mu.Unlock()
			close(e.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.cert, e.err
	case <-ctx.Done():
		return nil, &fetchError{transient: true, err: fmt.Errorf("fetching the signing certificate: %w", ctx.Err())}
	}
}

// pin keeps the certificate at url: it has verified a message.
func (c *certCache) pin(url string, cert *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, url)
	if _, ok := c.pinned[url]; !ok && len(c.pinned) >= certPinnedSize {
		var oldest string
		for u, p := range c.pinned {
			if oldest == "" || p.verified.Before(c.pinned[oldest].verified) {
				oldest = u
			}
		}
		delete(c.pinned, oldest)
	}
	c.pinned[url] = pinnedCert{cert: cert, verified: c.now()}
}

// evictLocked drops a finished pending entry, the oldest; it reports
// false when every one is still being fetched.
func (c *certCache) evictLocked() bool {
	var oldest string
	var at time.Time
	for u, e := range c.pending {
		select {
		case <-e.done:
		default:
			continue // in flight
		}
		if oldest == "" || e.fetched.Before(at) {
			oldest, at = u, e.fetched
		}
	}
	if oldest == "" {
		return false
	}
	delete(c.pending, oldest)
	return true
}

// certKey checks that u is where SMN keeps signing certificates
// (/smn/SMN_<region>_<id>.pem, no query) and returns it in one spelling,
// so that no two spellings of one URL take two places in the cache.
func certKey(u *neturl.URL) (string, error) {
	name, ok := strings.CutPrefix(u.EscapedPath(), "/smn/SMN_")
	if !ok || !strings.HasSuffix(name, ".pem") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery ||
		strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
		return "", fmt.Errorf("%q is not an SMN signing certificate's URL (/smn/SMN_<region>_<id>.pem)", withoutQuery(u.String()))
	}
	return "https://" + canonicalHost(u) + "/smn/SMN_" + name, nil
}

func fetchCert(ctx context.Context, client *http.Client, rawURL string) (*x509.Certificate, error) {
	body, err := fetch(ctx, client, rawURL, maxCertBytes)
	url := withoutQuery(rawURL)
	if err != nil {
		return nil, err
	}
	der := body
	if b, _ := pem.Decode(body); b != nil {
		if b.Type != "CERTIFICATE" {
			return nil, &fetchError{err: fmt.Errorf("the signing certificate at %s is a PEM %q, not a CERTIFICATE", url, b.Type)}
		}
		der = b.Bytes
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, &fetchError{err: fmt.Errorf("the signing certificate at %s: %v", url, err)}
	}
	return cert, nil
}

// fetch GETs url and returns at most limit bytes of a 2xx body. Its
// errors name the URL without its query, which for a subscribe_url holds
// a confirmation token.
func fetch(ctx context.Context, client *http.Client, rawURL string, limit int64) ([]byte, error) {
	url := withoutQuery(rawURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &fetchError{err: fmt.Errorf("GET %s: bad URL", url)}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the whole URL
		}
		return nil, &fetchError{transient: !errors.Is(err, errRedirect), err: fmt.Errorf("GET %s: %w", url, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return nil, &fetchError{transient: true, err: fmt.Errorf("GET %s: %w", url, err)}
	case resp.StatusCode/100 != 2:
		transient := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		return nil, &fetchError{transient: transient, err: fmt.Errorf("GET %s: %s", url, resp.Status)}
	case int64(len(body)) > limit:
		return nil, &fetchError{err: fmt.Errorf("GET %s: more than %d bytes", url, limit)}
	}
	return body, nil
}

// withoutQuery returns raw without its query and fragment.
func withoutQuery(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "(a malformed URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// smn handles one SMN delivery.
func (s *Server) smn(r *http.Request, body []byte) reply {
	var m smnMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return failure(http.StatusBadRequest, "the body is not an SMN message: %v", err)
	}
	switch {
	case m.Type == "":
		return failure(http.StatusBadRequest, "the body is not an SMN message: it has no type")
	case m.Type != smnNotification && m.Type != smnSubscription && m.Type != smnUnsubscribe:
		return failure(http.StatusBadRequest, "type %q is not an SMN message type", m.Type)
	case r.Header.Get("X-SMN-MESSAGE-TYPE") != "" && r.Header.Get("X-SMN-MESSAGE-TYPE") != m.Type:
		return failure(http.StatusBadRequest, "X-SMN-MESSAGE-TYPE %q differs from the body's type %q", r.Header.Get("X-SMN-MESSAGE-TYPE"), m.Type)
	case r.Header.Get("X-SMN-TOPIC-URN") != "" && r.Header.Get("X-SMN-TOPIC-URN") != m.TopicURN:
		return failure(http.StatusBadRequest, "X-SMN-TOPIC-URN %q differs from the body's topic_urn %q", r.Header.Get("X-SMN-TOPIC-URN"), m.TopicURN)
	case !topicAllowed(s.cfg.SMNTopics, m.TopicURN):
		return refuse(http.StatusForbidden, "topic", "topic %q is not one of INGEST_SMN_TOPICS", m.TopicURN)
	}
	if rep, ok := s.authenticSMN(r.Context(), &m); !ok {
		return rep
	}
	seen := m.TopicURN + "\x00" + m.MessageID
	if m.MessageID != "" && s.seen.has(seen) {
		s.metrics.smnReplays.Inc()
		return reply{code: http.StatusOK, body: result{Replayed: true}}
	}
	if !s.limiter.Allow() {
		return throttled(s.cfg.RateLimit)
	}
	rep := s.smnAuthentic(r.Context(), &m)
	if rep.code == http.StatusOK && m.MessageID != "" {
		s.seen.add(seen)
	}
	return rep
}

// smnAuthentic handles an authentic SMN message.
func (s *Server) smnAuthentic(ctx context.Context, m *smnMessage) reply {
	log := s.log.With().Str("topic", m.TopicURN).Str("message_id", m.MessageID).Logger()
	switch m.Type {
	case smnSubscription:
		return s.confirm(ctx, m, log)
	case smnUnsubscribe:
		s.metrics.smnUnsubscriptions.Inc()
		log.Warn().Msg("SMN ended this endpoint's subscription to the topic: no more uploads will arrive from it until it is subscribed again")
		return reply{code: http.StatusOK}
	}
	// Only the signed members count: the OBS notification is message, and
	// whatever else the body holds is ignored.
	recs, skipped, err := events.SplitObjectEvents([]byte(m.Message))
	res := result{Skipped: len(skipped)}
	if err != nil {
		log.Warn().Err(err).Msg("an authentic SMN notification that is no OBS notification: passed on to be rejected")
		return s.publishAll(ctx, "smn", nil, [][]byte{[]byte(m.Message)}, res)
	}
	return s.publishAll(ctx, "smn", recs, nil, res)
}

// authenticSMN checks m's signature; when it fails, the reply says why.
func (s *Server) authenticSMN(ctx context.Context, m *smnMessage) (reply, bool) {
	if m.Signature == "" {
		if s.cfg.SMNAllowUnsigned {
			return reply{}, true
		}
		return refuse(http.StatusForbidden, "unsigned", "the message carries no signature (INGEST_SMN_ALLOW_UNSIGNED is off)"), false
	}
	if !strings.EqualFold(m.SignatureVersion, smnSignatureV1) {
		return refuse(http.StatusForbidden, "signature_version", "signature_version %q: only v1 is known", m.SignatureVersion), false
	}
	region, _ := topicRegion(m.TopicURN)
	u, err := allowedURL(s.cfg.SMNCertHosts, region, m.SigningCertURL)
	if err != nil {
		return refuse(http.StatusForbidden, "certificate_url", "signing_cert_url: %v (INGEST_SMN_CERT_HOSTS)", err), false
	}
	key, err := certKey(u)
	if err != nil {
		return refuse(http.StatusForbidden, "certificate_url", "signing_cert_url: %v", err), false
	}
	cert, err := s.certs.get(ctx, key)
	if err != nil {
		var fe *fetchError
		if errors.As(err, &fe) && fe.transient {
			return unavailable("cannot fetch the signing certificate now: %v", err), false
		}
		return refuse(http.StatusForbidden, "certificate", "%v", err), false
	}
	if err := verifySMN(cert, m); err != nil {
		return refuse(http.StatusForbidden, "signature", "%v", err), false
	}
	s.certs.pin(key, cert)
	// The timestamp is signed: an old one is a replay, not a forgery.
	if t, err := time.Parse(time.RFC3339, m.Timestamp); err == nil && s.cfg.SMNMaxAge > 0 && time.Since(t) > s.cfg.SMNMaxAge {
		return refuse(http.StatusForbidden, "stale", "the message is from %s, older than INGEST_SMN_MAX_AGE %s: a replay", m.Timestamp, s.cfg.SMNMaxAge), false
	}
	return reply{}, true
}

// confirm confirms a subscription by fetching its subscribe_url.
func (s *Server) confirm(ctx context.Context, m *smnMessage, log zerolog.Logger) reply {
	if !s.cfg.SMNConfirm {
		log.Warn().Msg("a subscription confirmation arrived and INGEST_SMN_CONFIRM is off: confirm it in the SMN console")
		return reply{code: http.StatusOK}
	}
	region, _ := topicRegion(m.TopicURN)
	u, err := allowedURL(s.cfg.SMNConfirmHosts, region, m.SubscribeURL)
	if err != nil {
		s.metrics.smnConfirmations.WithLabelValues("refused").Inc()
		return refuse(http.StatusForbidden, "subscribe_url", "subscribe_url: %v (INGEST_SMN_CONFIRM_HOSTS)", err)
	}
	ctx, cancel := context.WithTimeout(ctx, smnFetchDeadline)
	defer cancel()
	if _, err := fetch(ctx, s.client, u.String(), 64<<10); err != nil {
		s.metrics.smnConfirmations.WithLabelValues("failed").Inc()
		r := failure(http.StatusBadGateway, "confirming the subscription: %v", err)
		r.retryAfter = 5 * time.Second
		return r
	}
	s.metrics.smnConfirmations.WithLabelValues("confirmed").Inc()
	log.Info().Msg("subscription to the topic confirmed")
	return reply{code: http.StatusOK, body: result{Confirmed: true}}
}
