package poller

import (
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
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
