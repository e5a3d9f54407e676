package poller

import (
	"net/http"
	"testing"
	"time"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestFinalDuration: a finished job's duration is IMS's end_time minus its
// begin_time, both read off IMS's clock, not the time since the importer
// handed it off; without IMS's times it falls back to the submission.
func TestFinalDuration(t *testing.T) {
	t.Parallel()
	p := &poller{cfg: Config{Deadline: time.Hour}}
	submitted := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	begin := submitted.Add(1500 * time.Millisecond) // IMS's clock runs a little ahead of the importer's
	end := begin.Add(6700 * time.Millisecond)
	now := end.Add(3 * time.Second)
	ts := func(t time.Time) imsapi.Timestamp { return imsapi.Timestamp{Time: t} }
	st := jobState{Handoff: events.JobSubmitted{JobID: "j1", Kind: events.KindImport, SubmittedAt: submitted}, Polls: 2}
	tests := []struct {
		name   string
		st     jobState
		status string
		job    *imsapi.Job
		want   time.Duration
		wantSt events.Status
	}{
		{"begin and end from IMS", st, string(imsapi.JobSuccess),
			&imsapi.Job{Status: imsapi.JobSuccess, BeginTime: ts(begin), EndTime: ts(end)}, 6700 * time.Millisecond, events.StatusSucceeded},
		{"a failed job", st, string(imsapi.JobFail),
			&imsapi.Job{Status: imsapi.JobFail, BeginTime: ts(begin), EndTime: ts(begin.Add(2 * time.Second)), ErrorCode: "IMG.0057"}, 2 * time.Second, events.StatusFailed},
		{"end only: from the submission", st, string(imsapi.JobSuccess),
			&imsapi.Job{Status: imsapi.JobSuccess, EndTime: ts(end)}, end.Sub(submitted), events.StatusSucceeded},
		{"no times (found by its image): until seen", st, string(imsapi.JobSuccess),
			&imsapi.Job{}, now.Sub(submitted), events.StatusSucceeded},
		{"deadline", st, "", nil, now.Sub(submitted), events.StatusTimedOut},
		{"an end before the submission (skewed clocks) is no negative time", st, string(imsapi.JobSuccess),
			&imsapi.Job{Status: imsapi.JobSuccess, EndTime: ts(submitted.Add(-time.Second))}, 0, events.StatusSucceeded},
		{"no submission time, no IMS times", jobState{Handoff: events.JobSubmitted{JobID: "j2"}}, string(imsapi.JobSuccess),
			&imsapi.Job{}, 0, events.StatusSucceeded},
	}
	for _, tt := range tests {
		f := p.final(tt.st, tt.status, tt.job, now)
		if got := time.Duration(f.DurationSeconds * float64(time.Second)); got.Round(time.Millisecond) != tt.want {
			t.Errorf("%s: duration_seconds %v, want %v", tt.name, f.DurationSeconds, tt.want.Seconds())
		}
		if f.Status != tt.wantSt {
			t.Errorf("%s: status %s, want %s", tt.name, f.Status, tt.wantSt)
		}
	}
}

// slowWire advances the clock while a request is on its way: what IMS
// answers holds as of a later time than the one the poller asked at.
type slowWire struct {
	clock *imsemu.ManualClock
	delay time.Duration
}

func (w slowWire) RoundTrip(r *http.Request) (*http.Response, error) {
	w.clock.Advance(w.delay)
	return http.DefaultTransport.RoundTrip(r)
}

// TestEndSeenAfterItHappened: a job that ends while the status query is
// on its way is reported as seen after its end, never before it.
func TestEndSeenAfterItHappened(t *testing.T) {
	t.Parallel()
	clock := imsemu.NewManualClock(time.Now())
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, Clock: clock,
		InitDuration: -1, ImportSpeed: 512 << 20, ImageQuota: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	emu.PutObject(imsemu.Object{Bucket: "images", Key: "d.qcow2", Size: gib}) // 2 s of emulated time
	const wire = 200 * time.Millisecond
	client, err := emu.Client(imsapi.WithHTTPClient(&http.Client{Transport: slowWire{clock, wire}}))
	if err != nil {
		t.Fatal(err)
	}
	_, js := testenv.StartNATS(t).Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	p, err := newPoller(t.Context(), Config{FirstPoll: time.Second, MinInterval: time.Second, MaxInterval: time.Minute,
		Backoff: 1.5, TargetDelay: time.Second, Deadline: time.Hour, StallAfter: time.Hour}, client, js)
	if err != nil {
		t.Fatal(err)
	}
	p.now = clock.Now
	ref, err := client.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "d", ImageURL: "images:d.qcow2", MinDisk: 40})
	if err != nil {
		t.Fatal(err)
	}
	submitted := clock.Now()
	h := events.JobSubmitted{JobID: ref.JobID, JobType: imsapi.JobTypeImportDataImage, Kind: events.KindImport,
		Method: events.MethodNormal, ImageName: "d", SubmittedAt: submitted.UTC()}
	if err := p.track(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	// The poller asks 100 ms before the end; the answer comes 100 ms after.
	clock.Advance(submitted.Add(2*time.Second - wire/2).Sub(clock.Now()))
	if _, err := p.poll(t.Context(), stateKey(h)); err != nil {
		t.Fatal(err)
	}
	st, _, err := p.load(t.Context(), stateKey(h))
	if err != nil {
		t.Fatal(err)
	}
	if st.Final == nil {
		t.Fatalf("the job's end was not seen: %+v", st)
	}
	if d := st.Final.DetectedAfterSeconds; d <= 0 || d > wire.Seconds() {
		t.Errorf("detected %.3fs after the end, want within (0, %.1f]", d, wire.Seconds())
	}
}
