package ingest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Function is the ingest function's name: in logs, its NATS connection
// name and dead letters.
const Function = "ingest"

// Config is the ingest function's configuration, read from the
// environment (Variables documents every variable).
type Config struct {
	// Addr is where the HTTP(S) server listens.
	Addr string `env:"INGEST_ADDR" envDefault:":8080"`
	// TLSCert and TLSKey, both or neither, make the server speak HTTPS.
	TLSCert string `env:"INGEST_TLS_CERT"`
	TLSKey  string `env:"INGEST_TLS_KEY"`
	// Subject takes every object record received.
	Subject string `env:"INGEST_SUBJECT" envDefault:"imsflow.in.objects.obs"`
	// MaxBodyBytes bounds a request's body; more is refused with 413.
	MaxBodyBytes int64 `env:"INGEST_MAX_BODY_BYTES" envDefault:"1048576"`
	// RateLimit and RateBurst bound the requests the process serves per
	// second; more are answered 429 with Retry-After.
	RateLimit float64 `env:"INGEST_RATE_LIMIT" envDefault:"200"`
	RateBurst int     `env:"INGEST_RATE_BURST" envDefault:"400"`
	// PublishTimeout bounds waiting for JetStream to acknowledge a
	// request's records; past it the answer is 503 and the sender retries.
	PublishTimeout time.Duration `env:"INGEST_PUBLISH_TIMEOUT" envDefault:"5s"`

	// SMNTopics are the topic URNs whose messages are taken; a URN ending
	// in '*' matches every URN it prefixes. None: SMN is refused.
	SMNTopics []string `env:"INGEST_SMN_TOPICS"`
	// SMNHosts are the host names (and their subdomains) the signing
	// certificate and the subscription URL may come from, over HTTPS.
	SMNHosts []string `env:"INGEST_SMN_HOSTS" envDefault:"myhuaweicloud.com,huaweicloud.com"`
	// SMNConfirm confirms subscriptions to SMNTopics by fetching their
	// subscribe_url.
	SMNConfirm bool `env:"INGEST_SMN_CONFIRM" envDefault:"true"`
	// SMNAllowUnsigned takes SMN messages that carry no signature. Only
	// for endpoints no one else can reach.
	SMNAllowUnsigned bool `env:"INGEST_SMN_ALLOW_UNSIGNED"`

	// EGToken is the shared token an EventGrid delivery must carry, as
	// "Authorization: Bearer <token>" or "X-Imsflow-Token: <token>";
	// several, comma-separated, while rotating. None: EventGrid is refused.
	EGToken imsapi.Secret `env:"INGEST_EG_TOKEN"`
}

// Variables documents Config for the README and help texts.
var Variables = []struct{ Name, Default, Meaning string }{
	{"INGEST_ADDR", ":8080", "where the HTTP(S) server listens"},
	{"INGEST_TLS_CERT, INGEST_TLS_KEY", "", "certificate and key files: serve HTTPS"},
	{"INGEST_SUBJECT", "imsflow.in.objects.obs", "subject every object record is published to"},
	{"INGEST_MAX_BODY_BYTES", "1048576", "largest request body; more is answered 413"},
	{"INGEST_RATE_LIMIT, INGEST_RATE_BURST", "200, 400", "requests per second served; more are answered 429"},
	{"INGEST_PUBLISH_TIMEOUT", "5s", "wait for JetStream's acknowledgement; past it 503"},
	{"INGEST_SMN_TOPICS", "", "SMN topic URNs taken, comma-separated; `*` at the end matches a prefix; none refuses SMN"},
	{"INGEST_SMN_HOSTS", "myhuaweicloud.com,huaweicloud.com", "hosts (with subdomains) the signing certificate and subscribe_url may be fetched from, over HTTPS"},
	{"INGEST_SMN_CONFIRM", "true", "confirm subscriptions of the topics above"},
	{"INGEST_SMN_ALLOW_UNSIGNED", "false", "take SMN messages without a signature"},
	{"INGEST_EG_TOKEN", "", "token EventGrid must send (`Authorization: Bearer …` or `X-Imsflow-Token`); comma-separated while rotating; none refuses EventGrid"},
}

// Validate checks the combinations.
func (c Config) Validate() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("INGEST_TLS_CERT and INGEST_TLS_KEY go together")
	case !strings.HasPrefix(c.Subject, events.SubjectObjectsPrefix) || strings.ContainsAny(c.Subject[len(events.SubjectObjectsPrefix):], " *>.") || len(c.Subject) == len(events.SubjectObjectsPrefix):
		return fmt.Errorf("INGEST_SUBJECT %q: want %s<source>, e.g. %sobs", c.Subject, events.SubjectObjectsPrefix, events.SubjectObjectsPrefix)
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("INGEST_MAX_BODY_BYTES %d: want at least 1024", c.MaxBodyBytes)
	case !(c.RateLimit > 0) || c.RateBurst < 1:
		return fmt.Errorf("INGEST_RATE_LIMIT and INGEST_RATE_BURST must be positive")
	case c.PublishTimeout <= 0:
		return fmt.Errorf("INGEST_PUBLISH_TIMEOUT must be positive")
	}
	for _, t := range c.SMNTopics {
		if !strings.HasPrefix(t, "urn:smn:") {
			return fmt.Errorf("INGEST_SMN_TOPICS: %q is not an SMN topic URN (urn:smn:<region>:<project>:<topic>)", t)
		}
	}
	for _, h := range c.SMNHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			return fmt.Errorf("INGEST_SMN_HOSTS: %q is not a host name", h)
		}
	}
	return nil
}

// topicAllowed reports whether urn is one of topics.
func topicAllowed(topics []string, urn string) bool {
	for _, t := range topics {
		if p, ok := strings.CutSuffix(t, "*"); ok && strings.HasPrefix(urn, p) || t == urn {
			return true
		}
	}
	return false
}

// allowedURL checks that raw is an HTTPS URL on one of hosts or their
// subdomains: where a signing certificate or a confirmation may be
// fetched from.
func allowedURL(hosts []string, raw string) (*url.URL, error) {
	// Errors name the URL without its query: a subscribe_url's holds a
	// confirmation token.
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", withoutQuery(raw))
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%q is not an HTTPS URL", withoutQuery(raw))
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q carries user information", withoutQuery(raw))
	}
	h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for _, a := range hosts {
		a = strings.ToLower(a)
		// Subdomains of a name, never of an address.
		if h == a || (net.ParseIP(h) == nil && net.ParseIP(a) == nil && strings.HasSuffix(h, "."+a)) {
			return u, nil
		}
	}
	return nil, fmt.Errorf("host %q is not in INGEST_SMN_HOSTS %q", h, hosts)
}

// tokens returns the configured EventGrid tokens.
func (c Config) tokens() []string {
	var out []string
	for t := range strings.SplitSeq(c.EGToken.Reveal(), ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
