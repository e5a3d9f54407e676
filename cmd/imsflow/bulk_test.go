package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestBulkThroughMinIO: a prefix of a MinIO bucket imported with "imsflow
// bulk import" (after a dry run), every object accounted for once; the new
// images exported with "imsflow bulk export" into MinIO; "imsflow status"
// shows both batches.
func TestBulkThroughMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Parallel()
	ctx := t.Context()
	m := testenv.StartMinIO(t)
	env := map[string]string{"S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey, "S3_SECRET_KEY": m.SecretKey, "S3_SECURE": "false",
		"POLL_FIRST": "1s", "POLL_MIN": "1s", "POLL_MAX": "1s", "POLL_MAX_AIMED": "1s", "IMPORT_SLOT_WAIT": "500ms"}
	st, err := startStack(ctx, devConfig{DataDir: t.TempDir(), EmulatorAddr: "127.0.0.1:0", TimeScale: 5000, ExportBucket: "exports"}, env, zerolog.Nop(),
		func(c *imsemu.Config) { c.ImageQuota = -1 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); testenv.Await(t, done, "the stack to stop") })
	env["NATS_URL"] = st.nats.ClientURL()

	store, err := objstore.New(objstore.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: imsapi.Secret(m.SecretKey)})
	if err != nil {
		t.Fatal(err)
	}
	mc := store.Client()
	for _, b := range []string{"images", "exports"} {
		if err := mc.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put := func(key string, size int) {
		data := make([]byte, size)
		if strings.HasSuffix(key, ".qcow2") && size >= 32 {
			// A QCOW2 header (1 GiB disk): the import reads it.
			copy(data, "QFI\xfb\x00\x00\x00\x03")
			copy(data[24:], []byte{0, 0, 0, 0, 0x40, 0, 0, 0})
		}
		if _, err := mc.PutObject(ctx, "images", key, bytes.NewReader(data), int64(size), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const disks = 40
	for i := range disks {
		put(fmt.Sprintf("fleet/disk-%03d.qcow2", i), 64<<10)
	}
	put("fleet/db.raw", 64<<10)
	put("fleet/db.mf", 100)
	put("fleet/README.txt", 10)
	put("fleet/empty.vmdk", 0)
	put("elsewhere/other.qcow2", 1000)

	out := make(chan *nats.Msg, 1000)
	sub, err := st.nc.ChanSubscribe(events.SubjectBatchCompleted, out)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	code, stdout, stderr := runCLI(t, env, "bulk", "import", "-dry-run", "s3://images/fleet/")
	if code != exitOK || !strings.Contains(stdout, "images:fleet/db.raw") || !strings.Contains(stdout, "with its bitmap") ||
		!strings.Contains(stdout, "reject empty_file") || !strings.Contains(stdout, "1 skipped") || strings.Contains(stdout, "elsewhere") {
		t.Fatalf("dry run: %d\n%s\n%s", code, stdout, stderr)
	}
	if n := len(st.emu.Submissions()); n != 0 {
		t.Fatalf("the dry run submitted %d jobs", n)
	}
	code, stdout, stderr = runCLI(t, env, "bulk", "import", "-batch", "b-import", "s3://images/fleet/")
	if code != exitOK || !strings.Contains(stdout, "batch b-import: 42 objects to import, 1 bitmaps, 1 skipped") {
		t.Fatalf("bulk import: %d\n%s\n%s", code, stdout, stderr)
	}
	done1 := testenv.Receive[events.BatchCompleted](t, out, 1)[0]
	if done1.BatchID != "b-import" || done1.Total != 42 || done1.ByStatus[events.StatusSucceeded] != 41 || done1.ByStatus[events.StatusRejected] != 1 {
		t.Fatalf("import batch = %+v", done1)
	}
	if n := len(st.emu.Submissions()); n != 41 {
		t.Errorf("%d IMS imports, want 41 (each object once)", n)
	}
	// The completion event goes out just before the batch's record says
	// so (a crash in between publishes it again): status catches up.
	testenv.Eventually(t, "status to show the batch ended", func() bool {
		code, stdout, _ = runCLI(t, env, "status", "b-import")
		return code == exitOK && strings.Contains(stdout, "42 of 42 items ended")
	})
	if strings.Count(stdout, "import succeeded") != 41 {
		t.Errorf("status: %d\n%s", code, stdout)
	}

	// Export what was imported.
	var ids bytes.Buffer
	for _, im := range st.emu.Images() {
		fmt.Fprintln(&ids, im.ID)
	}
	var o, e bytes.Buffer
	code = runBulk(ctx, []string{"export", "-bucket", "exports", "-prefix", "nightly", "-batch", "b-export"}, env, &o, &e, &ids)
	if code != exitOK {
		t.Fatalf("bulk export: %d\n%s\n%s", code, o.String(), e.String())
	}
	done2 := testenv.Receive[events.BatchCompleted](t, out, 1)[0]
	if done2.BatchID != "b-export" || done2.Total != 41 || done2.ByStatus[events.StatusSucceeded] != 41 {
		t.Fatalf("export batch = %+v", done2)
	}
	n := 0
	for obj := range mc.ListObjectsIter(ctx, "exports", minio.ListObjectsOptions{Prefix: "nightly/", Recursive: true}) {
		if obj.Err == nil && strings.HasSuffix(obj.Key, ".qcow2") {
			n++
		}
	}
	if n != 41 {
		t.Errorf("%d exported files in MinIO, want 41", n)
	}
	// The poller marks a job done just after its batch's count: status
	// catches up.
	testenv.Eventually(t, "status to show no job in flight", func() bool {
		code, stdout, _ = runCLI(t, env, "status")
		return code == exitOK && strings.Contains(stdout, "0 jobs in flight")
	})
}

// TestStatusOfAnUnknownBatch: a batch that is not (or no longer) there is
// said in words, with how long batches are kept.
func TestStatusOfAnUnknownBatch(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, map[string]string{"NATS_URL": n.URL}, "status", "no-such-batch")
	want := `imsflow status: no batch "no-such-batch" (batches are kept 30 days after their last change)`
	if code != exitError || out != "" || strings.TrimSpace(errOut) != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, exitError, want)
	}
}

// TestStatusOfANATSWithoutImsflow: a NATS imsflow never ran against is
// said to be one.
func TestStatusOfANATSWithoutImsflow(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	for _, args := range [][]string{{"status"}, {"status", "b1"}} {
		code, _, errOut := runCLI(t, map[string]string{"NATS_URL": n.URL}, args...)
		if code != exitError || !strings.Contains(errOut, "NATS at "+n.URL+" holds no imsflow state") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestStatusWithoutNATS: with nobody listening at NATS_URL, status says
// that NATS could not be reached, where and for how long, and reveals no
// credentials.
func TestStatusWithoutNATS(t *testing.T) {
	t.Parallel()
	const addr = "127.0.0.1:1" // a privileged port nobody here listens on
	code, out, errOut := runCLI(t, map[string]string{"NATS_URL": "nats://imsflow:" + testSK + "@" + addr}, "status")
	// It tries for 5 s, and says how long it took: a loaded machine takes longer.
	m := regexp.MustCompile(`^imsflow status: NATS at nats://` + regexp.QuoteMeta(addr) + ` could not be reached \(tried for ([0-9.]+)s\): `).FindStringSubmatch(errOut)
	if code != exitError || out != "" || m == nil || strings.Contains(errOut, "imsflow:") || strings.Contains(errOut, "deadline") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %d and NATS could not be reached", code, out, errOut, exitError)
	}
	if tried, _ := strconv.ParseFloat(m[1], 64); tried < 5 {
		t.Errorf("tried for %ss, want at least 5s", m[1])
	}
}
