package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/poller/poller"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestTwoThousandUploads: 2,000 files uploaded into MinIO reach IMS through
// MinIO's events, two import replicas and the poller, with the emulator
// throttling (a per-AK rate, a cap of 40 running jobs, 5 % of 5xx); every
// object ends with exactly one IMS job and one completion.
func TestTwoThousandUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 uploads through MinIO")
	}
	t.Parallel()
	const total = 2000
	ctx := t.Context()
	bs := newBucketStack(t, []string{"fleet"})
	nc, js, mc, s3 := bs.nc, bs.js, bs.minio, bs.s3
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, Store: s3, TimeScale: 1e6, ImageQuota: -1,
		RateLimit: 300, RateBurst: 30, MaxRunningJobs: 40, Faults: imsemu.Faults{ErrorRate: 0.05}, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	client, _ := emu.Client()
	completions := make(chan *nats.Msg, total*2)
	if _, err := nc.ChanSubscribe("imsflow.out.import.*", completions); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var runners []*runner.Runner
	for range 2 {
		r, err := importer.New(ctx, importer.Config{BitmapWait: time.Minute, BitmapPoll: time.Minute, ClaimTTL: 10 * time.Second,
			ThrottleWait: 200 * time.Millisecond, Workers: 8, AckWait: 5 * time.Second, MaxFailures: 500}, client, js, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		runners = append(runners, r)
	}
	p, err := poller.New(ctx, poller.Config{FirstPoll: time.Second, MinInterval: time.Second, TargetDelay: time.Second, MaxInterval: 2 * time.Second, MaxAimed: 2 * time.Second,
		Backoff: 1.5, Deadline: time.Hour, StallAfter: time.Hour, Workers: 16, AckWait: 30 * time.Second, MaxFailures: 1000}, client, js, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range append(runners, p) {
		wg.Go(func() { _ = r.Run(runCtx) })
	}

	// Upload, 16 at a time.
	keys := make(chan string)
	var up sync.WaitGroup
	for range 16 {
		up.Go(func() {
			for k := range keys {
				if _, err := mc.PutObject(ctx, "fleet", k, bytes.NewReader(make([]byte, 4096)), 4096, minio.PutObjectOptions{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range total {
		keys <- fmt.Sprintf("vm/disk-%05d.qcow2", i)
	}
	close(keys)
	up.Wait()

	seen := map[string]int{}
	timeout := time.After(max(4*time.Minute, testenv.Patience))
	for len(seen) < total {
		select {
		case msg := <-completions:
			var f events.JobFinished
			if err := json.Unmarshal(msg.Data, &f); err != nil || f.Source == nil {
				t.Fatalf("event %s: %s", msg.Subject, msg.Data)
			}
			if f.Status != events.StatusSucceeded {
				t.Errorf("%s: %s %s %s", f.Source.Key, f.Status, f.ErrorCode, f.FailReason)
			}
			seen[f.Source.Key]++
		case <-timeout:
			t.Fatalf("%d of %d objects completed in %s", len(seen), total, max(4*time.Minute, testenv.Patience))
		}
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s completed %d times", k, c)
		}
	}
	urls := map[string]int{}
	for _, s := range emu.Submissions() {
		urls[s.URL]++
	}
	if len(urls) != total {
		t.Errorf("%d objects submitted to IMS, want %d", len(urls), total)
	}
	for u, c := range urls {
		if c != 1 {
			t.Errorf("%s submitted %d times", u, c)
		}
	}
	st := emu.Stats()
	if st.MaxRunning > 40 || st.Throttled+st.Capped+st.Injected == 0 {
		t.Errorf("emulator stats %+v: want at most 40 running and some throttling", st)
	}
	t.Logf("emulator: %d throttled, %d capped, %d injected faults, %d max running", st.Throttled, st.Capped, st.Injected, st.MaxRunning)
}
