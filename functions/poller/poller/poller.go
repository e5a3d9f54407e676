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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/batches"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Function is the name of the consumer and of the dead-letter subject.
const Function = "poller"

// Subjects of the poll timers.
const (
	subjectPollPrefix  = "imsflow.jobs.poll."
	subjectSchedPrefix = "imsflow.sched.poll."
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
	MaxAimed    time.Duration `env:"POLL_MAX_AIMED" envDefault:"30m"`
	// Backoff multiplies the interval while a job shows no progress trend.
	Backoff float64 `env:"POLL_BACKOFF" envDefault:"1.6"`
	// Deadline ends the tracking of a job with timed_out.
	Deadline time.Duration `env:"JOB_DEADLINE" envDefault:"24h"`
	// StallAfter publishes one stalled warning when progress has not moved for it.
	StallAfter time.Duration `env:"STALL_AFTER" envDefault:"30m"`
	// Progress publishes imsflow.out.progress on every change of progress.
	Progress bool `env:"PUBLISH_PROGRESS" envDefault:"false"`
	// Workers and AckWait tune the consumer; MaxFailures is how many
	// failed deliveries send a message to the dead letters (waits do not count).
	Workers     int           `env:"POLLER_WORKERS" envDefault:"8"`
	AckWait     time.Duration `env:"POLLER_ACK_WAIT" envDefault:"60s"`
	MaxFailures int           `env:"POLLER_MAX_FAILURES" envDefault:"1000"`
}

func (c Config) policy() policy {
	return policy{First: c.FirstPoll, Min: c.MinInterval, Max: c.MaxInterval, AimMax: c.MaxAimed, Factor: c.Backoff, Overshoot: 0.05}
}

// IMS is what the poller needs of IMS; *imsapi.Client has it.
type IMS interface {
	JobProgress(ctx context.Context, jobID string) (*imsapi.Job, error)
	Job(ctx context.Context, jobID string) (*imsapi.Job, error)
	Image(ctx context.Context, id string) (*imsapi.Image, error)
}

// jobState is a tracked job in the imsflow_jobs bucket.
type jobState struct {
	Handoff    events.JobSubmitted `json:"handoff"`
	Polls      int                 `json:"polls"`
	Status     string              `json:"status,omitempty"`
	Samples    []sample            `json:"samples,omitempty"`
	LastChange time.Time           `json:"last_change"`
	Stalled    bool                `json:"stalled,omitempty"`
	NextPoll   time.Time           `json:"next_poll"`
	Deadline   time.Time           `json:"deadline"`
	// StatusAPI: the progress API was not available; use the job status API.
	StatusAPI bool `json:"status_api,omitempty"`
	// Final is the completion event, stored before it is published;
	// Published says it was.
	Final     *events.JobFinished `json:"final,omitempty"`
	Published bool                `json:"published,omitempty"`
}

type poller struct {
	cfg     Config
	pol     policy
	ims     IMS
	js      jetstream.JetStream
	jobs    jetstream.KeyValue
	slots   jetstream.KeyValue
	batches *batches.Counter
	now     func() time.Time
}

// New returns the poller's runner. The topology (runner.Ensure) must exist.
func New(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error) {
	p, rc, err := build(ctx, cfg, ims, js)
	if err != nil {
		return nil, err
	}
	return runner.New(js, rc, p.handle, log)
}

// build is New without the runner: the handler and its runner's
// configuration, which tests tune.
func build(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream) (*poller, runner.Config, error) {
	if cfg.MinInterval < time.Second || cfg.FirstPoll < time.Second || cfg.MaxInterval < cfg.MinInterval || cfg.Backoff < 1 || cfg.Deadline <= 0 {
		return nil, runner.Config{}, errors.New("poller: POLL_FIRST and POLL_MIN at least 1s (timers have second precision), POLL_MAX at least POLL_MIN, POLL_BACKOFF at least 1, JOB_DEADLINE positive")
	}
	p, err := newPoller(ctx, cfg, ims, js)
	if err != nil {
		return nil, runner.Config{}, err
	}
	return p, runner.Config{
		Function: Function, Stream: runner.StreamJobs, Subjects: []string{events.SubjectJobSubmitted, subjectPollPrefix + ">"},
		AckWait: cfg.AckWait, MaxFailures: cfg.MaxFailures, Workers: cfg.Workers,
	}, nil
}

func newPoller(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream) (*poller, error) {
	jobs, err := js.KeyValue(ctx, runner.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketJobs, err)
	}
	slots, err := js.KeyValue(ctx, runner.BucketSlots)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketSlots, err)
	}
	counter, err := batches.New(ctx, js, Function)
	if err != nil {
		return nil, err
	}
	return &poller{cfg: cfg, pol: cfg.policy(), ims: ims, js: js, jobs: jobs, slots: slots, batches: counter, now: time.Now}, nil
}

// codeNoSuchAPI is the gateway's answer for a path it does not serve.
const codeNoSuchAPI = "APIGW.0101"

// stateKey is a job's key: its job ID, or its image ID for an import found
// by its image (no job ID known).
func stateKey(h events.JobSubmitted) string {
	if h.JobID != "" {
		return "j." + h.JobID
	}
	return "i." + h.ImageID
}

func (p *poller) handle(ctx context.Context, m runner.Msg) ([]events.Event, error) {
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
	if errors.Is(err, jetstream.ErrKeyExists) {
		cur, _, gerr := p.load(ctx, key)
		if gerr != nil {
			return gerr
		}
		if cur.Final != nil {
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

// poll is a fired timer: query IMS, then finish the job or re-arm.
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
	now := p.now()
	if now.Before(st.NextPoll.Add(-2 * time.Second)) {
		// A stale timer (this job was re-armed since): the live one comes later.
		return nil, nil
	}
	log := zerolog.Ctx(ctx).With().Str("job", key).Logger()
	st.Polls++
	status, percent, task, job, qerr := p.query(ctx, &st)
	// What IMS said holds as of its answer: the end of a job that ended
	// while the query was on its way is seen now, not before it.
	now = p.now()
	var out []events.Event
	switch {
	case qerr != nil:
		// A failed query never ends the tracking: try again later.
		log.Warn().Err(qerr).Int("polls", st.Polls).Msg("status query failed")
	case status == string(imsapi.JobSuccess) || status == string(imsapi.JobFail):
		st.Final = p.final(st, status, job, now)
	default:
		if !imsapi.JobStatus(status).Known() {
			log.Warn().Str("status", status).Msg("unknown job status; still tracking")
		}
		before := len(st.Samples)
		prev := -1.0
		if before > 0 {
			prev = st.Samples[before-1].Percent
		}
		st.Samples, st.LastChange = addSample(st.Samples, sample{At: now, Percent: percent}, st.LastChange)
		st.Status = status
		if p.cfg.Progress && percent != prev {
			out = append(out, events.Progress{JobID: jobIDOf(st), Kind: st.Handoff.Kind, Percent: percent, CurrentTask: task, At: now.UTC()})
		}
		if !st.Stalled && stalled(st.LastChange, now, p.cfg.StallAfter) {
			st.Stalled = true
			out = append(out, events.Stalled{JobID: jobIDOf(st), Kind: st.Handoff.Kind, ImageName: st.Handoff.ImageName,
				Percent: percent, CurrentTask: task, StalledSince: st.LastChange.UTC(), BatchID: st.Handoff.BatchID})
		}
	}
	if st.Final == nil && !now.Before(st.Deadline) {
		st.Final = p.final(st, "", nil, now)
	}
	if st.Final != nil {
		b, _ := json.Marshal(st)
		newRev, err := p.jobs.Update(ctx, key, b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, nil // another replica handled this timer
		}
		if err != nil {
			return nil, fmt.Errorf("record the end of %s: %w", key, err)
		}
		evs, err := p.publishFinal(ctx, key, st, newRev)
		return append(out, evs...), err
	}
	st.NextPoll = now.Add(p.pol.next(st.Samples, st.Polls, now, st.Deadline))
	b, _ := json.Marshal(st)
	if _, err := p.jobs.Update(ctx, key, b, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, nil // another replica handled this timer
		}
		return nil, fmt.Errorf("record job %s: %w", key, err)
	}
	if err := p.schedule(ctx, key, st.NextPoll); err != nil {
		return nil, err
	}
	return out, nil
}

// query asks IMS how the job is, falling back from the progress API to
// the job status API when the first is not available, and following the
// image for a job known only by its image.
func (p *poller) query(ctx context.Context, st *jobState) (status string, percent float64, task string, job *imsapi.Job, err error) {
	h := st.Handoff
	if h.JobID == "" {
		im, err := p.ims.Image(ctx, h.ImageID)
		switch {
		case errors.Is(err, imsapi.ErrNotFound):
			return string(imsapi.JobFail), 0, "", &imsapi.Job{ErrorCode: "IMG.0027", FailReason: "the image was not found"}, nil
		case err != nil:
			return "", 0, "", nil, err
		}
		switch im.Status {
		case imsapi.ImageActive:
			return string(imsapi.JobSuccess), 1, "", &imsapi.Job{Entities: imsapi.JobEntities{ImageID: im.ID, ImageName: im.Name}}, nil
		case imsapi.ImageKilled, imsapi.ImageDeleted:
			return string(imsapi.JobFail), 0, "", &imsapi.Job{FailReason: imsapi.FlexString("the image is " + im.Status)}, nil
		}
		return string(imsapi.JobRunning), 0, "", nil, nil
	}
	if !st.StatusAPI {
		job, err = p.ims.JobProgress(ctx, h.JobID)
		var apiErr *imsapi.APIError
		if errors.As(err, &apiErr) && (apiErr.StatusCode == 404 && (apiErr.Code == "" || apiErr.Code == codeNoSuchAPI) || apiErr.StatusCode == 501) {
			st.StatusAPI = true // the path itself is missing here
		}
	}
	if st.StatusAPI {
		job, err = p.ims.Job(ctx, h.JobID)
	}
	if err != nil {
		return "", 0, "", nil, err
	}
	pct, _ := job.Progress()
	return string(job.Status), pct, job.Entities.CurrentTask, job, nil
}

// final is the completion event of a job that ended (status SUCCESS or
// FAIL) or reached its deadline (status "").
func (p *poller) final(st jobState, status string, job *imsapi.Job, now time.Time) *events.JobFinished {
	h := st.Handoff
	f := &events.JobFinished{
		JobID: jobIDOf(st), JobType: h.JobType, Kind: h.Kind, ImageID: h.ImageID, ImageName: h.ImageName, Method: h.Method,
		ImageType: h.ImageType, Source: h.Source, BucketURL: h.BucketURL, FileFormat: h.FileFormat, Quick: h.Quick,
		RequestID: h.RequestID, SubmittedAt: h.SubmittedAt, FinishedAt: now.UTC(), Polls: st.Polls, BatchID: h.BatchID,
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
	if st.Handoff.Slot != "" {
		_ = p.slots.Delete(ctx, st.Handoff.Slot)
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

func jobIDOf(st jobState) string {
	if st.Handoff.JobID != "" {
		return st.Handoff.JobID
	}
	return "image:" + st.Handoff.ImageID
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
