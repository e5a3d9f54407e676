package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// clusterName is the NATS cluster of a run.
const clusterName = "imsflow-chaos"

// natsNode is one nats-server of the three.
type natsNode struct {
	name               string // server_name: n1, n2, n3
	client, route, mon int    // loopback ports
	dir                string // its config and JetStream store
	proc               *proc
}

func (n *natsNode) url() string      { return fmt.Sprintf("nats://127.0.0.1:%d", n.client) }
func (n *natsNode) confPath() string { return filepath.Join(n.dir, "nats.conf") }

// config is the node's nats-server configuration: JetStream with its own
// store, a route to each other node, the monitoring port for /healthz and
// /jsz.
func (n *natsNode) config(all []*natsNode) string {
	var routes []string
	for _, o := range all {
		if o != n {
			routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", o.route)))
		}
	}
	return fmt.Sprintf(`# written by scripts/chaos
server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: 512MB
  max_file_store: 8GB
}
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, n.name, n.client, n.mon, filepath.Join(n.dir, "jetstream"), clusterName, n.route, strings.Join(routes, ", "))
}

func writeNodeConfigs(nodes []*natsNode) error {
	for _, n := range nodes {
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(n.confPath(), []byte(n.config(nodes)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// healthy reports whether the node's /healthz answers 200: the server is
// up and its JetStream is current with the cluster.
func (n *natsNode) healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.mon), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitHealthy waits until the node is healthy, at most bound.
func (n *natsNode) waitHealthy(ctx context.Context, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if n.healthy(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy (/healthz) after %s", n.name, bound)
}

// waitTCP waits until something accepts connections on addr.
func waitTCP(ctx context.Context, addr string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %v", addr, bound, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// streamLeader is the server name of the stream's cluster leader.
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s has no leader", stream)
	}
	return info.Cluster.Leader, nil
}

// leaders describes who leads each of imsflow's streams, for the timeline.
func leaders(ctx context.Context, js jetstream.JetStream) string {
	var parts []string
	for _, s := range []string{streamIn, streamJobs, streamOut, streamDLQ} {
		l, err := streamLeader(ctx, js, s)
		if err != nil {
			l = "?"
		}
		parts = append(parts, s+"="+l)
	}
	return strings.Join(parts, " ")
}

// freePorts returns n distinct loopback ports free right now.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
