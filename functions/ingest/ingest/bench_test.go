package ingest

import (
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// benchCache keeps signed notifications between the benchmark's rounds:
// RSA signing costs far more than what is measured.
var (
	benchCache [][]byte
	benchSite  *smnSite // one for every round: the bodies name its URL
)

// benchBodies returns n signed notifications of distinct objects (each
// round has a NATS of its own, so reusing them publishes no duplicate).
func benchBodies(f *fixture, n int) [][]byte {
	if len(benchCache) >= n {
		return benchCache[:n]
	}
	from := len(benchCache)
	benchCache = append(benchCache, make([][]byte, n-from)...)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := from + w; i < n; i += workers {
				msg := obsMessage(obsRecord("ObjectCreated:Put", fmt.Sprintf("bench/disk-%07d.qcow2", i), 1<<30, fmt.Sprintf("e%d", i), "01"))
				benchCache[i] = f.smnBody(smnNotification, msg, "rsa-sha256", nil, nil)
			}
		})
	}
	wg.Wait()
	return benchCache
}

// BenchmarkSMNNotification measures signed SMN notifications posted over
// HTTPS by 8 concurrent senders (keep-alive), each verified (RSA-2048,
// certificate cached) and its record stored in JetStream before the
// answer: the ingest's throughput end to end on one machine.
func BenchmarkSMNNotification(b *testing.B) {
	if benchSite == nil {
		benchSite = newSMNSite(getPKI(b))
	}
	f := newFixtureWith(b, benchSite, func(c *Config) { c.RateLimit, c.RateBurst = 1e9, 1e9 })
	f.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	bodies := benchBodies(f, b.N)
	var next atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS senders
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if a := f.post("/smn", smnHeaders(smnNotification), bodies[i]); a.code != http.StatusOK || a.body.Published != 1 {
				b.Errorf("%d %s", a.code, a.raw)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
}
