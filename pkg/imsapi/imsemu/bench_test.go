package imsemu

import (
	"fmt"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// BenchmarkJobProgressWith10kJobs: a status query while 10,000 import jobs
// are in flight and one finishes per query, the emulator's cost per poll
// (finished jobs leave a heap, so it does not grow with the jobs in flight).
func BenchmarkJobProgressWith10kJobs(b *testing.B) {
	clock := NewManualClock(start)
	s, err := New(Config{Credentials: map[string]imsapi.Secret{ak: sk}, Clock: clock, MaxRunningJobs: -1, ImageQuota: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, _ := s.Client()
	const jobs = 10000
	ids := make([]string, 0, jobs)
	s.mu.Lock()
	for i := range jobs {
		// Sizes spread the end times over 10,000 seconds.
		size := int64(i+1) * DefaultImportSpeed
		o := Object{Bucket: "images", Key: fmt.Sprintf("k%d.qcow2", i), Size: size}
		s.putObject(o)
		r := &request{now: start, accessKey: ak}
		im := imsapi.Image{Name: fmt.Sprintf("n%d", i), MinDisk: 40}
		out, aerr := s.newImport(r, OpDataImageImport, imsapi.JobTypeImportDataImage, source{obj: o, format: "qcow2"}, im, nil, nil)
		if aerr != nil {
			b.Fatal(aerr)
		}
		ids = append(ids, out.(imsapi.JobRef).JobID)
	}
	s.mu.Unlock()
	clock.Advance(DefaultInitDuration)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clock.Advance(time.Second * jobs / time.Duration(max(b.N, 1)))
		if _, err := c.JobProgress(b.Context(), ids[i%jobs]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
