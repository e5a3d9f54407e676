// Package natsconn reads the NATS settings every imsflow process shares
// from the environment and connects with them.
package natsconn

import (
	"fmt"
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
// end the process.
func (c Config) Options(name string) []nats.Option {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true)}
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

// Connect connects and returns the connection and its JetStream context.
func (c Config) Connect(name string) (*nats.Conn, jetstream.JetStream, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(c.URL, c.Options(name)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", c.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
