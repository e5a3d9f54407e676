// Package poller is the poller function: it tracks every submitted IMS
// job until it ends and publishes its completion event, exactly once as
// consumers see it (SPEC section 5).
//
// Waiting jobs hold no consumer slot and no goroutine: a job's state lives
// in the imsflow_jobs bucket, updated by compare-and-set, and its next
// status query is a JetStream scheduled message (nats-server 2.12+) on
// imsflow.sched.poll.<key> that fires onto imsflow.jobs.poll.<key>. The
// poller consumes hand-offs and fired timers; restarting or scaling it
// loses and doubles nothing.
package poller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/batches"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/rateshare"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Function is the name of the consumer and of the dead-letter subject.
const Function = "poller"

// Stream holds what the function consumes (hand-offs and its own timers),
// through its durable consumer, named Function.
const Stream = runner.StreamJobs

// Subjects of the poll timers.
const (
	subjectPollPrefix  = runner.SubjectPollPrefix
	subjectSchedPrefix = runner.SubjectSchedPollPrefix
)

// Config of the poller, read from the environment.
type Config struct {
	// FirstPoll is the delay of the first status query after submission.
	FirstPoll time.Duration `env:"POLL_FIRST" envDefault:"10s"`
	// MinInterval is the shortest delay between queries; MaxInterval caps
	// the backoff of a job that shows no progress trend; MaxAimed caps a
	// delay aimed by the trend.
	MinInterval time.Duration `env:"POLL_MIN" envDefault:"5s"`
	MaxInterval time.Duration `env:"POLL_MAX" envDefault:"5m"`
	MaxAimed    time.Duration `env:"POLL_MAX_AIMED" envDefault:"1h"`
	// Backoff multiplies the interval while a job shows no progress trend.
	Backoff float64 `env:"POLL_BACKOFF" envDefault:"2"`
	// Reconcile are the consumers of the functions that may sleep at zero
	// replicas (import and export under KEDA), which the sweep makes when
	// they are missing: KEDA can wake a function only on its consumer's
	// lag, and only the function makes its consumer. Set by the process
	// that runs the poller, not the environment.
	Reconcile []runner.Consumer `env:"-"`
	// MaxInFlight is the import's cap of in-flight slots (the same
	// IMS_MAX_INFLIGHT), reported with the slots taken: the poller never
	// sleeps, while the import may, so the gauges stay there.
	MaxInFlight int `env:"IMS_MAX_INFLIGHT" envDefault:"40"`
	// TargetDelay is the delay from a job's end to its query that the
	// forecast aims at (at most; most ends are seen sooner).
	TargetDelay time.Duration `env:"POLL_TARGET_DELAY" envDefault:"20s"`
	// Deadline ends the tracking of a job with timed_out.
	Deadline time.Duration `env:"JOB_DEADLINE" envDefault:"24h"`
	// StallAfter publishes one stalled warning when progress has not moved for it.
	StallAfter time.Duration `env:"STALL_AFTER" envDefault:"30m"`
	// Progress publishes imsflow.out.progress on every change of progress.
	Progress bool `env:"PUBLISH_PROGRESS" envDefault:"false"`
	// Sweep is how often the reconciler runs (see sweep.go); Retain, how
	// long a finished job's state is kept.
	Sweep  time.Duration `env:"POLL_SWEEP" envDefault:"1m"`
	Retain time.Duration `env:"JOBS_RETAIN" envDefault:"168h"`
	// Workers and AckWait tune the consumer; MaxFailures is how many
	// failed deliveries send a message to the dead letters (waits do not count).
	Workers     int           `env:"POLLER_WORKERS" envDefault:"8"`
	AckWait     time.Duration `env:"POLLER_ACK_WAIT" envDefault:"60s"`
	MaxFailures int           `env:"POLLER_MAX_FAILURES" envDefault:"1000"`
}

func (c Config) policy() policy {
	return policy{First: c.FirstPoll, Min: c.MinInterval, Max: c.MaxInterval, AimMax: c.MaxAimed, Factor: c.Backoff, Target: c.TargetDelay}
}

// IMS is what the poller needs of IMS; *imsapi.Client has it.
type IMS interface {
	JobProgress(ctx context.Context, jobID string) (*imsapi.Job, error)
	Job(ctx context.Context, jobID string) (*imsapi.Job, error)
	Image(ctx context.Context, id string) (*imsapi.Image, error)
}

// jobState is a tracked job in the imsflow_jobs bucket.
type jobState struct {
	Handoff events.JobSubmitted `json:"handoff"`
	Polls   int                 `json:"polls"`
	Status  string              `json:"status,omitempty"`
	Samples []sample            `json:"samples,omitempty"`
	// Deferred counts the due queries put off in a row under a backlog.
	Deferred   int       `json:"deferred,omitempty"`
	LastChange time.Time `json:"last_change"`
	Stalled    bool      `json:"stalled,omitempty"`
	NextPoll   time.Time `json:"next_poll"`
	Deadline   time.Time `json:"deadline"`
	// StatusAPI: the progress API was not available; use the job status API.
	StatusAPI bool `json:"status_api,omitempty"`
	// Final is the completion event, stored before it is published;
	// Published says it was.
	Final     *events.JobFinished `json:"final,omitempty"`
	Published bool                `json:"published,omitempty"`
}

type poller struct {
	cfg Config
	pol policy
	ims IMS
	// regions gives the IMS of a lifecycle leg's region (nil: the home
	// region only).
	regions func(region string) (IMS, error)
	js      jetstream.JetStream
	jobs    jetstream.KeyValue
	slots   jetstream.KeyValue
	imports jetstream.KeyValue
	// lifecycles reads the legs that hold replication slots (the sweep).
	lifecycles *lifecycle.Store
	batches    *batches.Counter
	tel        *telemetry.Telemetry // nil: none
	meter      *rateshare.Meter     // the process's queue for the IMS rate; nil: none
	now        func() time.Time
}

// New returns the poller's runner. The topology (runner.Ensure) must
// exist. The process's telemetry, if ctx carries one
// (telemetry.NewContext), observes the runner and the sweep's count of
// the jobs in flight.
func New(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error) {
	p, rc, err := build(ctx, cfg, ims, js)
	if err != nil {
		return nil, err
	}
	return runner.New(js, rc, p.handle, log)
}

// Check validates the combinations of settings (New checks them too).
func (c Config) Check() error {
	if c.MinInterval < time.Second || c.TargetDelay < time.Second || c.FirstPoll < time.Second || c.MaxInterval < c.MinInterval || c.Backoff < 1 || c.Deadline <= 0 || c.Sweep < 0 || c.Sweep > 0 && c.Sweep < time.Second || c.Retain < 0 {
		return errors.New("poller: POLL_FIRST, POLL_MIN, POLL_TARGET_DELAY and POLL_SWEEP at least 1s (timers have second precision), POLL_MAX at least POLL_MIN, POLL_BACKOFF at least 1, JOB_DEADLINE and JOBS_RETAIN positive")
	}
	return nil
}

// build is New without the runner: the handler and its runner's
// configuration, which tests tune.
func build(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream) (*poller, runner.Config, error) {
	if err := cfg.Check(); err != nil {
		return nil, runner.Config{}, err
	}
	p, err := newPoller(ctx, cfg, ims, js)
	if err != nil {
		return nil, runner.Config{}, err
	}
	return p, runner.Config{
		Function: Function, Stream: Stream, Subjects: []string{events.SubjectJobSubmitted, subjectPollPrefix + ">", subjectSweep},
		AckWait: cfg.AckWait, MaxFailures: cfg.MaxFailures, Workers: cfg.Workers,
		Observer: p.tel.Runner(Function),
	}, nil
}

func newPoller(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream) (*poller, error) {
	// Zero, as in a Config written in Go: the environment's defaults.
	cfg.Sweep = cmp.Or(cfg.Sweep, time.Minute)
	cfg.Retain = cmp.Or(cfg.Retain, 7*24*time.Hour)
	jobs, err := js.KeyValue(ctx, runner.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketJobs, err)
	}
	slots, err := js.KeyValue(ctx, runner.BucketSlots)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketSlots, err)
	}
	if err := telemetry.FromContext(ctx).Slots(cfg.MaxInFlight, telemetry.KeyCount(slots, runner.SlotKeys)); err != nil {
		return nil, err
	}
	imports, err := js.KeyValue(ctx, runner.BucketImports)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketImports, err)
	}
	lkv, err := js.KeyValue(ctx, runner.BucketLifecycles)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketLifecycles, err)
	}
	counter, err := batches.New(ctx, js, Function)
	if err != nil {
		return nil, err
	}
	if err := armSweep(ctx, js, cfg.Sweep); err != nil {
		return nil, err
	}
	p := &poller{cfg: cfg, pol: cfg.policy(), ims: ims, js: js, jobs: jobs, slots: slots, imports: imports, batches: counter,
		lifecycles: &lifecycle.Store{KV: lkv, JS: js, Now: time.Now},
		tel:        telemetry.FromContext(ctx), meter: rateshare.FromContext(ctx), now: time.Now}
	if r := imsconfig.FromContext(ctx); r != nil {
		p.regions = func(region string) (IMS, error) {
			c, err := r.Client(region)
			if err != nil {
				return nil, err
			}
			return c, nil
		}
	}
	return p, nil
}

// imsFor is the IMS that runs h's job: a lifecycle leg's region's, else
// the home region's.
func (p *poller) imsFor(h events.JobSubmitted) (IMS, error) {
	if h.Leg == nil || h.Leg.Region == "" || p.regions == nil {
		return p.ims, nil
	}
	return p.regions(h.Leg.Region)
}

// codeNoSuchAPI is the gateway's answer for a path it does not serve.
const codeNoSuchAPI = "APIGW.0101"

// stateKey is a job's key in BucketJobs, after its one identity
// (JobSubmitted.Ref): "j.<job ID>", "i.<image ID>" for an import found by
// its image, "x.<hash>" for an export found by its target.
func stateKey(h events.JobSubmitted) string {
	switch ref := h.Ref(); {
	case h.JobID != "":
		return "j." + h.JobID
	case strings.HasPrefix(ref, "export:"):
		return "x." + strings.TrimPrefix(ref, "export:")
	default:
		return "i." + h.ImageID
	}
}

func (p *poller) handle(ctx context.Context, m runner.Msg) ([]events.Event, error) {
	if m.Subject == subjectSweep {
		return nil, p.sweep(ctx)
	}
	if key, ok := strings.CutPrefix(m.Subject, subjectPollPrefix); ok {
		return p.poll(ctx, key)
	}
	var h events.JobSubmitted
	if err := json.Unmarshal(m.Data, &h); err != nil || (h.JobID == "" && h.ImageID == "") {
		return nil, fmt.Errorf("%w: hand-off is not a JobSubmitted with a job or image ID: %v", runner.ErrPermanent, err)
	}
	return nil, p.track(ctx, h)
}

// track starts tracking a handed-off job: its state, then its first timer.
// A repeated hand-off re-arms the timer of a job still tracked (the earlier
// attempt may have died between the two).
func (p *poller) track(ctx context.Context, h events.JobSubmitted) error {
	key := stateKey(h)
	now := p.now()
	st := jobState{Handoff: h, NextPoll: now.Add(p.cfg.FirstPoll), Deadline: h.SubmittedAt.Add(p.cfg.Deadline), LastChange: now}
	if h.SubmittedAt.IsZero() {
		st.Deadline = now.Add(p.cfg.Deadline)
	}
	b, _ := json.Marshal(st)
	_, err := p.jobs.Create(ctx, key, b)
	if ledger.Conflict(err) {
		cur, _, gerr := p.load(ctx, key)
		if gerr != nil {
			return gerr
		}
		if cur.Published {
			return nil
		}
		st = cur
	} else if err != nil {
		return fmt.Errorf("record job %s: %w", key, err)
	}
	return p.schedule(ctx, key, st.NextPoll)
}

// schedule arms the job's timer (one per job: a new one replaces it).
func (p *poller) schedule(ctx context.Context, key string, at time.Time) error {
	at = at.Truncate(time.Second)
	if min := p.now().Add(time.Second).Truncate(time.Second); at.Before(min) {
		at = min
	}
	_, err := p.js.Publish(ctx, subjectSchedPrefix+key, []byte(key),
		jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(subjectPollPrefix+key))
	if err != nil {
		return fmt.Errorf("schedule the next query of %s: %w", key, err)
	}
	return nil
}

func (p *poller) load(ctx context.Context, key string) (jobState, uint64, error) {
	e, err := p.jobs.Get(ctx, key)
	if err != nil {
		return jobState{}, 0, err
	}
	var st jobState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return jobState{}, 0, fmt.Errorf("%w: job state %s: %v", runner.ErrPermanent, key, err)
	}
	return st, e.Revision(), nil
}

// poll is a fired timer: query IMS, then finish the job or re-arm. Every
// path that leaves a job unfinished leaves a timer armed behind it (the
// sweep repairs what a crash between two writes leaves).
func (p *poller) poll(ctx context.Context, key string) ([]events.Event, error) {
	st, rev, err := p.load(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil // a timer of a job no longer tracked
	}
	if err != nil {
		return nil, fmt.Errorf("read job state %s: %w", key, err)
	}
	if st.Final != nil {
		return p.publishFinal(ctx, key, st, rev)
	}
	if now := p.now(); now.Before(st.NextPoll.Add(-2*time.Second)) && now.Before(st.Deadline) {
		// An early timer: a stale one (the job was re-armed since), or the
		// redelivery of a poll whose state was written but whose timer
		// was not (a NATS leader change between the two). Arm the timer
		// for NextPoll (it replaces any other) before this one is acked.
		return nil, p.schedule(ctx, key, st.NextPoll)
	}
	var out []events.Event
	if now := p.now(); p.deferral(&st, now) {
		// A backlog of queries for the IMS rate: this one matters less than
		// the first queries and those near a job's end, which go first.
		p.tel.PollDeferred(st.Handoff.Kind)
	} else {
		st.Polls++
		st.Deferred = 0
		o := p.query(ctx, &st)
		// What IMS said holds as of its answer: the end of a job that ended
		// while the query was on its way is seen now, not before it.
		st, out = p.advance(st, o, p.now())
		if o.err != nil {
			zerolog.Ctx(ctx).Warn().Str("job", key).Err(o.err).Int("polls", st.Polls).Msg("status query failed")
		} else if o.unknown() {
			zerolog.Ctx(ctx).Warn().Str("job", key).Str("status", o.status).Msg("unknown job status; still tracking")
		}
	}
	b, _ := json.Marshal(st)
	newRev, err := p.jobs.Update(ctx, key, b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil, nil // another replica handled this timer, and armed the next
	}
	if err != nil {
		return nil, fmt.Errorf("record job %s: %w", key, err)
	}
	if st.Final != nil {
		evs, err := p.publishFinal(ctx, key, st, newRev)
		return append(out, evs...), err
	}
	if err := p.schedule(ctx, key, st.NextPoll); err != nil {
		return nil, err
	}
	return out, nil
}

// Under a backlog (the process's IMS requests wait backlogWait or more
// for the rate, on average) a due query that matters less is put off by
// that wait, at most maxDeferrals times in a row.
const (
	backlogWait  = 2 * time.Second
	maxDeferrals = 3
)

// deferral puts a due query off, moving st's next query by the mean wait,
// and reports whether it did: never a job's first query (its INIT, or its
// end if short), one near the end the forecast expects (within Target and
// the wait), one near the deadline, nor one put off maxDeferrals times
// already.
func (p *poller) deferral(st *jobState, now time.Time) bool {
	wait := p.meter.MeanWait()
	if wait < backlogWait || st.Polls == 0 || st.Deferred >= maxDeferrals || !now.Add(2*wait).Before(st.Deadline) {
		return false
	}
	if lo, _, _, ok := p.pol.forecast(st.Samples, now); ok && !lo.After(now.Add(p.pol.Target+wait)) {
		return false
	}
	st.Deferred++
	st.NextPoll = now.Add(max(wait, p.cfg.MinInterval))
	return true
}

// observation is what one status query found.
type observation struct {
	status  string
	percent float64
	task    string
	job     *imsapi.Job
	err     error // the query failed: nothing was learnt
}

func (o observation) ended() bool {
	return o.err == nil && (o.status == string(imsapi.JobSuccess) || o.status == string(imsapi.JobFail))
}

func (o observation) unknown() bool {
	return o.err == nil && !imsapi.JobStatus(o.status).Known()
}

// advance is the poller's transition, pure: a job's state after one
// query at now, and the warnings it implies (progress, stalled). The
// state comes back Final when the job ended or its deadline passed,
// otherwise with its next query planned. A failed query changes nothing
// but the plan: it never ends the tracking.
func (p *poller) advance(st jobState, o observation, now time.Time) (jobState, []events.Event) {
	var out []events.Event
	switch {
	case o.ended():
		st.Final = p.final(st, o.status, o.job, now)
		return st, nil
	case o.err == nil:
		before := len(st.Samples)
		prev := -1.0
		if before > 0 {
			prev = st.Samples[before-1].Percent
		}
		st.Samples, st.LastChange = addSample(st.Samples, sample{At: now, Percent: o.percent}, st.LastChange)
		st.Status = o.status
		if p.cfg.Progress && o.percent != prev {
			out = append(out, events.Progress{JobID: st.Handoff.Ref(), Kind: st.Handoff.Kind, Percent: o.percent, CurrentTask: o.task, At: now.UTC()})
		}
		if !st.Stalled && stalled(st.LastChange, now, p.cfg.StallAfter) {
			st.Stalled = true
			out = append(out, events.Stalled{JobID: st.Handoff.Ref(), Kind: st.Handoff.Kind, ImageName: st.Handoff.ImageName,
				Percent: o.percent, CurrentTask: o.task, StalledSince: st.LastChange.UTC(), BatchID: st.Handoff.BatchID})
		}
	}
	if !now.Before(st.Deadline) {
		st.Final = p.final(st, "", nil, now)
		return st, out
	}
	st.NextPoll = now.Add(p.pol.next(st.Samples, st.Polls, now, st.Deadline))
	return st, out
}

// query asks IMS how the job is, falling back from the progress API to
// the job status API when the first is not available, and following the
// image for an import known only by its image.
func (p *poller) query(ctx context.Context, st *jobState) observation {
	h := st.Handoff
	ims, err := p.imsFor(h)
	if err != nil {
		// Nothing can ask about it: it ends, saying why; once the region
		// is configured, the leg is retried.
		return observation{status: string(imsapi.JobFail), job: &imsapi.Job{FailReason: imsapi.FlexString(err.Error())}}
	}
	switch {
	case h.JobID == "" && h.Kind == events.KindExport:
		// An earlier attempt's export, found by its target: IMS refused a
		// second export because the target object exists (IMG.0070), which
		// it writes when the export ends. There is no job to ask about.
		return observation{status: string(imsapi.JobSuccess), percent: 1, job: &imsapi.Job{Entities: imsapi.JobEntities{ImageID: h.ImageID}}}
	case h.JobID == "":
		im, err := ims.Image(ctx, h.ImageID)
		switch {
		case errors.Is(err, imsapi.ErrNotFound):
			return observation{status: string(imsapi.JobFail), job: &imsapi.Job{ErrorCode: "IMG.0027", FailReason: "the image was not found"}}
		case err != nil:
			return observation{err: err}
		}
		switch im.Status {
		case imsapi.ImageActive:
			return observation{status: string(imsapi.JobSuccess), percent: 1, job: &imsapi.Job{Entities: imsapi.JobEntities{ImageID: im.ID, ImageName: im.Name}}}
		case imsapi.ImageKilled, imsapi.ImageDeleted:
			return observation{status: string(imsapi.JobFail), job: &imsapi.Job{FailReason: imsapi.FlexString("the image is " + im.Status)}}
		}
		return observation{status: string(imsapi.JobRunning)}
	}
	var job *imsapi.Job
	if !st.StatusAPI {
		job, err = ims.JobProgress(ctx, h.JobID)
		var apiErr *imsapi.APIError
		if errors.As(err, &apiErr) && (apiErr.StatusCode == 404 && (apiErr.Code == "" || apiErr.Code == codeNoSuchAPI) || apiErr.StatusCode == 501) {
			st.StatusAPI = true // the path itself is missing here
		}
	}
	if st.StatusAPI {
		job, err = ims.Job(ctx, h.JobID)
	}
	if err != nil {
		return observation{err: err}
	}
	pct, _ := job.Progress()
	return observation{status: string(job.Status), percent: pct, task: job.Entities.CurrentTask, job: job}
}

// final is the completion event of a job that ended (status SUCCESS or
// FAIL) or reached its deadline (status "").
func (p *poller) final(st jobState, status string, job *imsapi.Job, now time.Time) *events.JobFinished {
	h := st.Handoff
	f := &events.JobFinished{
		JobID: h.Ref(), JobType: h.JobType, Kind: h.Kind, ImageID: h.ImageID, ImageName: h.ImageName, Method: h.Method,
		ImageType: h.ImageType, Source: h.Source, BucketURL: h.BucketURL, FileFormat: h.FileFormat, Quick: h.Quick,
		RequestID: h.RequestID, SubmittedAt: h.SubmittedAt, FinishedAt: now.UTC(), Polls: st.Polls, BatchID: h.BatchID,
		Rule: h.Rule, Leg: h.Leg,
	}
	switch status {
	case string(imsapi.JobSuccess):
		f.Status = events.StatusSucceeded
	case string(imsapi.JobFail):
		f.Status = events.StatusFailed
	default:
		f.Status = events.StatusTimedOut
		f.FailReason = fmt.Sprintf("the job did not end within %s (last status %s); it is no longer tracked", p.cfg.Deadline, orNone(st.Status))
	}
	if job != nil {
		if job.JobType != "" {
			f.JobType = job.JobType
		}
		if job.Entities.ImageID != "" && h.Kind == events.KindImport {
			f.ImageID = job.Entities.ImageID
		}
		if job.Entities.ImageName != "" {
			f.ImageName = job.Entities.ImageName
		}
		f.ErrorCode, f.FailReason = string(job.ErrorCode), string(job.FailReason)
		if !job.EndTime.IsZero() {
			f.FinishedAt = job.EndTime.UTC()
			f.DetectedAfterSeconds = now.Sub(job.EndTime.Time).Seconds()
		}
	}
	f.DurationSeconds = duration(f, job)
	return f
}

// duration is how long a job ran: from IMS's begin_time to its end_time
// when IMS reports both, two readings of one clock. Otherwise (a job
// known only by its image, one IMS gave no times for, or a deadline) it
// is from the submission, on the submitter's clock, to the end or to when
// the poller saw it; 0 when neither is known. Never negative: clocks of
// different hosts may disagree by a little.
func duration(f *events.JobFinished, job *imsapi.Job) float64 {
	var d time.Duration
	switch {
	case job != nil && !job.BeginTime.IsZero() && !job.EndTime.IsZero():
		d = job.EndTime.Sub(job.BeginTime.Time)
	case !f.SubmittedAt.IsZero():
		d = f.FinishedAt.Sub(f.SubmittedAt)
	}
	return max(d, 0).Seconds()
}

// publishFinal publishes the completion event (already recorded in the
// job's state), releases the job's in-flight slot, and only then marks it
// published. A crash anywhere in between leaves the timer unacknowledged;
// its redelivery finds Final and publishes again under the same
// Nats-Msg-Id, which JetStream drops. Once marked, later timers publish
// nothing, however late they come.
func (p *poller) publishFinal(ctx context.Context, key string, st jobState, rev uint64) ([]events.Event, error) {
	if st.Published {
		return nil, nil
	}
	if err := runner.Publish(ctx, p.js, Function, *st.Final); err != nil {
		return nil, err
	}
	if err := p.releaseSlot(ctx, st.Handoff); err != nil {
		return nil, err
	}
	if err := p.batches.Ended(ctx, *st.Final); err != nil {
		return nil, err
	}
	st.Published = true
	b, _ := json.Marshal(st)
	if _, err := p.jobs.Update(ctx, key, b, rev); err != nil {
		return nil, fmt.Errorf("mark %s published: %w", key, err)
	}
	return nil, nil
}

// releaseSlot frees the job's in-flight slot, unless it is no longer the
// job's: a slot taken after the job's submission (its own expired after
// IMPORT_SLOT_TTL and another import took it) is left to its holder.
// A release that fails (NATS in a leader change) is an error: the timer
// comes back and releases it before the job is marked published. The
// slot is read from the bucket's leader: a replica back from a partition
// answers a direct get with "not found" for a slot it has not caught up
// on, and the slot would stay held until the sweep.
func (p *poller) releaseSlot(ctx context.Context, h events.JobSubmitted) error {
	if h.Slot == "" {
		return nil
	}
	if h.SlotRev != 0 {
		// The holding is known: delete it if it is still the slot's last
		// revision; anything else (gone, or taken again) is not the job's.
		err := p.slots.Delete(ctx, h.Slot, jetstream.LastRevision(h.SlotRev))
		if err != nil && !ledger.Conflict(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("release slot %s: %w", h.Slot, err)
		}
		return nil
	}
	// A hand-off from before the revision was kept: judge by the time the
	// slot was taken.
	e, err := ledger.LeaderGet(ctx, p.js, runner.BucketSlots, h.Slot)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("release slot %s: %w", h.Slot, err)
	case e.Created.After(h.SubmittedAt.Add(time.Minute)):
		return nil
	}
	if err := p.slots.Delete(ctx, h.Slot, jetstream.LastRevision(e.Revision)); err != nil && !ledger.Conflict(err) {
		return fmt.Errorf("release slot %s: %w", h.Slot, err)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
