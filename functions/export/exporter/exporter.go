// Package exporter is the export function: it turns export requests
// (imsflow.in.export) into IMS export jobs following SPEC section 4 and
// hands each job to the poller. The function's main (functions/export)
// and "imsflow dev" both run it.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/batches"
	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Function is the name of the consumer and of the dead-letter subject.
const Function = "export"

// Stream holds what the function consumes (export requests),
// through its durable consumer, named Function.
const Stream = runner.StreamIn

// Subjects are what the function's consumer takes of Stream.
var Subjects = []string{events.SubjectExportRequests}

// Config of the export function, read from the environment.
type Config struct {
	// DefaultBucket takes the exports of requests without bucket_url.
	DefaultBucket string `env:"EXPORT_BUCKET"`
	// KeyPrefix is put before the derived object name in DefaultBucket.
	KeyPrefix string `env:"EXPORT_KEY_PREFIX" envDefault:"exports/"`
	// ClaimTTL is after how long an unfinished attempt is taken over.
	ClaimTTL time.Duration `env:"EXPORT_CLAIM_TTL" envDefault:"2m"`
	// BusyWait is the wait when IMS is already exporting the image
	// (IMG.0148): exports of one image run one after another.
	BusyWait time.Duration `env:"EXPORT_BUSY_WAIT" envDefault:"30s"`
	// ThrottleWait is the wait after IMS throttles without Retry-After.
	ThrottleWait time.Duration `env:"IMS_THROTTLE_WAIT" envDefault:"5s"`
	Workers      int           `env:"EXPORT_WORKERS" envDefault:"4"`
	AckWait      time.Duration `env:"EXPORT_ACK_WAIT" envDefault:"60s"`
	MaxFailures  int           `env:"EXPORT_MAX_FAILURES" envDefault:"100"`
}

// IMS is what the export function needs of IMS; *imsapi.Client has it.
type IMS interface {
	Image(ctx context.Context, id string) (*imsapi.Image, error)
	ExportImage(ctx context.Context, imageID string, r *imsapi.ExportRequest) (*imsapi.JobRef, error)
}

// New returns the export function's runner on js. The topology
// (runner.Ensure) must exist. The process's telemetry, if ctx carries one
// (telemetry.NewContext), observes the runner.
func New(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error) {
	h, rc, err := build(ctx, cfg, ims, js)
	if err != nil {
		return nil, err
	}
	return runner.New(js, rc, h.handle, log)
}

// Check validates the combinations of settings (New checks them too).
func (c Config) Check() error {
	if c.ClaimTTL <= c.AckWait {
		return fmt.Errorf("EXPORT_CLAIM_TTL (%s) must be longer than EXPORT_ACK_WAIT (%s)", c.ClaimTTL, c.AckWait)
	}
	if c.DefaultBucket != "" {
		if _, _, err := imsapi.ParseBucketURL(c.DefaultBucket + ":x"); err != nil {
			return fmt.Errorf("EXPORT_BUCKET %q: %w", c.DefaultBucket, err)
		}
	}
	return nil
}

// build is New without the runner: the handler and its runner's
// configuration, which tests tune.
func build(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream) (*handler, runner.Config, error) {
	if err := cfg.Check(); err != nil {
		return nil, runner.Config{}, err
	}
	kv, err := js.KeyValue(ctx, runner.BucketExports)
	if err != nil {
		return nil, runner.Config{}, fmt.Errorf("bucket %s: %w", runner.BucketExports, err)
	}
	h := &handler{cfg: cfg, decide: decideConfig{DefaultBucket: cfg.DefaultBucket, KeyPrefix: cfg.KeyPrefix}, ims: ims, now: time.Now}
	h.ledger = &ledger.Ledger{KV: kv, TTL: cfg.ClaimTTL, Now: func() time.Time { return h.now() }}
	counter, err := batches.New(ctx, js, Function)
	if err != nil {
		return nil, runner.Config{}, err
	}
	return h, runner.Config{
		Function: Function, Stream: Stream, Subjects: Subjects,
		AckWait: cfg.AckWait, MaxFailures: cfg.MaxFailures, Workers: cfg.Workers,
		Published: func(ctx context.Context, evs []events.Event) error { return counter.Ended(ctx, evs...) },
		Observer:  telemetry.FromContext(ctx).Runner(Function),
	}, nil
}

type handler struct {
	cfg    Config
	decide decideConfig
	ims    IMS
	ledger *ledger.Ledger // BucketExports: one record per request
	now    func() time.Time
}

// IMS answers of an export that an earlier attempt may have started.
const (
	codeExportRunning = "IMG.0148"
	codeTargetExists  = "IMG.0070"
)

// requestKey is the de-duplication key: the request_id, else the content.
func requestKey(r events.ExportRequest) string {
	if r.RequestID != "" {
		return "r." + events.Hash("id\x00"+r.RequestID, 40)
	}
	return "r." + events.Hash(strings.Join([]string{"c", r.ImageID, r.BucketURL, r.FileFormat, r.Quick, r.BatchID}, "\x00"), 40)
}

func (h *handler) handle(ctx context.Context, m runner.Msg) ([]events.Event, error) {
	req, err := events.DecodeExportRequest(m.Data)
	if err != nil {
		rej := events.Rejected{Kind: events.KindExport, Stage: "decode", ReasonCode: events.ReasonInvalidRequest,
			Reason: err.Error(), Input: string(m.Data[:min(len(m.Data), 1024)]), At: h.now().UTC()}
		return []events.Event{rej}, runner.Term(err.Error())
	}
	e, err := h.ledger.Open(ctx, requestKey(req))
	switch {
	case err != nil:
		return nil, err
	case e.Record.Final():
		return []events.Event{e.Record.Event()}, nil
	}

	im, err := h.ims.Image(ctx, req.ImageID)
	switch {
	case errors.Is(err, imsapi.ErrNotFound):
		return h.reject(ctx, e, req, "lookup", events.ReasonImageNotFound, fmt.Sprintf("image %s does not exist in this project and region", req.ImageID), "")
	case err != nil:
		return nil, h.transient(err, "look up image "+req.ImageID)
	}
	p, rej := decide(req, im, h.decide)
	if rej != nil {
		return h.reject(ctx, e, req, "validate", rej.code, rej.reason, "")
	}
	takeover := e.Takeover()
	if err := h.ledger.Claim(ctx, &e, ledger.Slot{}); err != nil {
		return nil, err
	}
	ref, err := h.ims.ExportImage(ctx, im.ID, &imsapi.ExportRequest{BucketURL: p.bucketURL, FileFormat: p.format, IsQuickExport: p.quick})
	method := events.MethodNormal
	if p.quick {
		method = events.MethodQuick
	}
	ho := events.JobSubmitted{JobType: imsapi.JobTypeExportImage, Kind: events.KindExport, Method: method, ImageID: im.ID,
		ImageName: im.Name, SubmittedAt: h.now().UTC(), BatchID: req.BatchID, BucketURL: p.bucketURL,
		FileFormat: p.fileExt, Quick: p.quick, RequestID: req.RequestID}
	submitted := func() ([]events.Event, error) {
		return h.ledger.Settle(ctx, e, ledger.Record{State: ledger.Submitted, ClaimedAt: h.now(), Handoff: &ho})
	}
	apiErr, _ := errors.AsType[*imsapi.APIError](err)
	code := ""
	if apiErr != nil {
		code = apiErr.Code
	}
	switch {
	case err == nil:
		ho.JobID = ref.JobID
		return submitted()
	case takeover && code == codeTargetExists:
		// The target exists: the earlier attempt's export finished (IMS
		// writes the object at the end). Hand it off known by its target
		// (JobSubmitted.Ref); the poller reports it done.
		zerolog.Ctx(ctx).Info().Str("target", p.bucketURL).Msg("an earlier attempt's export has written its target")
		return submitted()
	case takeover && code == codeExportRunning:
		// An export of this image runs, perhaps the earlier attempt's: keep
		// the claim, and take it over again once it expires, when the export
		// has ended one way or the other.
		return nil, runner.Delay(max(h.cfg.BusyWait, h.cfg.ClaimTTL), "an export of this image is running, perhaps this request's own earlier attempt; looking again later")
	case code == codeExportRunning:
		h.ledger.Abandon(ctx, e)
		return nil, runner.Delay(h.cfg.BusyWait, "IMS is exporting this image for another request; this export waits its turn")
	case imsapi.MaybeApplied(err):
		return nil, fmt.Errorf("export %s (it may have been accepted): %w", im.ID, err)
	case imsapi.IsRetryable(err):
		h.ledger.Abandon(ctx, e)
		return nil, h.transient(err, "export "+im.ID)
	default:
		return h.reject(ctx, e, req, "submit", events.ReasonIMSRefused, "IMS refused the export: "+err.Error(), code)
	}
}

// transient turns IMS throttling into a wait and passes other errors on.
func (h *handler) transient(err error, what string) error {
	if d, ok := imsapi.ThrottleDelay(err, h.cfg.ThrottleWait); ok {
		return runner.Delay(d, "IMS throttles: "+err.Error())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// reject terminates the message with a rejected event. Refusals are not
// remembered: the same request sent later is judged again (the image may
// have become active meanwhile); a claim held on it is dropped.
func (h *handler) reject(ctx context.Context, e ledger.Entry, req events.ExportRequest, stage, code, reason, imsCode string) ([]events.Event, error) {
	h.ledger.Drop(ctx, e)
	r := req
	rej := events.Rejected{Kind: events.KindExport, Stage: stage, ReasonCode: code, Reason: reason, Request: &r,
		ErrorCode: imsCode, BatchID: req.BatchID, At: h.now().UTC()}
	return []events.Event{rej}, runner.Term(reason)
}
