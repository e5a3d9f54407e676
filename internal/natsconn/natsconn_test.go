package natsconn

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// unusedAddr returns a loopback address nobody listens on: a port just
// freed.
func unusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestUnreachable: with nobody listening, dial says so, where and for how
// long, without the credentials of the URL or of the settings.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	addr := unusedAddr(t)
	c := Config{URL: "nats://alice:s3cret-pw@" + addr + ", nats://tok3n-value@" + addr + ",u:e@" + addr, Password: "pw-of-settings", User: "bob", Replicas: 1}
	_, err := c.dial(t.Context(), "test", 300*time.Millisecond)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("dial = %v (%T), want an UnreachableError", err, err)
	}
	msg := err.Error()
	want := "NATS at nats://" + addr + ",nats://" + addr + "," + addr + " could not be reached (tried for "
	if !strings.HasPrefix(msg, want) || !strings.Contains(msg, "connection refused") {
		t.Errorf("error %q\nwant it to start %q and say why", msg, want)
	}
	for _, secret := range []string{"alice", "s3cret-pw", "tok3n-value", "pw-of-settings"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q reveals %q", msg, secret)
		}
	}
	if ue.Waited < 300*time.Millisecond {
		t.Errorf("gave up after %s, before the wait", ue.Waited)
	}
}

// TestUnreachableEndsWithContext: an ended context ends the wait.
func TestUnreachableEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := Config{URL: "nats://" + unusedAddr(t), Replicas: 1}
	_, err := c.dial(ctx, "test", time.Hour)
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Waited > time.Minute {
		t.Fatalf("dial = %v", err)
	}
}

func TestRedactedURL(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"nats://127.0.0.1:4222":                           "nats://127.0.0.1:4222",
		"nats://u:p@a:4222,tls://tok@b:4222":              "nats://a:4222,tls://b:4222",
		"nats://u:p%zz@a:4222":                            "nats://a:4222",
		"u:p@a:4222":                                      "a:4222",
		"nats://user:pa@ss@host:4222, nats://host2:4222 ": "nats://host:4222,nats://host2:4222",
	}
	for in, want := range tests {
		if got := (Config{URL: in}).RedactedURL(); got != want {
			t.Errorf("RedactedURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestBadURLIsScrubbed: an unparsable URL's error does not quote its
// password.
func TestBadURLIsScrubbed(t *testing.T) {
	t.Parallel()
	c := Config{URL: "nats://user:s3cret%zz@127.0.0.1:1", Replicas: 1}
	_, _, err := c.Connect("test")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Connect = %v", err)
	}
}

// TestOptionsPing: a connection to a node that vanished without a reset
// (a network partition) is given up within half a minute, not nats.go's
// default four.
func TestOptionsPing(t *testing.T) {
	o := nats.GetDefaultOptions()
	for _, opt := range (Config{}).Options("t") {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	if bound := o.PingInterval * time.Duration(o.MaxPingsOut+1); bound > 30*time.Second {
		t.Errorf("ping every %s, %d unanswered: a dead connection is noticed after up to %s, want at most 30s", o.PingInterval, o.MaxPingsOut, bound)
	}
}
