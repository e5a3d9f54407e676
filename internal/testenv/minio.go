// Package testenv starts the real servers that tests run against (MinIO
// for S3-compatible buckets), so that no test mocks what it can run.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MinIONATSTarget returns the settings of a MinIO NATS notification target
// with ID "PRIMARY" that publishes with JetStream to subject on the NATS
// server at addr (host:port).
func MinIONATSTarget(addr, subject string) []string {
	return []string{
		"MINIO_NOTIFY_NATS_ENABLE_PRIMARY=on",
		"MINIO_NOTIFY_NATS_ADDRESS_PRIMARY=" + addr,
		"MINIO_NOTIFY_NATS_SUBJECT_PRIMARY=" + subject,
		"MINIO_NOTIFY_NATS_JETSTREAM_PRIMARY=on",
	}
}

// MinIO is a running MinIO server.
type MinIO struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
}

// MinIOBinary finds the minio server: $IMSFLOW_MINIO, bin/minio at the
// module root (make tools puts it there), or minio on the PATH.
func MinIOBinary() (string, error) {
	if p := os.Getenv("IMSFLOW_MINIO"); p != "" {
		return p, nil
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("minio")
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// StartMinIO starts a MinIO server on a loopback port with its data in a
// temporary directory, and stops it when the test ends; env adds settings
// ("KEY=value"), such as a NATS notification target. Without the minio
// binary the test is skipped, except under CI, where it fails (Missing).
func StartMinIO(t testing.TB, env ...string) *MinIO {
	t.Helper()
	bin, err := MinIOBinary()
	if err != nil {
		Missing(t, "the minio server is not installed; run 'make tools' (or set IMSFLOW_MINIO)")
	}
	// A port picked free can be taken before MinIO binds it: try again.
	var log []byte
	for range 3 {
		m, ok, l := startMinIO(t, bin, env)
		if ok {
			return m
		}
		log = l
	}
	t.Fatalf("minio did not start:\n%s", log)
	return nil
}

// startMinIO makes one attempt; false with MinIO's log when it exited
// before serving.
func startMinIO(t testing.TB, bin string, env []string) (*MinIO, bool, []byte) {
	t.Helper()
	m := &MinIO{AccessKey: "imsflow-test", SecretKey: "imsflow-test-secret"}
	port, console := freePort(t), freePort(t)
	m.Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "server", t.TempDir(), "--quiet",
		"--address", m.Endpoint, "--console-address", fmt.Sprintf("127.0.0.1:%d", console))
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "CI=")
	cmd.Env = append(cmd.Env, env...)
	out, err := os.CreateTemp(t.TempDir(), "minio-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start minio: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	// Readiness probe: MinIO answers its health endpoint once it serves.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + m.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, true, nil
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(out.Name())
			return nil, false, append([]byte(fmt.Sprintf("exit: %v\n", err)), log...)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("minio not ready after 60s:\n%s", log)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
