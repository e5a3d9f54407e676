package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/batches"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

const gib = imsapi.GiB

// demoItem is one object or export request of the demo batch, with the
// outcome the demo expects of it.
type demoItem struct {
	label string
	// import
	key  string
	size int64
	meta map[string]string
	// export, and the name of the image it exports
	export *events.ExportRequest
	image  string
	// expected
	want     events.Status
	wantCode string // reason_code of a rejection, error_code of a failure
	wantHow  events.Method
	// what happened
	got     events.Status
	code    string
	how     events.Method
	jobID   string
	polls   int
	reason  string
	done    bool
	elapsed time.Duration
	took    float64 // the job's duration_seconds
}

func (it *demoItem) id() string {
	if it.export != nil {
		return "req:" + it.export.RequestID
	}
	return "key:" + it.key
}

// demoRules are the demo's routing rules: linux/ holds system disks of
// Ubuntu, bare-metal/ system disks whose OS version nobody gave, web/ the
// builds of a golden image whose lifecycle (demo_lifecycle.go) takes each
// to three regions.
var demoRules = `{"rules": [
  {"bucket": "images", "prefix": "linux/", "image_type": "system", "os_version": "Ubuntu 22.04 server 64bit", "tags": {"team": "platform"}},
  {"bucket": "images", "prefix": "bare-metal/", "image_type": "system", "system_type": "BMS"},
  {"name": "` + demoLifecycleRule + `", "bucket": "images", "prefix": "web/", "image_type": "system", "os_version": "Ubuntu 22.04 server 64bit",
   "lifecycle": ` + demoLifecycleJSON + `}
]}`

// demoBatch is a realistic mixed batch: formats and sizes, RAW with its
// bitmap before and after it, system and data disks, inputs that cannot
// be imported, a scripted IMS failure, and exports.
func demoBatch(batch string, images map[string]string) (items []*demoItem, bitmapsFirst, bitmapsAfter []string) {
	imp := func(label, key string, size int64, want events.Status, how events.Method, code string, meta ...string) {
		m := map[string]string{"imsflow-batch": batch}
		for i := 0; i+1 < len(meta); i += 2 {
			m[meta[i]] = meta[i+1]
		}
		items = append(items, &demoItem{label: label, key: key, size: size, meta: m, want: want, wantHow: how, wantCode: code})
	}
	ok, rej, fail := events.StatusSucceeded, events.StatusRejected, events.StatusFailed
	quick, normal := events.MethodQuick, events.MethodNormal
	for i, size := range []int64{8, 40, 200, 350, 600, 900} {
		imp("ZVHD2 data disk", fmt.Sprintf("zvhd2/disk-%02d.zvhd2", i), size*gib, ok, quick, "")
	}
	for i, size := range []int64{20, 150} {
		imp("RAW, bitmap uploaded first", fmt.Sprintf("raw/first-%02d.raw", i), size*gib, ok, quick, "")
		bitmapsFirst = append(bitmapsFirst, fmt.Sprintf("raw/first-%02d.mf", i))
	}
	for i, size := range []int64{30, 500} {
		imp("RAW, bitmap uploaded after", fmt.Sprintf("raw/after-%02d.raw", i), size*gib, ok, quick, "")
		bitmapsAfter = append(bitmapsAfter, fmt.Sprintf("raw/after-%02d.mf", i))
	}
	for i, f := range []struct {
		ext  string
		size int64
	}{{"qcow2", 4}, {"qcow2", 60}, {"vmdk", 25}, {"vmdk", 128}, {"vhd", 12}, {"vhdx", 30}, {"qed", 2}, {"vdi", 16}, {"qcow", 3}, {"zvhd", 9}} {
		imp(strings.ToUpper(f.ext)+" data disk", fmt.Sprintf("data/disk-%02d.%s", i, f.ext), f.size*gib, ok, normal, "")
	}
	imp("system disk by rule", "linux/server-00.qcow2", 20*gib, ok, normal, "")
	imp("system disk, OS from metadata", "linux/server-01.qcow2", 20*gib, ok, normal, "", "ims-os-version", "CentOS 7.9 64bit")
	imp("system disk by metadata alone", "data/server-02.vmdk", 20*gib, ok, normal, "", "ims-type", "system", "ims-os-version", "Debian GNU/Linux 11.0.0 64bit")
	imp("system disk, quick (ZVHD2)", "linux/big-server.zvhd2", 300*gib, ok, quick, "")
	imp("ISO installer, system rule", "linux/installer.iso", 4*gib, ok, normal, "")
	imp("too large for IMS", "big/archive.zvhd2", 1100*gib, rej, "", events.ReasonTooLarge)
	imp("needs conversion", "big/legacy.vmdk", 200*gib, rej, "", events.ReasonNeedsConversion)
	imp("empty file", "data/empty.qcow2", 0, rej, "", events.ReasonEmptyFile)
	imp("system disk without OS version", "bare-metal/unknown.zvhd2", 50*gib, rej, "", events.ReasonInvalidRequest)
	imp("ISO on a data rule", "data/tools.iso", gib, rej, "", events.ReasonISONeedsSystem)
	imp("IMS fails the job", "data/broken-disk.qcow2", 10*gib, fail, normal, "IMG.0057")
	exp := func(label string, req events.ExportRequest, want events.Status, how events.Method, code string) {
		req.BatchID = batch
		items = append(items, &demoItem{label: label, export: &req, want: want, wantHow: how, wantCode: code})
	}
	exp("export, normal (qcow2)", events.ExportRequest{ImageID: images["small"], RequestID: batch + "-e1"}, ok, normal, "")
	exp("export, vmdk to a chosen object", events.ExportRequest{ImageID: images["medium"], FileFormat: "vmdk", BucketURL: "exports:demo/medium.vmdk", RequestID: batch + "-e2"}, ok, normal, "")
	exp("export, quick by size", events.ExportRequest{ImageID: images["big"], RequestID: batch + "-e3"}, ok, quick, "")
	exp("export, quick refused", events.ExportRequest{ImageID: images["big2"], Quick: "false", RequestID: batch + "-e4"}, rej, "", events.ReasonNeedsQuickExport)
	exp("export, encrypted and large", events.ExportRequest{ImageID: images["encrypted"], RequestID: batch + "-e5"}, rej, "", events.ReasonEncryptedQuick)
	exp("export, public image", events.ExportRequest{ImageID: images["public"], RequestID: batch + "-e6"}, rej, "", events.ReasonNotPrivate)
	return items, bitmapsFirst, bitmapsAfter
}

// s3Event is an object-created notification in the S3 shape MinIO and the
// FunctionGraph OBS trigger use.
func s3Event(bucket, key string, size int64, meta map[string]string) []byte {
	um := map[string]string{}
	for k, v := range meta {
		um["X-Amz-Meta-"+k] = v
	}
	b, _ := json.Marshal(map[string]any{"EventName": "s3:ObjectCreated:Put", "Key": bucket + "/" + key, "Records": []any{map[string]any{
		"eventVersion": "2.0", "eventSource": "minio:s3", "eventTime": time.Now().UTC().Format(time.RFC3339Nano),
		"eventName": "s3:ObjectCreated:Put",
		"s3": map[string]any{"bucket": map[string]any{"name": bucket}, "object": map[string]any{
			"key": url.QueryEscape(key), "size": size, "eTag": events.Hash(key, 32), "userMetadata": um,
			"sequencer": fmt.Sprintf("%X", time.Now().UnixNano())}},
	}}})
	return b
}

const demoUsage = `usage: imsflow demo [-v] [-timeout D]

Runs the whole pipeline in this process (embedded NATS, the IMS emulator
2000 times faster than IMS with three regions, the functions) on a
realistic mixed batch of uploads and export requests, sent through
JetStream as MinIO would send them; shows a progress bar, then a table of
every item's route, outcome, status queries and reason, and the batch's
totals. Beside the batch, one upload's image lifecycle reaches three
regions and two projects with a tag; its copy to eu-west-101 is made to
fail once and is retried alone, as "imsflow lifecycle retry" does; the
demo shows the lifecycle's tree and each region's image. Exits 0 when
every item and the lifecycle ended as the demo expects. The output fits
120 columns; -v shows the rest.
`

func runDemo(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	fs := newFlags("imsflow demo", demoUsage)
	timeout := fs.Duration("timeout", 90*time.Second, "give up after this long")
	verbose := fs.Bool("v", false, "the functions' logs on stderr, and the whole table: job IDs, durations, full reasons")
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	dir, err := os.MkdirTemp("", "imsflow-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
		return exitError
	}
	defer func() { _ = os.RemoveAll(dir) }()
	rules := dir + "/rules.json"
	if err := os.WriteFile(rules, []byte(demoRules), 0o600); err != nil {
		fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
		return exitError
	}
	env := map[string]string{"POLL_FIRST": "1s", "POLL_MIN": "1s", "POLL_MAX": "2s", "POLL_MAX_AIMED": "2s", "POLL_TARGET_DELAY": "1s", "IMPORT_RULES_FILE": rules}
	maps.Copy(env, environMap(environ))
	logOut := io.Discard
	if *verbose {
		logOut = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}
	}
	cfg := devConfig{DataDir: dir, NATSPort: 0, EmulatorAddr: "127.0.0.1:0", TimeScale: 2000, ExportBucket: "exports"}
	st, err := startStack(ctx, cfg, env, zerolog.New(logOut).With().Timestamp().Logger(), func(c *imsemu.Config) {
		c.AssumeObjects, c.ImageQuota = false, -1
	})
	if err != nil {
		fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
		return exitError
	}
	defer st.close()
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- st.run(runCtx) }()
	defer func() { stopRun(); <-runDone }()
	deadlineAt := time.Now().Add(*timeout)

	// The image lifecycle, followed from before its upload is sent to its
	// second end, while the batch runs.
	lc, err := newDemoLifecycle(ctx, st, demoRules)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
		return exitError
	}
	defer lc.close()
	var lcRun sync.WaitGroup
	defer lcRun.Wait()
	lcCtx, stopLifecycle := context.WithDeadline(ctx, deadlineAt)
	defer stopLifecycle()
	lcDone := make(chan *lifecycleRun, 1)

	// The IMS side: images to export and a failure to script.
	images, names := map[string]string{}, map[string]string{}
	for name, im := range map[string]imsapi.Image{
		"small": {Name: "golden-small", ImageSize: fmt.Sprint(20 * gib)}, "medium": {Name: "golden-medium", ImageSize: fmt.Sprint(60 * gib)},
		"big": {Name: "golden-big", ImageSize: fmt.Sprint(300 * gib)}, "big2": {Name: "golden-big-2", ImageSize: fmt.Sprint(300 * gib)},
		"encrypted": {Name: "golden-encrypted", ImageSize: fmt.Sprint(400 * gib), SystemCMKID: "kms-key-1"},
		"public":    {Name: "public-ubuntu", ImageType: "gold", ImageSize: fmt.Sprint(4 * gib)},
	} {
		added := st.emu.AddImage(im)
		images[name], names[added.ID] = added.ID, added.Name
	}
	_ = st.emu.AddFailureRule(imsemu.FailureRule{KeyPattern: "data/broken-*", ErrorCode: "IMG.0057", FailReason: "the image file is damaged (scripted by the demo)", AtPercent: 0.6})
	batch := fmt.Sprintf("demo-%d", time.Now().Unix())
	items, bitmapsFirst, bitmapsAfter := demoBatch(batch, images)
	for _, it := range items {
		if it.export != nil {
			it.image = names[it.export.ImageID]
		}
	}
	counter, err := batches.New(ctx, st.js, "demo")
	if err == nil {
		err = counter.Open(ctx, batch, len(items), map[string]string{"source": "imsflow demo"})
	}
	if err != nil {
		fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
		return exitError
	}
	for _, it := range items {
		if it.export == nil {
			st.emu.PutObject(imsemu.Object{Bucket: "images", Key: it.key, Size: it.size})
		}
	}
	for _, k := range append(append([]string{}, bitmapsFirst...), bitmapsAfter...) {
		st.emu.PutObject(imsemu.Object{Bucket: "images", Key: k, Size: 1 << 20})
	}

	// Watch the outputs before sending anything.
	byID := map[string]*demoItem{}
	for _, it := range items {
		byID[it.id()] = it
	}
	var mu sync.Mutex
	doneCh := make(chan struct{}, len(items)*2)
	completed := make(chan events.BatchCompleted, 1)
	start := time.Now()
	sub, err := st.nc.Subscribe("imsflow.out.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if m.Subject == events.SubjectBatchCompleted {
			var b events.BatchCompleted
			if json.Unmarshal(m.Data, &b) == nil && b.BatchID == batch {
				completed <- b
			}
			return
		}
		it := match(byID, m)
		if it == nil || it.done {
			return
		}
		it.done, it.elapsed = true, time.Since(start)
		doneCh <- struct{}{}
	})
	if err != nil {
		fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
		return exitError
	}
	defer func() { _ = sub.Unsubscribe() }()

	// Send the batch through JetStream, as MinIO and export clients would.
	publish := func(subject string, body []byte) error {
		_, err := st.js.Publish(ctx, subject, body)
		return err
	}
	if err := lc.send(ctx); err != nil {
		fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
		return exitError
	}
	lcRun.Go(func() { lcDone <- lc.run(lcCtx) })
	imports, exports := 0, 0
	for _, k := range bitmapsFirst {
		if err := publish(events.SubjectObjectsPrefix+"minio", s3Event("images", k, 1<<20, nil)); err != nil {
			fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
			return exitError
		}
	}
	for _, it := range items {
		var err error
		if it.export != nil {
			b, _ := json.Marshal(it.export)
			err, exports = publish(events.SubjectExportRequests, b), exports+1
		} else {
			err, imports = publish(events.SubjectObjectsPrefix+"minio", s3Event("images", it.key, it.size, it.meta)), imports+1
		}
		if err != nil {
			fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
			return exitError
		}
	}
	for _, k := range bitmapsAfter {
		if err := publish(events.SubjectObjectsPrefix+"minio", s3Event("images", k, 1<<20, nil)); err != nil {
			fmt.Fprintf(stderr, "imsflow demo: %v\n", err)
			return exitError
		}
	}
	fmt.Fprintf(stdout, "imsflow demo: batch %s: %d uploads (and %d RAW bitmaps) and %d export requests sent to JetStream\n",
		batch, imports, len(bitmapsFirst)+len(bitmapsAfter), exports)
	intro := lc.intro()
	if !*verbose {
		intro = strings.Join(wrap(intro, terminalWidth), "\n")
	}
	fmt.Fprintln(stdout, intro)

	// Progress bar until every item has its outcome.
	total, finished := len(items), 0
	deadline := time.After(time.Until(deadlineAt))
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	bar := newProgress(stdout, total)
wait:
	for finished < total {
		select {
		case <-doneCh:
			finished++
			bar.show(finished, "ended")
		case <-tick.C:
			bar.show(finished, "ended")
		case <-deadline:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if bar.tty && finished < total {
		fmt.Fprintln(stdout)
	}
	var totals *events.BatchCompleted
	select {
	case b := <-completed:
		totals = &b
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	code := summary(stdout, items, time.Since(start), *verbose)
	mu.Unlock()
	if totals == nil {
		fmt.Fprintf(stdout, "no %s event for batch %s\n", events.SubjectBatchCompleted, batch)
		code = exitError
	} else {
		fmt.Fprintf(stdout, "%s: batch %s, %d items: %s\n", events.SubjectBatchCompleted, totals.BatchID, totals.Total, statusTotals(totals.ByStatus))
	}
	// The lifecycle's run ends by itself, or when the time is up.
	if lcCode := lc.report(stdout, <-lcDone, *verbose); code == exitOK {
		code = lcCode
	}
	return code
}

// match finds the item an output event reports on, and records it.
func match(byID map[string]*demoItem, m *nats.Msg) *demoItem {
	var f events.JobFinished
	var r events.Rejected
	switch {
	case strings.HasSuffix(m.Subject, ".rejected") && json.Unmarshal(m.Data, &r) == nil:
		var it *demoItem
		if r.Source != nil {
			it = byID["key:"+r.Source.Key]
		} else if r.Request != nil {
			it = byID["req:"+r.Request.RequestID]
		}
		if it != nil {
			it.got, it.code, it.reason = events.StatusRejected, r.ReasonCode, r.Reason
		}
		return it
	case (strings.HasSuffix(m.Subject, ".succeeded") || strings.HasSuffix(m.Subject, ".failed") || strings.HasSuffix(m.Subject, ".timed_out")) &&
		json.Unmarshal(m.Data, &f) == nil:
		var it *demoItem
		if f.Source != nil {
			it = byID["key:"+f.Source.Key]
		} else if f.RequestID != "" {
			it = byID["req:"+f.RequestID]
		}
		if it != nil {
			it.got, it.how, it.jobID, it.polls, it.took = f.Status, f.Method, f.JobID, f.Polls, f.DurationSeconds
			it.code, it.reason = f.ErrorCode, f.FailReason
		}
		return it
	}
	return nil
}

// summary prints the table and totals and returns the exit code: 0 when
// every item reached the outcome the demo expects. An item's reason is a
// code in the table and the words under its row; the whole fits
// terminalWidth columns. Verbose adds job IDs and durations, and wraps
// nothing.
func summary(w io.Writer, items []*demoItem, took time.Duration, verbose bool) int {
	header := []string{"ITEM", "WHAT", "ROUTE", "OUTCOME", "POLLS", "OK", "REASON"}
	if verbose {
		header = []string{"ITEM", "WHAT", "ROUTE", "JOB", "OUTCOME", "POLLS", "TOOK", "OK", "REASON"}
	}
	var rows [][]string
	var notes, wrong []string
	counts := map[events.Status]int{}
	polls, jobs := 0, 0
	for _, it := range items {
		name := it.key
		if it.export != nil {
			name = cmp.Or(it.image, shortID(it.export.ImageID)) // the image exported
		}
		got := string(it.got)
		if !it.done {
			got = "(no outcome)"
		}
		mark := "yes"
		if ok := it.done && it.got == it.want && (it.wantCode == "" || it.code == it.wantCode) && (it.wantHow == "" || it.how == it.wantHow); !ok {
			mark = "NO"
			wrong = append(wrong, fmt.Sprintf("  %s: want %s, got %s", name, outcome(it.want, it.wantHow, it.wantCode), outcome(events.Status(got), it.how, it.code)))
		}
		notes = append(notes, it.reason)
		polled := strconv.Itoa(it.polls)
		if verbose {
			tookText := "-"
			if it.jobID != "" {
				tookText = seconds(it.took)
			}
			rows = append(rows, []string{name, it.label, orDash(string(it.how)), orDash(it.jobID), got, polled, tookText, mark, orDash(it.code)})
		} else {
			rows = append(rows, []string{name, it.label, orDash(string(it.how)), got, polled, mark, orDash(it.code)})
		}
		counts[it.got]++
		if it.jobID != "" {
			jobs++
			polls += it.polls
		}
	}
	width := terminalWidth
	if verbose {
		width = 0
	}
	writeTable(w, header, rows, notes, width)
	avg := 0.0
	if jobs > 0 {
		avg = float64(polls) / float64(jobs)
	}
	fmt.Fprintf(w, "\n%d items in %.1fs: %s; %d IMS jobs, %.1f status queries per job\n", len(items), took.Seconds(), statusTotals(counts), jobs, avg)
	if len(wrong) > 0 {
		fmt.Fprintf(w, "%d items did not end as expected:\n", len(wrong))
		for _, line := range wrong {
			if !verbose {
				line = cut(line, terminalWidth)
			}
			fmt.Fprintln(w, line)
		}
		return exitError
	}
	fmt.Fprintln(w, "every item ended as expected")
	return exitOK
}

// outcome is a status with its method and code, as "failed normal IMG.0057".
func outcome(st events.Status, how events.Method, code string) string {
	return strings.Join(strings.Fields(string(st)+" "+string(how)+" "+code), " ")
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return orDash(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
