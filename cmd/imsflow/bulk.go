package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/batches"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/natsconn"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

// bulkEnv is what the bulk commands read from the environment.
type bulkEnv struct {
	NATS      natsconn.Config
	S3        objstore.Config
	RulesFile string `env:"IMPORT_RULES_FILE"`
	ImgAsRaw  bool   `env:"IMPORT_IMG_AS_RAW"`
}

func parseBulkEnv(environ map[string]string) (bulkEnv, error) {
	var e bulkEnv
	err := imsconfig.ParseEnv(&e, environ)
	return e, err
}

const bulkUsage = `usage:
  imsflow bulk import [-dry-run] [-batch ID] s3://BUCKET/PREFIX     one upload event per object (S3_*, NATS_URL)
  imsflow bulk export -bucket B [-prefix P] [-format F] [-quick auto|true|false] [-batch ID] [FILE]
                                                                    one export request per image ID (FILE or stdin)

"imsflow bulk import -h" and "imsflow bulk export -h" say more.
`

const bulkImportUsage = `usage: imsflow bulk import [-dry-run] [-batch ID] s3://BUCKET/PREFIX

Lists the objects under the prefix (S3_*), opens a batch of that size and
publishes one upload event per object, bitmaps first (NATS_*); prints the
batch ID to follow with "imsflow status".
`

const bulkExportUsage = `usage: imsflow bulk export -bucket B [-prefix P] [-format F] [-quick auto|true|false] [-batch ID] [FILE]

Publishes one export request per image ID, as one batch (NATS_*). The IDs
are read one a line from FILE, or stdin when FILE is absent or "-"; a line
starting with # is a comment.
`

func runBulk(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer, stdin io.Reader) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, bulkUsage)
		return exitUsage
	}
	switch {
	case isHelp(args[0]):
		fmt.Fprint(stdout, bulkUsage)
		return exitOK
	case args[0] == "import":
		return runBulkImport(ctx, args[1:], environ, stdout, stderr)
	case args[0] == "export":
		return runBulkExport(ctx, args[1:], environ, stdout, stderr, stdin)
	}
	fmt.Fprintf(stderr, "imsflow bulk: unknown command %q\n\n%s", args[0], bulkUsage)
	return exitUsage
}

func newBatchID(prefix string) string {
	return fmt.Sprintf("%s-%s", prefix, time.Now().UTC().Format("20060102-150405"))
}

func runBulkImport(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	fs := newFlags("imsflow bulk import", bulkImportUsage)
	dryRun := fs.Bool("dry-run", false, "print the route each object would take; publish nothing")
	batch := fs.String("batch", "", "batch ID (default: bulk-import-<time>)")
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return fs.fail(stderr, "want one s3://BUCKET/PREFIX, got %d arguments", fs.NArg())
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return fs.fail(stderr, "%q is not s3://BUCKET/PREFIX", fs.Arg(0))
	}
	bucket, prefix := u.Host, strings.TrimPrefix(u.Path, "/")
	e, err := parseBulkEnv(environ)
	if err == nil && !e.S3.Enabled() {
		err = fmt.Errorf("S3_ENDPOINT is not set")
	}
	var rules importer.Rules
	if err == nil {
		rules, err = importer.LoadRules(e.RulesFile)
	}
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bulk import: %v\n", err)
		return exitUsage
	}
	store, err := objstore.New(e.S3)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bulk import: %v\n", err)
		return exitUsage
	}
	if *batch == "" {
		*batch = newBatchID("bulk-import")
	}
	// List everything first: the batch's size is known before publishing.
	var objs []objstore.Object
	for o, err := range store.List(ctx, bucket, prefix) {
		if err != nil {
			fmt.Fprintf(stderr, "imsflow bulk import: %v\n", err)
			return exitError
		}
		objs = append(objs, o)
	}
	type planned struct {
		obj   objstore.Object
		route importer.Route
	}
	var items, companions []planned
	skipped, checksums := 0, 0
	for _, o := range objs {
		r := importer.Describe(objectCreated(o, *batch), rules, e.ImgAsRaw)
		switch r.Action {
		case "skip":
			skipped++
		case "checksum":
			checksums++ // read from the bucket with its image
		case "bitmap":
			companions = append(companions, planned{o, r})
		default:
			items = append(items, planned{o, r})
		}
	}
	if *dryRun {
		for _, p := range append(items, companions...) {
			what := p.route.Action
			switch p.route.Action {
			case "reject":
				what += " " + p.route.ReasonCode + ": " + p.route.Reason
			case "bitmap":
				what = "bitmap of a RAW file"
			default:
				what += fmt.Sprintf(" %s import as %s (%s, min_disk %d GB)", p.route.ImageType, p.route.ImageName, p.route.Format, p.route.MinDisk)
				if p.route.WaitsForBitmap {
					what += ", with its bitmap"
				}
			}
			fmt.Fprintf(stdout, "%s:%s  %d bytes  %s\n", bucket, p.obj.Key, p.obj.Size, what)
		}
		fmt.Fprintf(stdout, "%d objects: %d to import or reject, %d bitmaps, %d checksum files (read with their images), %d skipped (not images); nothing published\n",
			len(objs), len(items), len(companions), checksums, skipped)
		return exitOK
	}
	nc, js, err := e.NATS.ConnectContext(ctx, "imsflow-bulk")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bulk import: %v\n", err)
		return exitError
	}
	defer nc.Close()
	counter, err := batches.New(ctx, js, "bulk")
	if err == nil && len(items) > 0 {
		err = counter.Open(ctx, *batch, len(items), map[string]string{"source": "s3://" + bucket + "/" + prefix})
	}
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bulk import: %v (is imsflow running against %s?)\n", err, e.NATS.RedactedURL())
		return exitError
	}
	fmt.Fprintf(stdout, "batch %s: %d objects to import, %d bitmaps, %d skipped\n", *batch, len(items), len(companions), skipped)
	// Bitmaps first, so that RAW files find theirs at once.
	all := append(companions, items...)
	bar := newProgress(stdout, len(all))
	acks := make([]jetstream.PubAckFuture, 0, len(all))
	for i, p := range all {
		body := s3Event(bucket, p.obj.Key, p.obj.Size, objectMetadata(p.obj, *batch))
		// One message ID per object version: a repeated bulk run within the
		// stream's window publishes nothing twice.
		id := "bulk:" + events.Hash(bucket+"\x00"+p.obj.Key+"\x00"+p.obj.ETag+"\x00"+p.obj.VersionID, 40)
		ack, err := js.PublishAsync(events.SubjectObjectsPrefix+"bulk", body, jetstream.WithMsgID(id))
		if err != nil {
			fmt.Fprintf(stderr, "imsflow bulk import: %v\n", err)
			return exitError
		}
		acks = append(acks, ack)
		bar.show(i+1, "published")
	}
	for _, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			fmt.Fprintf(stderr, "imsflow bulk import: %v\n", err)
			return exitError
		case <-ctx.Done():
			return exitError
		}
	}
	fmt.Fprintf(stdout, "batch %s published; follow it with: imsflow status %s  (or imsflow watch -batch %s)\n", *batch, *batch, *batch)
	return exitOK
}

// objectCreated is the record an object's event would carry.
func objectCreated(o objstore.Object, batch string) events.ObjectCreated {
	return events.ObjectCreated{Shape: "s3", EventName: "ObjectCreated:Put", Bucket: o.Bucket, Key: o.Key, Size: o.Size,
		ETag: o.ETag, VersionID: o.VersionID, Metadata: objectMetadata(o, batch)}
}

func objectMetadata(o objstore.Object, batch string) map[string]string {
	m := map[string]string{"imsflow-batch": batch}
	for k, v := range o.Metadata {
		m[k] = v
	}
	return m
}

func runBulkExport(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer, stdin io.Reader) int {
	fs := newFlags("imsflow bulk export", bulkExportUsage)
	bucket := fs.String("bucket", "", "target bucket")
	prefix := fs.String("prefix", "exports/", "key prefix in the target bucket; each file is named <image-name>-<image-id>.<format>")
	format := fs.String("format", "", "qcow2, vhd, zvhd or vmdk (default qcow2; none for quick exports)")
	quick := fs.String("quick", "auto", "auto, true or false")
	batch := fs.String("batch", "", "batch ID (default: bulk-export-<time>)")
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	switch {
	case *bucket == "":
		return fs.fail(stderr, "-bucket is required")
	case fs.NArg() > 1:
		return fs.fail(stderr, "want at most one FILE of image IDs, got %d arguments", fs.NArg())
	}
	in := stdin
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "imsflow bulk export: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		in = f
	}
	var ids []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" && !strings.HasPrefix(id, "#") {
			ids = append(ids, id)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "imsflow bulk export: reading image IDs: %v\n", err)
		return exitUsage
	}
	if len(ids) == 0 {
		fmt.Fprintln(stderr, "imsflow bulk export: no image IDs read")
		return exitUsage
	}
	if *batch == "" {
		*batch = newBatchID("bulk-export")
	}
	if !strings.HasSuffix(*prefix, "/") {
		*prefix += "/"
	}
	reqs := make([][]byte, 0, len(ids))
	for _, id := range ids {
		// A bucket_url ending in "/" is a prefix: the export function
		// names the file from the image and the format it exports.
		req := events.ExportRequest{ImageID: id, BucketURL: *bucket + ":" + strings.TrimPrefix(*prefix, "/"), FileFormat: *format, Quick: *quick,
			RequestID: *batch + "-" + id, BatchID: *batch}
		b, _ := json.Marshal(req)
		if _, err := events.DecodeExportRequest(b); err != nil {
			fmt.Fprintf(stderr, "imsflow bulk export: %s: %v\n", id, err)
			return exitUsage
		}
		reqs = append(reqs, b)
	}
	e, err := parseBulkEnv(environ)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bulk export: %v\n", err)
		return exitUsage
	}
	nc, js, err := e.NATS.ConnectContext(ctx, "imsflow-bulk")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bulk export: %v\n", err)
		return exitError
	}
	defer nc.Close()
	counter, err := batches.New(ctx, js, "bulk")
	if err == nil {
		err = counter.Open(ctx, *batch, len(reqs), map[string]string{"target": *bucket + ":" + *prefix})
	}
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bulk export: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "batch %s: %d export requests to %s:%s\n", *batch, len(reqs), *bucket, *prefix)
	bar := newProgress(stdout, len(reqs))
	for i, b := range reqs {
		var req events.ExportRequest
		_ = json.Unmarshal(b, &req)
		if _, err := js.Publish(ctx, events.SubjectExportRequests, b, jetstream.WithMsgID("bulk:"+req.RequestID)); err != nil {
			fmt.Fprintf(stderr, "imsflow bulk export: %v\n", err)
			return exitError
		}
		bar.show(i+1, "published")
	}
	fmt.Fprintf(stdout, "batch %s published; follow it with: imsflow status %s\n", *batch, *batch)
	return exitOK
}

// statusUsage is the usage of "imsflow status"; %s is how long batches
// are kept.
const statusUsage = `usage: imsflow status [BATCH|LIFECYCLE]

With BATCH, the batch's totals and each of its items' outcome (batches are
kept %s after their last change); with a lifecycle's ID, its legs as a
tree (see "imsflow lifecycle"); without, the IMS jobs in flight. NATS is
found with NATS_URL and the other NATS_* settings.
`

// batchRetention is how long a batch's totals are kept: the TTL of its
// bucket.
func batchRetention() string {
	for _, b := range runner.DefaultTopology(1).Buckets {
		if b.Bucket == runner.BucketBatches {
			if days := b.TTL / (24 * time.Hour); days > 0 && b.TTL%(24*time.Hour) == 0 {
				return fmt.Sprintf("%d days", days)
			}
			return b.TTL.String()
		}
	}
	return "a while"
}

// runStatus prints a batch's totals and its items by outcome, or with no
// batch the jobs in flight.
func runStatus(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	fs := newFlags("imsflow status", fmt.Sprintf(statusUsage, batchRetention()))
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 1 {
		return fs.fail(stderr, "want at most one batch ID, got %d arguments", fs.NArg())
	}
	e, err := parseBulkEnv(environ)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow status: %v\n", err)
		return exitUsage
	}
	nc, js, err := e.NATS.ConnectContext(ctx, "imsflow-status")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow status: %v\n", err)
		return exitError
	}
	defer nc.Close()
	if fs.NArg() == 0 {
		return jobsInFlight(ctx, js, e.NATS, stdout, stderr)
	}
	batch := fs.Arg(0)
	if store, err := lifecycleStore(ctx, js, e.NATS); err == nil {
		if _, _, err := store.Load(ctx, batch); err == nil {
			return showLifecycle(ctx, store, batch, stdout, stderr)
		}
	}
	counter, err := batches.New(ctx, js, "status")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow status: %v\n", noImsflow(err, e.NATS))
		return exitError
	}
	rec, err := counter.Get(ctx, batch)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		fmt.Fprintf(stderr, "imsflow status: no batch %q (batches are kept %s after their last change)\n", batch, batchRetention())
		return exitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "imsflow status: batch %s: %v\n", batch, err)
		return exitError
	}
	state := "running"
	if rec.Completed {
		state = "completed " + rec.EndedAt.Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "batch %s: %d of %d items ended %v; %s (started %s)\n", batch, rec.Ended(), rec.Total, rec.Counts, state, rec.StartedAt.Format(time.RFC3339))
	// The items, from the output events kept in the stream.
	cons, err := js.OrderedConsumer(ctx, runner.StreamOut, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"imsflow.out.import.*", "imsflow.out.export.*"}})
	if err != nil {
		fmt.Fprintf(stderr, "imsflow status: %v\n", err)
		return exitError
	}
	for {
		batchMsgs, err := cons.FetchNoWait(500)
		if err != nil {
			break
		}
		n := 0
		for m := range batchMsgs.Messages() {
			n++
			if strings.Contains(string(m.Data()), `"batch_id":"`+batch+`"`) && !strings.HasSuffix(m.Subject(), ".stalled") {
				fmt.Fprintln(stdout, "  "+describe(m.Subject(), m.Data()))
			}
		}
		if n == 0 {
			break
		}
	}
	return exitOK
}

// noImsflow explains a missing bucket: imsflow has never run against this
// NATS.
func noImsflow(err error, c natsconn.Config) error {
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w: NATS at %s holds no imsflow state; is imsflow running against it?", err, c.RedactedURL())
	}
	return err
}

func jobsInFlight(ctx context.Context, js jetstream.JetStream, nc natsconn.Config, stdout, stderr io.Writer) int {
	kv, err := js.KeyValue(ctx, runner.BucketJobs)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow status: bucket %s: %v\n", runner.BucketJobs, noImsflow(err, nc))
		return exitError
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow status: %v\n", err)
		return exitError
	}
	n := 0
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var st struct {
			Handoff  events.JobSubmitted `json:"handoff"`
			Polls    int                 `json:"polls"`
			Status   string              `json:"status"`
			NextPoll time.Time           `json:"next_poll"`
			Final    *events.JobFinished `json:"final"`
			Samples  []struct {
				P float64 `json:"p"`
			} `json:"samples"`
		}
		if json.Unmarshal(e.Value(), &st) != nil || st.Final != nil {
			continue
		}
		pct := 0.0
		if len(st.Samples) > 0 {
			pct = st.Samples[len(st.Samples)-1].P * 100
		}
		what := st.Handoff.BucketURL
		if st.Handoff.Source != nil {
			what = st.Handoff.Source.Bucket + ":" + st.Handoff.Source.Key
		}
		fmt.Fprintf(stdout, "%-6s %-32s %-8s %3.0f%%  %d polls, next %s  %s\n", st.Handoff.Kind, orDash(st.Handoff.JobID), orDash(st.Status), pct, st.Polls, st.NextPoll.Format(time.TimeOnly), what)
		n++
	}
	fmt.Fprintf(stdout, "%d jobs in flight\n", n)
	return exitOK
}
