package testenv

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Account is the account every stream of a cluster without accounts
// lives in: nats-server's global account.
const Account = server.DEFAULT_GLOBAL_ACCOUNT

// ClusterName is the name of the cluster StartCluster forms.
const ClusterName = "imsflow-test"

// Cluster is an in-process JetStream cluster: n embedded nats-servers on
// loopback, named n1, n2, ..., fully routed to each other. Nodes are
// numbered from 0 (node i is named n<i+1>); a node can be killed and
// restarted on the same ports with the same store, as a machine that
// reboots. Every method is safe to call from any goroutine.
//
// Kill is nats-server's Shutdown: the node first steps down from what it
// leads (as a node told to stop does), so a new leader is usually elected
// at once rather than after the election timeout.
type Cluster struct {
	nodes []*clusterNode

	mu sync.Mutex // guards every clusterNode's srv
}

// clusterNode is one node: its fixed settings and its server, nil while
// killed.
type clusterNode struct {
	name       string
	dir        string // JetStream store, kept across restarts
	clientPort int
	routePort  int
	srv        *server.Server
}

// StartCluster starts an n-node JetStream cluster and waits until it has
// a meta leader and every node is healthy (see WaitHealthy); the nodes
// are shut down when the test ends. The client and route ports are chosen before
// any node starts, so every node is configured with all the routes (as
// nats-server's own cluster tests and any real deployment do).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartCluster(%d): a cluster needs at least one node", n)
	}
	// A port picked free can be taken before its node binds it: try again
	// with fresh ports.
	var err error
	for range 3 {
		c := &Cluster{}
		for i := range n {
			c.nodes = append(c.nodes, &clusterNode{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(),
				clientPort: freePort(t), routePort: freePort(t)})
		}
		if err = c.startAll(); err == nil {
			t.Cleanup(c.Shutdown)
			c.WaitMetaLeader(t)
			c.WaitHealthy(t)
			return c
		}
		c.Shutdown()
	}
	t.Fatalf("cluster did not start: %v", err)
	return nil
}

// startAll starts every node, each in its own goroutine: a node of a
// cluster only reports ready once its listeners are up, which needs no
// other node, but JetStream's meta group needs a quorum to form.
func (c *Cluster) startAll() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// options are node i's settings, the same at every start.
func (c *Cluster) options(i int) *server.Options {
	nd := c.nodes[i]
	routes := make([]string, len(c.nodes))
	for j, o := range c.nodes {
		routes[j] = fmt.Sprintf("nats-route://127.0.0.1:%d", o.routePort)
	}
	return &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       nd.clientPort,
		JetStream:  true,
		StoreDir:   nd.dir,
		Cluster:    server.ClusterOpts{Name: ClusterName, Host: "127.0.0.1", Port: nd.routePort},
		Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		NoSigs:     true,
		NoLog:      true,
	}
}

// start starts node i and waits until it accepts connections.
func (c *Cluster) start(i int) error {
	nd := c.nodes[i]
	s, err := server.NewServer(c.options(i))
	if err != nil {
		return fmt.Errorf("node %s: %w", nd.name, err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("node %s not ready after 30s (client port %d, route port %d)", nd.name, nd.clientPort, nd.routePort)
	}
	c.mu.Lock()
	nd.srv = s
	c.mu.Unlock()
	return nil
}

// Size is the number of nodes, running or not.
func (c *Cluster) Size() int { return len(c.nodes) }

// Name is node i's server name (n1, n2, ...).
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Server is node i's server, nil while it is killed.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Running reports whether node i is running (not killed).
func (c *Cluster) Running(i int) bool { return c.Server(i) != nil }

// URL is every node's client URL, comma-separated, as nats.Connect takes
// it: a client reconnects to another node when its node is killed.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", nd.clientPort)
	}
	return strings.Join(urls, ",")
}

// Connect returns a connection to the cluster that reconnects for ever
// to any node, and a JetStream context with opts (such as a longer
// jetstream.WithDefaultTimeout for a test's own setup on a loaded
// machine); closed when the test ends.
func (c *Cluster) Connect(t testing.TB, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Kill shuts node i down (a no-op if it is already down); its ports and
// store are kept for Restart.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	s := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts killed node i again with the same settings, ports and
// store, and waits until it accepts connections. It has rejoined once
// WaitHealthy(t, i) returns.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	if c.Running(i) {
		t.Fatalf("Restart(%d): node %s is running", i, c.nodes[i].name)
	}
	if err := c.start(i); err != nil {
		t.Fatalf("restart: %v", err)
	}
}

// Shutdown stops every running node; StartCluster calls it when the test
// ends.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Kill(i) })
	}
	wg.Wait()
}

// leader returns the one running node for which is holds, or -1 when
// none or more than one does (during an election, an old leader may not
// have noticed yet that it was replaced).
func (c *Cluster) leader(is func(*server.Server) bool) int {
	c.mu.Lock()
	srvs := make([]*server.Server, len(c.nodes))
	for i, nd := range c.nodes {
		srvs[i] = nd.srv
	}
	c.mu.Unlock()
	found := -1
	for i, s := range srvs {
		if s == nil || !s.Running() || !is(s) {
			continue
		}
		if found >= 0 {
			return -1
		}
		found = i
	}
	return found
}

// MetaLeader is the index of the node leading the JetStream meta group,
// or -1.
func (c *Cluster) MetaLeader() int {
	return c.leader(func(s *server.Server) bool { return s.JetStreamIsLeader() })
}

// StreamLeader is the index of the node leading stream, or -1 while it
// has no leader (or two nodes still claim it).
func (c *Cluster) StreamLeader(stream string) int {
	return c.leader(func(s *server.Server) bool { return s.JetStreamIsStreamLeader(Account, stream) })
}

// ConsumerLeader is the index of the node leading the durable consumer of
// stream, or -1.
func (c *Cluster) ConsumerLeader(stream, consumer string) int {
	return c.leader(func(s *server.Server) bool { return s.JetStreamIsConsumerLeader(Account, stream, consumer) })
}

// KVStream is the stream that holds key-value bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// KVLeader is the index of the node leading key-value bucket, or -1.
func (c *Cluster) KVLeader(bucket string) int { return c.StreamLeader(KVStream(bucket)) }

// healthy reports whether s answers healthz with 200 for opts (nil: the
// whole server, its meta group and every stream and consumer it holds).
func healthy(s *server.Server, opts *server.HealthzOptions) (bool, string) {
	if s == nil || !s.Running() {
		return false, "not running"
	}
	h := s.Healthz(opts)
	return h.StatusCode == 200, h.Error
}

// waitLeader waits until one running node leads and is healthy for opts,
// and every running node routes subject (when not "") somewhere: the
// leader's subscription has reached every node, so that a client on any
// node finds a responder. It returns the leader.
func (c *Cluster) waitLeader(t testing.TB, what string, is func(*server.Server) bool, opts *server.HealthzOptions, subject func(leader *server.Server) string) int {
	t.Helper()
	leader := -1
	Until(t, what, func() (bool, string) {
		if leader = c.leader(is); leader < 0 {
			return false, "no leader"
		}
		s := c.Server(leader)
		if ok, why := healthy(s, opts); !ok {
			return false, fmt.Sprintf("leader %s: %s", c.nodes[leader].name, why)
		}
		subj := subject(s)
		for i := range c.nodes {
			n := c.Server(i)
			if n == nil || subj == "" {
				continue
			}
			if acc, err := n.LookupAccount(Account); err != nil || !acc.SubscriptionInterest(subj) {
				return false, fmt.Sprintf("leader %s; node %s has no route for %s yet", c.nodes[leader].name, c.nodes[i].name, subj)
			}
		}
		return true, ""
	})
	return leader
}

// streamSubject is a subject that stream takes (its first subject, with
// every wildcard made a token), as the leader s has its configuration;
// "" when it cannot tell.
func streamSubject(s *server.Server, stream string) string {
	d, err := s.JszAccount(&server.JSzOptions{Account: Account, Streams: true, Config: true})
	if err != nil {
		return ""
	}
	for _, sd := range d.Streams {
		if sd.Name != stream || sd.Config == nil || len(sd.Config.Subjects) == 0 {
			continue
		}
		toks := strings.Split(sd.Config.Subjects[0], ".")
		for i, tok := range toks {
			if tok == "*" || tok == ">" {
				toks[i] = "x"
			}
		}
		return strings.Join(toks, ".")
	}
	return ""
}

// Until checks cond every 20ms until it holds, and fails the test with
// what and cond's last explanation (why) if it has not held within
// Patience: Eventually for a condition that can say what it saw.
func Until(t testing.TB, what string, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.NewTimer(Patience)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("still waiting after %s for %s (last: %s)", Patience, what, why)
		}
	}
}

// WaitMetaLeader waits until the cluster has a meta leader, current with
// its group, and returns its index.
func (c *Cluster) WaitMetaLeader(t testing.TB) int {
	t.Helper()
	return c.waitLeader(t, "a meta leader", func(s *server.Server) bool { return s.JetStreamIsLeader() },
		&server.HealthzOptions{JSMetaOnly: true}, func(*server.Server) string { return "" })
}

// WaitStreamLeader waits until stream has a leader that has caught up
// (healthz of the stream on that node is ok: it applied what its group
// committed and is not restoring a snapshot) and that a publish from any
// node reaches, and returns its index.
func (c *Cluster) WaitStreamLeader(t testing.TB, stream string) int {
	t.Helper()
	return c.waitLeader(t, "a leader of stream "+stream,
		func(s *server.Server) bool { return s.JetStreamIsStreamLeader(Account, stream) },
		&server.HealthzOptions{Account: Account, Stream: stream},
		func(s *server.Server) string { return streamSubject(s, stream) })
}

// WaitConsumerLeader waits until the consumer has a leader that has
// caught up, and returns its index. A pull sent at once may still find no
// responder (nats-server shows no interest to wait for: every account
// routes $JS.API.> to JetStream): a client pulls again.
func (c *Cluster) WaitConsumerLeader(t testing.TB, stream, consumer string) int {
	t.Helper()
	return c.waitLeader(t, fmt.Sprintf("a leader of consumer %s on %s", consumer, stream),
		func(s *server.Server) bool { return s.JetStreamIsConsumerLeader(Account, stream, consumer) },
		&server.HealthzOptions{Account: Account, Stream: stream, Consumer: consumer},
		func(*server.Server) string { return "" })
}

// WaitKVLeader waits until key-value bucket has a leader that has caught
// up, and returns its index.
func (c *Cluster) WaitKVLeader(t testing.TB, bucket string) int {
	t.Helper()
	return c.WaitStreamLeader(t, KVStream(bucket))
}

// WaitHealthy waits until each of nodes (every running node when none is
// named) is healthy: running, in contact with the meta leader and current
// with it, current in every stream and consumer it holds a replica of,
// and seen online by the meta leader (so that new replicas can be placed
// on it). A restarted node has rejoined once it is healthy.
func (c *Cluster) WaitHealthy(t testing.TB, nodes ...int) {
	t.Helper()
	if len(nodes) == 0 {
		for i := range c.nodes {
			if c.Running(i) {
				nodes = append(nodes, i)
			}
		}
	}
	for _, i := range nodes {
		name := c.nodes[i].name
		Until(t, fmt.Sprintf("node %s to be healthy", name), func() (bool, string) {
			if ok, why := healthy(c.Server(i), nil); !ok {
				return false, why
			}
			// The meta leader places new replicas only on the peers it
			// sees online (it learns of a peer from its statistics, a
			// little after the peer itself is current).
			m := c.MetaLeader()
			if m < 0 {
				return false, "no meta leader"
			}
			peers := c.Server(m).JetStreamClusterPeers()
			return slices.Contains(peers, name), fmt.Sprintf("meta leader %s sees online %v", c.nodes[m].name, peers)
		})
	}
}

// ReplicaState is the state of node i's own replica of stream (its
// messages and sequences as that node stores them), false when the node
// is down or holds no replica of it.
func (c *Cluster) ReplicaState(i int, stream string) (server.StreamState, bool) {
	s := c.Server(i)
	if s == nil {
		return server.StreamState{}, false
	}
	d, err := s.JszAccount(&server.JSzOptions{Account: Account, Streams: true})
	if err != nil {
		return server.StreamState{}, false
	}
	for _, sd := range d.Streams {
		if sd.Name == stream {
			return sd.State, true
		}
	}
	return server.StreamState{}, false
}
