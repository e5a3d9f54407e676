package imsapi

import (
	"encoding/json"
	"testing"
	"time"
)

func TestFlexString(t *testing.T) {
	t.Parallel()
	tests := map[string]FlexString{
		`null`:         "",
		`"IMG.0059"`:   "IMG.0059",
		`42`:           "42",
		`true`:         "true",
		`{"a":1}`:      `{"a":1}`,
		`"with \"q\""`: `with "q"`,
	}
	for in, want := range tests {
		var got FlexString
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("FlexString(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestFlexBool(t *testing.T) {
	t.Parallel()
	tests := map[string]FlexBool{`true`: true, `"true"`: true, `"True"`: true, `false`: false, `"false"`: false, `null`: false, `""`: false, `"yes?"`: false}
	for in, want := range tests {
		var got FlexBool
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("FlexBool(%s) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestTimestamp(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 3, 27, 1, 17, 50, 446e6, time.UTC)
	tests := map[string]time.Time{
		`"2026-03-27T01:17:50.446Z"`:      want,
		`"2026-03-27T09:17:50.446+08:00"`: want,
		`"2026-03-27 01:17:50"`:           want.Truncate(time.Second),
		`"2026-03-27T01:17:50"`:           want.Truncate(time.Second),
		`""`:                              {},
		`null`:                            {},
		`"yesterday"`:                     {},
		`12345`:                           {},
	}
	for in, w := range tests {
		var got Timestamp
		if err := json.Unmarshal([]byte(in), &got); err != nil || !got.Equal(w) {
			t.Errorf("Timestamp(%s) = %v, %v; want %v", in, got.Time, err, w)
		}
	}
	b, _ := json.Marshal(Timestamp{want})
	if string(b) != `"2026-03-27T01:17:50.446Z"` {
		t.Errorf("Marshal = %s", b)
	}
	b, _ = json.Marshal(Timestamp{})
	if string(b) != `null` {
		t.Errorf("Marshal(zero) = %s", b)
	}
}

// TestJobRoundTrip: what the client decodes, it encodes back to the same
// meaning (the emulator answers with these types).
func TestJobRoundTrip(t *testing.T) {
	t.Parallel()
	in := `{"job_id":"j","job_type":"imsImportDataImageJob","status":"RUNNING","begin_time":"2026-03-27T01:17:50.446Z","end_time":null,` +
		`"error_code":null,"fail_reason":null,"entities":{"image_id":"i","process_percent":0.5,"subJobId":"s"}}`
	var j Job
	if err := json.Unmarshal([]byte(in), &j); err != nil {
		t.Fatal(err)
	}
	if p, ok := j.Progress(); !ok || p != 0.5 || j.Status.Done() || !j.Status.Known() {
		t.Errorf("job = %+v", j)
	}
	out, _ := json.Marshal(j)
	if string(out) != in {
		t.Errorf("round trip:\n%s\nwant\n%s", out, in)
	}
}

func TestJobStatus(t *testing.T) {
	t.Parallel()
	for s, done := range map[JobStatus]bool{JobInit: false, JobRunning: false, JobSuccess: true, JobFail: true, "WAITING": false} {
		if s.Done() != done {
			t.Errorf("%s.Done() = %v", s, !done)
		}
	}
	if JobStatus("WAITING").Known() {
		t.Error("WAITING is Known")
	}
}
