package imsemu

import (
	"strconv"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// TestTimeScaleJobTimes: a time-scaled job runs size/speed/scale on the
// emulator's clock, and its begin_time and end_time are on that clock too
// (the wall clock the pipeline reads, not an emulated one), so that
// end_time - begin_time is how long the job took as its callers see it.
func TestTimeScaleJobTimes(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.TimeScale = 60 })
	f.s.PutObject(Object{Bucket: "images", Key: "big/disk-100.qcow2", Size: 100 * gib})
	submitted := f.clock.Now()
	ref, err := f.c.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "big-100", ImageURL: "images:big/disk-100.qcow2", MinDisk: 100})
	if err != nil {
		t.Fatal(err)
	}
	// 100 GiB at 256 MiB/s is 400 s, after 2 s of INIT; 60 times faster.
	want := (400*time.Second + DefaultInitDuration) / 60
	if j := f.job(t, ref.JobID); !j.BeginTime.Equal(submitted) || !j.EndTime.IsZero() {
		t.Fatalf("begin_time %v, end_time %v; want %v and none yet", j.BeginTime, j.EndTime, submitted)
	}
	f.clock.Advance(want - time.Millisecond)
	if j := f.job(t, ref.JobID); j.Status != imsapi.JobRunning {
		t.Fatalf("%v into the job: %s, want RUNNING", want-time.Millisecond, j.Status)
	}
	f.clock.Advance(time.Millisecond)
	j := f.job(t, ref.JobID)
	if j.Status != imsapi.JobSuccess {
		t.Fatalf("%v into the job: %s, want SUCCESS", want, j.Status)
	}
	// IMS's times have milliseconds.
	if got := j.EndTime.Sub(j.BeginTime.Time); got < want-time.Millisecond || got > want {
		t.Errorf("end_time - begin_time = %v, want %v", got, want)
	}
	if d := f.clock.Now().Sub(j.EndTime.Time); d < 0 || d > time.Millisecond {
		t.Errorf("end_time %v, want the clock's %v", j.EndTime, f.clock.Now())
	}
}

// TestAssumeObjectsSize: an object AssumeObjects takes for granted is as
// large as the import's min_disk (capped at what the import takes), so a
// job's length follows the disk imported, as it would with the real file:
// "imsflow dev" gives a 100 GB upload 100 times the time of a 1 GB one.
func TestAssumeObjectsSize(t *testing.T) {
	t.Parallel()
	f := newEmu(t, func(c *Config) { c.AssumeObjects, c.TimeScale = true, 60 })
	tests := []struct {
		key      string
		minDisk  int
		quick    bool
		wantSize int64
	}{
		{"assumed/big-100.qcow2", 100, false, 100 * gib},
		{"assumed/small.zvhd2", 10, true, 10 * gib},
		{"assumed/huge-disk.qcow2", 500, false, imsapi.MaxNormalImportSize}, // a large min_disk from a rule is no reason to refuse
		{"assumed/huge.zvhd2", 1024, true, 1024 * gib},
	}
	for _, tt := range tests {
		var ref *imsapi.JobRef
		var err error
		if tt.quick {
			ref, err = f.c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "q", ImageURL: "images:" + tt.key, MinDisk: tt.minDisk, Type: imsapi.TypeDataImage})
		} else {
			ref, err = f.c.ImportDataImage(t.Context(), &imsapi.DataImageRequest{Name: "n", ImageURL: "images:" + tt.key, MinDisk: tt.minDisk})
		}
		if err != nil {
			t.Errorf("%s: %v", tt.key, err)
			continue
		}
		j := f.job(t, ref.JobID)
		im, err := f.c.Image(t.Context(), j.Entities.ImageID)
		if err != nil {
			t.Fatal(err)
		}
		if im.ImageSize != strconv.FormatInt(tt.wantSize, 10) {
			t.Errorf("%s with min_disk %d: image_size %s, want %d", tt.key, tt.minDisk, im.ImageSize, tt.wantSize)
		}
		// The job ends when the assumed file, read at 256 MiB/s, is in.
		run := time.Duration(float64(tt.wantSize) / DefaultImportSpeed * float64(time.Second))
		want := (run + DefaultInitDuration) / 60
		f.s.mu.Lock()
		got := f.s.jobs[ref.JobID].end().Sub(f.s.jobs[ref.JobID].submitted)
		f.s.mu.Unlock()
		if d := got - want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: the job runs %v, want %v", tt.key, got, want)
		}
	}
}
