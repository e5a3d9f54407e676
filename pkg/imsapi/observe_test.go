package imsapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// observations records what a client reports to its observer.
type observations struct {
	mu  sync.Mutex
	all []Observation
}

func (o *observations) add(ob Observation) {
	o.mu.Lock()
	o.all = append(o.all, ob)
	o.mu.Unlock()
}

func (o *observations) last(t *testing.T) Observation {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.all) == 0 {
		t.Fatal("nothing observed")
	}
	return o.all[len(o.all)-1]
}

// TestObserverSeesEveryRequest: each request sent is reported once with
// its operation and status, an answer that never came with status 0,
// and a request checked out before any I/O not at all.
func TestObserverSeesEveryRequest(t *testing.T) {
	t.Parallel()
	var obs observations
	c, slot := setup(t, testAKSK(), WithObserver(obs.add))
	ctx := t.Context()

	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		_, _ = io.WriteString(w, `{"job_id":"`+testJobID+`"}`)
	})
	if _, err := c.QuickImport(ctx, &QuickImportRequest{Name: "web-01", ImageURL: "images:web-01.zvhd2", MinDisk: 40, OSVersion: "Ubuntu 22.04 server 64bit"}); err != nil {
		t.Fatal(err)
	}
	if o := obs.last(t); o.Operation != OpQuickImport || !o.Sent || o.StatusCode != 200 || o.Err != nil || o.Duration <= 0 {
		t.Errorf("quick import observed as %+v", o)
	}

	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error_code":"APIGW.0308","error_msg":"throttled"}`)
	})
	_, err := c.JobProgress(ctx, testJobID)
	if o := obs.last(t); o.Operation != OpJobProgress || o.StatusCode != 429 || !errors.Is(o.Err, ErrThrottled) || o.Err != err {
		t.Errorf("throttled job query observed as %+v (call returned %v)", o, err)
	}

	if _, err := c.Image(ctx, "not/an/id"); err == nil {
		t.Fatal("a malformed ID was sent")
	}
	obs.mu.Lock()
	n := len(obs.all)
	obs.mu.Unlock()
	if n != 2 {
		t.Errorf("%d observations after a request refused before I/O; want 2", n)
	}

	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		_ = conn.Close() // no answer at all
	})
	_, err = c.Quota(ctx)
	var te *TransportError
	if o := obs.last(t); o.Operation != OpQuota || !o.Sent || o.StatusCode != 0 || !errors.As(o.Err, &te) || err == nil {
		t.Errorf("dropped connection observed as %+v (call returned %v)", o, err)
	}
}

// TestObserverSeesTheRateLimitWait: a request the context ends while it
// waits for the limiter is reported unsent, with its wait.
func TestObserverSeesTheRateLimitWait(t *testing.T) {
	t.Parallel()
	var obs observations
	c, slot := setup(t, testAKSK(), WithObserver(obs.add), WithRateLimiter(rate.NewLimiter(rate.Every(time.Hour), 1)))
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		_, _ = io.WriteString(w, `{"quotas":{"resources":[]}}`)
	})
	if _, err := c.Quota(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Quota(ctx); err == nil || !strings.Contains(err.Error(), "rate limit") {
		t.Fatalf("second call: %v, want a rate-limit wait that ended", err)
	}
	if o := obs.last(t); o.Operation != OpQuota || o.Sent || o.StatusCode != 0 || o.Err == nil {
		t.Errorf("unsent request observed as %+v", o)
	}
	if _, err := New("https://ims.example.com", testAKSK(), WithObserver(nil)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WithObserver(nil): %v, want ErrInvalidArgument", err)
	}
}
