package importer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestMetrics: notifications through the function move its metrics as
// they happened: one submission per job however often its object is
// notified, a rejection by its code, the IMS requests by operation, the
// messages by outcome, and the slots held, counted at scrape time.
func TestMetrics(t *testing.T) {
	t.Parallel()
	hs := newHarness(t, imsemu.Config{}, func(c *Config) { c.MaxInFlight = 10 })
	hs.publish(minioEvent("images", "web/web-01.zvhd2", 5*gib, "e1", nil))
	hs.publish(minioEvent("images", "data/d.qcow2", 4*gib, "e2", nil))
	hs.publish(minioEvent("images", "empty.qcow2", 0, "e3", nil))
	if outcomes := hs.settled.FinalOutcomes(t, 3); strings.Join(outcomes, ",") != "ack,ack,term" {
		t.Fatalf("outcomes = %v", outcomes)
	}
	hs.publish(minioEvent("images", "web/web-01.zvhd2", 5*gib, "e1", nil)) // notified again: answered from the record
	hs.settled.Final(t, 4)

	tel := hs.tel
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"imsflow_submissions_total", []string{"kind", "import", "method", "quick"}, 1},
		{"imsflow_submissions_total", []string{"kind", "import", "method", "normal"}, 1},
		{"imsflow_rejections_total", []string{"kind", "import", "reason", "empty_file"}, 1},
		{"imsflow_rejections_total", nil, 1},
		{"imsflow_ims_requests_total", []string{"operation", "quick_import"}, 1},
		{"imsflow_ims_requests_total", []string{"operation", "data_image_import"}, 1},
		{"imsflow_ims_request_duration_seconds", nil, 2},
		{"imsflow_messages_total", []string{"function", "import", "outcome", "ack"}, 3},
		{"imsflow_messages_total", []string{"function", "import", "outcome", "term"}, 1},
		{"imsflow_dead_letters_total", []string{"function", "import"}, 0},
		{"imsflow_slots_in_flight", nil, 2}, // no poller here to release them
		{"imsflow_slots_max", nil, 10},
	} {
		if got := tel.Value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	w := httptest.NewRecorder()
	tel.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if w.Code != http.StatusOK {
		t.Errorf("/readyz while consuming = %d %s", w.Code, w.Body)
	}
}
