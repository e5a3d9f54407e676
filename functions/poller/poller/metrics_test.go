package poller

import (
	"fmt"
	"testing"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestMetrics: jobs through the poller move its metrics as they ended:
// completions by status, each job's status queries and detection delay
// observed once, and the sweep's count of the jobs still in flight.
func TestMetrics(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, nil)
	long := hs.importJob("huge.qcow2", "") // 100 GiB: runs for minutes
	for i := range 2 {
		hs.importJob(fmt.Sprintf("d%d.qcow2", i), "")
	}
	hs.importJob("broken.qcow2", "")
	hs.finished(3)

	tel := hs.tel
	// The counts follow each completion's publication, which a subscriber
	// may see first.
	testenv.Eventually(t, "three completions counted", func() bool {
		return tel.Value("imsflow_completions_total", "kind", "import") == 3
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"imsflow_completions_total", []string{"kind", "import", "status", "succeeded"}, 2},
		{"imsflow_completions_total", []string{"kind", "import", "status", "failed"}, 1},
		{"imsflow_job_status_queries", []string{"kind", "import"}, 3},          // observations: one per job
		{"imsflow_job_detection_delay_seconds", []string{"kind", "import"}, 3}, // the emulator gives end times
		{"imsflow_job_duration_seconds", []string{"kind", "import"}, 3},
		{"imsflow_dead_letters_total", []string{"function", "poller"}, 0},
	} {
		if got := tel.Value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	if got := tel.Value("imsflow_ims_requests_total", "operation", "job_progress", "code", "200"); got < 3 {
		t.Errorf("%g job progress queries counted, want at least one per job", got)
	}
	if got := tel.Value("imsflow_messages_total", "function", "poller", "outcome", "ack"); got < 4 {
		t.Errorf("%g messages acknowledged, want at least the 4 hand-offs", got)
	}

	testenv.Eventually(t, "the long job tracked", func() bool {
		_, err := hs.p.jobs.Get(t.Context(), "j."+long.JobID)
		return err == nil
	})
	// A job whose completion is out is in flight until its state says
	// so, a moment later: sweep until only the long one is.
	testenv.Eventually(t, "a sweep counting the long job alone in flight", func() bool {
		if err := hs.p.sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
		return tel.Value("imsflow_jobs_in_flight", "kind", "import") == 1
	})
	if got := tel.Value("imsflow_poller_last_sweep_timestamp_seconds"); got <= 0 {
		t.Errorf("last sweep at %g", got)
	}
}

// TestSlotsReported: the poller reports the in-flight slots and their
// cap, as the import does, since the import may sleep at zero replicas.
func TestSlotsReported(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = 40 })
	slots, err := hs.js.KeyValue(t.Context(), runner.BucketSlots)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"slot.0001", "slot.0002"} {
		if _, err := slots.Create(t.Context(), k, []byte("v.x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := hs.tel.Value("imsflow_slots_in_flight"); got != 2 {
		t.Errorf("imsflow_slots_in_flight = %v, want 2", got)
	}
	if got := hs.tel.Value("imsflow_slots_max"); got != 40 {
		t.Errorf("imsflow_slots_max = %v, want 40", got)
	}
}
