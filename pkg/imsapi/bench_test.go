package imsapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func BenchmarkSign(b *testing.B) {
	body := []byte(`{"name":"web-01","image_url":"images:web/web-01.zvhd2","min_disk":40,"os_version":"Ubuntu 22.04 server 64bit","type":"ECS"}`)
	s := Signer{AccessKey: testAK, SecretKey: testSK}
	req, _ := http.NewRequest(http.MethodPost, "https://ims.cn-north-4.myhuaweicloud.com/v2/cloudimages/quickimport/action", nil)
	req.Header.Set(HeaderProjectID, testProject)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Sign(req, body, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateQuickImport(b *testing.B) {
	r := QuickImportRequest{Name: "web-01", ImageURL: "images:web/web-01.zvhd2", MinDisk: 40, OSVersion: "Ubuntu 22.04 server 64bit",
		ImageTags: []ImageTag{{Key: "imsflow-src", Value: "abc123"}, {Key: "team", Value: "web"}}}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuickImportRoundTrip measures one whole call (validate, encode,
// sign, HTTP on loopback, decode) with no rate limit, the client's own cost
// per submission.
func BenchmarkQuickImportRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"job_id":"4010a32c7fd3a2b00182eb6d14d201df"}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL, AKSK{AccessKey: testAK, SecretKey: testSK}, WithProjectID(testProject),
		WithRateLimiter(rate.NewLimiter(rate.Inf, 0)), WithClock(func() time.Time { return testNow }))
	if err != nil {
		b.Fatal(err)
	}
	r := &QuickImportRequest{Name: "web-01", ImageURL: "images:web/web-01.zvhd2", MinDisk: 40, OSVersion: "Ubuntu 22.04 server 64bit"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.QuickImport(b.Context(), r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
