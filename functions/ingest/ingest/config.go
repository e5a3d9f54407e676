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
	// MaxConcurrent bounds the requests handled at once (each may hold a
	// body of MaxBodyBytes); more are answered 503 at once.
	MaxConcurrent int `env:"INGEST_MAX_CONCURRENT" envDefault:"64"`
	// PublishTimeout bounds waiting for JetStream to acknowledge a
	// request's records; past it the answer is 503 and the sender retries.
	PublishTimeout time.Duration `env:"INGEST_PUBLISH_TIMEOUT" envDefault:"5s"`

	// SMNTopics are the topic URNs whose messages are taken
	// (urn:smn:<region>:<project>:<topic>); a '*' at the end of the topic
	// name matches every name it prefixes. None: SMN is refused.
	SMNTopics []string `env:"INGEST_SMN_TOPICS"`
	// SMNCertHosts are the hosts a signing certificate is fetched from,
	// over HTTPS, {region} standing for the topic's region. Exact names:
	// a wildcard would take in OBS's bucket hosts, where anyone can put a
	// certificate of their own.
	SMNCertHosts []string `env:"INGEST_SMN_CERT_HOSTS" envDefault:"smn.{region}.myhuaweicloud.com"`
	// SMNConfirmHosts are the hosts a subscribe_url may point to.
	SMNConfirmHosts []string `env:"INGEST_SMN_CONFIRM_HOSTS" envDefault:"console.huaweicloud.com,{region}-console.huaweicloud.com,console-intl.huaweicloud.com"`
	// SMNConfirm confirms subscriptions to SMNTopics by fetching their
	// subscribe_url.
	SMNConfirm bool `env:"INGEST_SMN_CONFIRM" envDefault:"true"`
	// SMNMaxAge refuses signed SMN messages whose timestamp is older: a
	// replay. 0 takes any age.
	SMNMaxAge time.Duration `env:"INGEST_SMN_MAX_AGE" envDefault:"24h"`
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
	{"INGEST_MAX_CONCURRENT", "64", "requests handled at once; more are answered 503"},
	{"INGEST_PUBLISH_TIMEOUT", "5s", "wait for JetStream's acknowledgement; past it 503"},
	{"INGEST_SMN_TOPICS", "", "SMN topic URNs taken, comma-separated; `*` at the end of the topic name matches a prefix; none refuses SMN"},
	{"INGEST_SMN_CERT_HOSTS", "smn.{region}.myhuaweicloud.com", "hosts signing certificates are fetched from over HTTPS; {region} is the topic's"},
	{"INGEST_SMN_CONFIRM_HOSTS", "console.huaweicloud.com,{region}-console.huaweicloud.com,console-intl.huaweicloud.com", "hosts a subscribe_url may point to"},
	{"INGEST_SMN_CONFIRM", "true", "confirm subscriptions of the topics above"},
	{"INGEST_SMN_MAX_AGE", "24h", "refuse signed SMN messages older than this (0: any age)"},
	{"INGEST_SMN_ALLOW_UNSIGNED", "false", "take SMN messages without a signature"},
	{"INGEST_EG_TOKEN", "", "token EventGrid must send (`Authorization: Bearer …` or `X-Imsflow-Token`); comma-separated while rotating; none refuses EventGrid"},
}

// DrainBound bounds one request's handling (an SMN certificate fetch, then
// the publication), and so the server's graceful shutdown.
func (c Config) DrainBound() time.Duration {
	return smnFetchDeadline + max(c.PublishTimeout, smnFetchDeadline) + time.Second
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
	case c.MaxConcurrent < 1:
		return fmt.Errorf("INGEST_MAX_CONCURRENT %d: want at least 1", c.MaxConcurrent)
	case c.SMNMaxAge < 0:
		return fmt.Errorf("INGEST_SMN_MAX_AGE must not be negative")
	}
	for _, t := range c.SMNTopics {
		// The region and the project are fixed: a wildcard there would
		// take in other accounts' topics, whose messages SMN signs alike.
		if _, ok := topicRegion(t); !ok || strings.Contains(t[:strings.LastIndexByte(t, ':')], "*") || strings.Count(t, "*") > 1 || (strings.Contains(t, "*") && !strings.HasSuffix(t, "*")) {
			return fmt.Errorf("INGEST_SMN_TOPICS: %q is not an SMN topic URN (urn:smn:<region>:<project>:<topic>, '*' only at the end of <topic>)", t)
		}
	}
	for name, hosts := range map[string][]string{"INGEST_SMN_CERT_HOSTS": c.SMNCertHosts, "INGEST_SMN_CONFIRM_HOSTS": c.SMNConfirmHosts} {
		for _, h := range hosts {
			if h == "" || strings.ContainsAny(h, "/@ *?#") {
				return fmt.Errorf("%s: %q is not a host name (exact names, {region} for the topic's region)", name, h)
			}
		}
	}
	return nil
}

// Warnings says what a valid configuration will probably not do as meant:
// with neither SMN topics nor an EventGrid token, every notification is
// refused.
func (c Config) Warnings() []string {
	if len(c.SMNTopics) == 0 && len(c.tokens()) == 0 {
		return []string{"neither INGEST_SMN_TOPICS nor INGEST_EG_TOKEN is set: every notification will be refused; " +
			"set INGEST_SMN_TOPICS to take SMN's, INGEST_EG_TOKEN to take EventGrid's"}
	}
	return nil
}

// topicRegion returns the region of an SMN topic URN
// (urn:smn:<region>:<project>:<topic>).
func topicRegion(urn string) (string, bool) {
	p := strings.Split(urn, ":")
	if len(p) != 5 || p[0] != "urn" || p[1] != "smn" || p[3] == "" || p[4] == "" || p[2] == "" ||
		strings.Trim(p[2], "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return "", false
	}
	return p[2], true
}

// topicAllowed reports whether urn is one of topics.
func topicAllowed(topics []string, urn string) bool {
	if _, ok := topicRegion(urn); !ok {
		return false
	}
	for _, t := range topics {
		if p, ok := strings.CutSuffix(t, "*"); ok && strings.HasPrefix(urn, p) || t == urn {
			return true
		}
	}
	return false
}

// allowedURL checks that raw is an HTTPS URL on one of hosts, {region} in
// them standing for region: where a signing certificate or a confirmation
// may be fetched from. A host without a port allows none or 443.
func allowedURL(hosts []string, region, raw string) (*url.URL, error) {
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
	h := canonicalHost(u)
	for _, a := range hosts {
		if strings.EqualFold(h, strings.ReplaceAll(a, "{region}", region)) {
			return u, nil
		}
	}
	return nil, fmt.Errorf("host %q is not one of %q (region %s)", h, hosts, region)
}

// canonicalHost returns u's host in one spelling: lower case, no trailing
// dot, the port only when it is not HTTPS's 443.
func canonicalHost(u *url.URL) string {
	h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if port := u.Port(); port != "" && port != "443" {
		h = net.JoinHostPort(h, port)
	}
	return h
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
