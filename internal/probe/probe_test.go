package probe

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			http.Error(w, "nats: not connected\nconsumer: not bound", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()

	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{[]string{srv.URL + "/healthz"}, 0, ""},
		{[]string{srv.URL + "/healthz", srv.URL + "/readyz"}, 1, "503 Service Unavailable nats: not connected"},
		{[]string{"-timeout", "1s", "http://127.0.0.1:1/healthz"}, 1, "connection refused"},
		{nil, 2, "usage"},
	} {
		var stderr bytes.Buffer
		if code := Main(tc.args, &stderr); code != tc.code {
			t.Errorf("Main(%q) = %d, want %d; stderr %q", tc.args, code, tc.code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.say) {
			t.Errorf("Main(%q): stderr %q, want it to say %q", tc.args, stderr.String(), tc.say)
		}
	}
}

func TestCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	if err := check(srv.URL, 50*time.Millisecond); err == nil {
		t.Fatal("check of a server that never answers: nil, want a timeout")
	}
}
