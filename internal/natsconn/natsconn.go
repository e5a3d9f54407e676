// Package natsconn reads the NATS settings every imsflow process shares
// from the environment and connects with them.
package natsconn

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Config is the NATS part of a process's configuration.
type Config struct {
	// URL is one or more server URLs, comma-separated.
	URL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// CredsFile is a .creds file (JWT and NKey seed).
	CredsFile string `env:"NATS_CREDS"`
	// User and Password, or Token: the other ways to authenticate.
	User     string        `env:"NATS_USER"`
	Password imsapi.Secret `env:"NATS_PASSWORD"`
	Token    imsapi.Secret `env:"NATS_TOKEN"`
	// TLS: a CA to trust, and a client certificate and key for mutual TLS.
	TLSCA   string `env:"NATS_TLS_CA"`
	TLSCert string `env:"NATS_TLS_CERT"`
	TLSKey  string `env:"NATS_TLS_KEY"`
	// Replicas of every stream and bucket: 1 for one server, 3 in a cluster.
	Replicas int `env:"NATS_REPLICAS" envDefault:"1"`
}

// Variables documents Config for help texts and the README.
var Variables = []struct{ Name, Default, Meaning string }{
	{"NATS_URL", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated"},
	{"NATS_CREDS", "", "credentials file (JWT + NKey)"},
	{"NATS_USER", "", "user name"},
	{"NATS_PASSWORD", "", "password"},
	{"NATS_TOKEN", "", "token"},
	{"NATS_TLS_CA", "", "CA certificate to trust"},
	{"NATS_TLS_CERT", "", "client certificate (mutual TLS)"},
	{"NATS_TLS_KEY", "", "client key (mutual TLS)"},
	{"NATS_REPLICAS", "1", "replicas of imsflow's streams and buckets (3 in a cluster)"},
}

// Validate checks the combinations.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return fmt.Errorf("NATS_URL is empty")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("NATS_TLS_CERT and NATS_TLS_KEY go together")
	case c.User == "" && c.Password != "":
		return fmt.Errorf("NATS_PASSWORD needs NATS_USER")
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("NATS_REPLICAS %d: want 1 to 5", c.Replicas)
	}
	return nil
}

// Options returns the nats.go options of c for a client called name:
// reconnect forever, so a restarted server or a lost cluster node does not
// end the process; and ping every PingInterval, so that a connection to a
// node cut off the network (which sends no reset) is given up within
// PingInterval × (MaxPingsOutstanding+1) for another node, not after
// nats.go's default of 2 minutes × 2 (make test-cluster's partition: a
// replica on the cut-off node settled nothing for the whole cut).
func (c Config) Options(name string) []nats.Option {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true),
		nats.PingInterval(PingInterval), nats.MaxPingsOutstanding(MaxPingsOutstanding)}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password.Reveal()))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token.Reveal()))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts
}

// How often a client pings its server, and how many pings may go
// unanswered before it takes the connection for dead and reconnects.
const (
	PingInterval        = 10 * time.Second
	MaxPingsOutstanding = 2
)

// ConnectWait is how long Connect tries to reach NATS before it gives up.
const ConnectWait = 5 * time.Second

// Connect connects and returns the connection and its JetStream context;
// see ConnectContext.
func (c Config) Connect(name string) (*nats.Conn, jetstream.JetStream, error) {
	return c.ConnectContext(context.Background(), name)
}

// ConnectContext connects and returns the connection and its JetStream
// context. It tries for ConnectWait (or until ctx ends), and then says that
// NATS could not be reached, where (without credentials) and why; once
// connected, the connection reconnects forever.
func (c Config) ConnectContext(ctx context.Context, name string) (*nats.Conn, jetstream.JetStream, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	nc, err := c.dial(ctx, name, ConnectWait)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// UnreachableError is NATS not answering within the wait.
type UnreachableError struct {
	// URL is where NATS was looked for, without credentials.
	URL string
	// Waited is how long it was tried.
	Waited time.Duration
	// Err is the last connection error, if any.
	Err error
}

func (e *UnreachableError) Error() string {
	msg := fmt.Sprintf("NATS at %s could not be reached (tried for %s)", e.URL, e.Waited)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + "; is it running, and is NATS_URL right?"
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// dial connects, and waits up to wait for the first connection.
func (c Config) dial(ctx context.Context, name string, wait time.Duration) (*nats.Conn, error) {
	connected := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var lastErr error
	opts := append(c.Options(name),
		nats.ConnectHandler(func(*nats.Conn) { once.Do(func() { close(connected) }) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			mu.Lock()
			lastErr = err
			mu.Unlock()
		}))
	start := time.Now()
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.RedactedURL(), c.scrub(err))
	}
	if nc.IsConnected() {
		return nc, nil
	}
	timer := time.NewTimer(time.Until(start.Add(wait)))
	defer timer.Stop()
	select {
	case <-connected:
		return nc, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	nc.Close()
	mu.Lock()
	defer mu.Unlock()
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return nil, &UnreachableError{URL: c.RedactedURL(), Waited: time.Since(start).Round(100 * time.Millisecond), Err: c.scrub(lastErr)}
}

// RedactedURL is URL without any user information (user, password or
// token): what may be printed.
func (c Config) RedactedURL() string {
	parts := strings.Split(c.URL, ",")
	for i, p := range parts {
		parts[i] = redact(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redact removes the user information of one server URL, with or without
// a scheme; what does not parse loses everything up to its last '@'.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	if u, err := url.Parse("nats://" + rest); err == nil {
		u.User = nil
		return scheme + strings.TrimPrefix(u.String(), "nats://")
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + rest
}

// scrub returns err, its text with any server URL it quotes redacted.
func (c Config) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for p := range strings.SplitSeq(c.URL, ",") {
		if p = strings.TrimSpace(p); p != "" {
			clean = strings.ReplaceAll(clean, p, redact(p))
		}
	}
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

// scrubbedError is an error whose text had credentials removed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }

func (e *scrubbedError) Unwrap() error { return e.err }
