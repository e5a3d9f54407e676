package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/export/exporter"
	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/poller/poller"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestMinIOToJetStream: files uploaded into MinIO become IMS images through
// MinIO's own NATS events, the emulator checking the objects in the same
// bucket; an export writes its file into MinIO.
func TestMinIOToJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Parallel()
	ctx := t.Context()
	bs := newBucketStack(t, []string{"images"}, "exports")
	nc, js, mc, s3 := bs.nc, bs.js, bs.minio, bs.s3
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, TimeScale: 1000, Store: s3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	client, err := emu.Client()
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	imp, err := importer.New(ctx, importer.Config{BitmapWait: time.Minute, BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute, MaxInFlight: 40,
		SlotTTL: time.Hour, SlotWait: time.Second, ThrottleWait: time.Second, Workers: 2, AckWait: 30 * time.Second, MaxFailures: 50}, client, js, log)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := exporter.New(ctx, exporter.Config{DefaultBucket: "exports", KeyPrefix: "out/", ClaimTTL: 2 * time.Minute, BusyWait: time.Second,
		ThrottleWait: time.Second, Workers: 2, AckWait: 30 * time.Second, MaxFailures: 50}, client, js, log)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := poller.New(ctx, poller.Config{FirstPoll: time.Second, MinInterval: time.Second, TargetDelay: time.Second, MaxInterval: 2 * time.Second, MaxAimed: 2 * time.Second,
		Backoff: 1.5, Deadline: time.Hour, StallAfter: time.Hour, Workers: 4, AckWait: 30 * time.Second, MaxFailures: 100}, client, js, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range []*runner.Runner{imp, exp, pol} {
		wg.Go(func() { _ = r.Run(runCtx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	out := make(chan *nats.Msg, 100)
	if _, err := nc.ChanSubscribe("imsflow.out.>", out); err != nil {
		t.Fatal(err)
	}

	// Upload: MinIO notifies JetStream, which is all imsflow hears.
	put := func(key string, size int) {
		t.Helper()
		if _, err := mc.PutObject(ctx, "images", key, bytes.NewReader(make([]byte, size)), int64(size), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("uploads/web 01.qcow2", 1<<20)
	put("uploads/notes.txt", 10)
	imported := testenv.Receive[events.JobFinished](t, out, 1)[0]
	if imported.Status != events.StatusSucceeded || imported.Source == nil || imported.Source.Key != "uploads/web 01.qcow2" || imported.ImageID == "" {
		t.Fatalf("import event = %+v", imported)
	}
	subs := emu.Submissions()
	if len(subs) != 1 || subs[0].URL != "images:uploads/web 01.qcow2" {
		t.Fatalf("IMS submissions = %+v", subs)
	}

	// Export the new image: its file lands in MinIO.
	req, _ := json.Marshal(events.ExportRequest{ImageID: imported.ImageID, RequestID: "e2e-1"})
	if _, err := js.Publish(ctx, events.SubjectExportRequests, req); err != nil {
		t.Fatal(err)
	}
	exported := testenv.Receive[events.JobFinished](t, out, 1)[0]
	if exported.Status != events.StatusSucceeded || exported.Kind != events.KindExport {
		t.Fatalf("export event = %+v", exported)
	}
	_, key, _ := strings.Cut(exported.BucketURL, ":")
	if _, err := mc.StatObject(ctx, "exports", key, minio.StatObjectOptions{}); err != nil {
		t.Errorf("the exported file %s is not in MinIO: %v", exported.BucketURL, err)
	}
}
