package testenv

import (
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is an embedded nats-server with JetStream on a loopback port.
type NATS struct {
	Server *server.Server
	URL    string
	dir    string
	port   int
}

// StartNATS starts an embedded nats-server with JetStream, its store in a
// temporary directory, and shuts it down when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{dir: t.TempDir()}
	n.start(t)
	t.Cleanup(n.Shutdown)
	return n
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	port := n.port
	if port == 0 {
		port = -1 // any free port, kept by Restart
	}
	opts := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: n.dir, NoSigs: true, NoLog: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready after 10s")
	}
	n.Server, n.URL = s, s.ClientURL()
	n.port = s.Addr().(*net.TCPAddr).Port
}

// Restart starts the server again after Shutdown, on the same port with
// the same store, so that clients reconnect and find their streams.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.start(t)
}

// Shutdown stops the server.
func (n *NATS) Shutdown() {
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}

// Connect returns a connection and a JetStream context, closed when the
// test ends.
func (n *NATS) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Receive decodes the JSON bodies of n messages from ch, failing the test
// if they have not all arrived within Patience.
func Receive[T any](t testing.TB, ch chan *nats.Msg, n int) []T {
	t.Helper()
	var out []T
	timeout := time.After(Patience)
	for range n {
		select {
		case m := <-ch:
			var v T
			if err := json.Unmarshal(m.Data, &v); err != nil {
				t.Fatalf("message on %s: %v", m.Subject, err)
			}
			out = append(out, v)
		case <-timeout:
			t.Fatalf("only %d of %d messages in %s", len(out), n, Patience)
		}
	}
	return out
}

// Stored returns the messages stream holds on subject, oldest first: what
// a test reads where no consumer takes them (hand-offs with no poller
// running, events in IMSFLOW_OUT).
func Stored(t testing.TB, js jetstream.JetStream, stream, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := t.Context()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue
		case err != nil:
			t.Fatalf("%s message %d: %v", stream, seq, err)
		}
		if m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}
