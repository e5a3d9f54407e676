// Package embedded runs a nats-server with JetStream inside the process,
// the local default of "imsflow dev" and "imsflow demo".
package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start starts a nats-server with JetStream storing in dir, listening on
// 127.0.0.1:port; when that port is taken (or port is 0) it takes a free
// one. ClientURL of the result says where.
func Start(dir string, port int) (*server.Server, error) {
	if port > 0 {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			port = -1
		} else {
			_ = ln.Close()
		}
	} else {
		port = -1
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "imsflow-dev", Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats-server: not ready after 15s")
	}
	return s, nil
}
