package events

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.want.json from the decoders (check them by hand against the reference)")

// objectFixtures are the notification fixtures with a matching *.want.json
// and the event names each skips.
var objectFixtures = []struct {
	file    string
	skipped []string
}{
	{"obs_put.json", nil},
	{"obs_versioned.json", nil},
	{"obs_removed.json", []string{"ObjectRemoved:Delete"}},
	{"s3_aws.json", []string{"ObjectRemoved:Delete"}},
	{"functiongraph_obs.json", nil},
	{"minio_envelope.json", nil},
	{"minio_versioned.json", nil},
	{"eventgrid_obs.json", nil},
	{"smn_notification.json", nil},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with the JSON in testdata/<want>, or rewrites that
// file under -update.
func golden(t *testing.T, want string, got, into any) {
	t.Helper()
	path := filepath.Join("testdata", want)
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := json.Unmarshal(readFixture(t, want), into); err != nil {
		t.Fatalf("%s: %v", want, err)
	}
	w := reflect.ValueOf(into).Elem().Interface()
	if !equalRecords(got, w) {
		gb, _ := json.MarshalIndent(got, "", "  ")
		t.Errorf("decoded =\n%s\nwant (%s) =\n%s", gb, want, readFixture(t, want))
	}
}

// equalRecords is reflect.DeepEqual with nil and empty slices equal.
func equalRecords(a, b any) bool {
	if x, ok := a.([]ObjectCreated); ok {
		if y, ok := b.([]ObjectCreated); ok && len(x) == 0 && len(y) == 0 {
			return true
		}
	}
	return reflect.DeepEqual(a, b)
}

func TestDecodeObjectEventsGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range objectFixtures {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			got, skipped, err := DecodeObjectEvents(readFixture(t, tc.file))
			if err != nil {
				t.Fatalf("DecodeObjectEvents(%s) error = %v", tc.file, err)
			}
			if !reflect.DeepEqual(skipped, tc.skipped) {
				t.Errorf("DecodeObjectEvents(%s) skipped = %q, want %q", tc.file, skipped, tc.skipped)
			}
			if got == nil {
				got = []ObjectCreated{} // written as [] under -update
			}
			golden(t, strings.TrimSuffix(tc.file, ".json")+".want.json", got, new([]ObjectCreated))
		})
	}
}

// TestSplitObjectEvents checks that every fixture splits into the records
// DecodeObjectEvents returns, each with a body that decodes to it alone.
func TestSplitObjectEvents(t *testing.T) {
	t.Parallel()
	bodies := map[string]string{
		"several records": records(
			s3Record("minio:s3", "s3:ObjectCreated:Put", `"key":"a.qcow2","size":1,"eTag":"e1"`),
			s3Record("minio:s3", "s3:ObjectRemoved:Delete", `"key":"gone.qcow2"`),
			s3Record("minio:s3", "s3:ObjectCreated:Copy", `"key":"b+c.vhd","size":2,"eTag":"e2"`)),
		"eventgrid with Records in data": `{"specversion":"1.0","id":"r1","source":"HC.OBS.DWR","type":"OBS:DWR:ObjectCreated:PUT","time":"2026-11-23T08:15:30Z",` +
			`"data":{"Records":[{"obs":{"bucket":{"name":"b"},"object":{"key":"x.raw","size":3}}},{"obs":{"bucket":{"name":"b"},"object":{"key":"x.raw.mf","size":4}}}]}}`,
	}
	for _, tc := range objectFixtures {
		bodies[tc.file] = string(readFixture(t, tc.file))
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, wantSkipped, err := DecodeObjectEvents([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			got, skipped, err := SplitObjectEvents([]byte(body))
			if err != nil {
				t.Fatalf("SplitObjectEvents error = %v", err)
			}
			if !reflect.DeepEqual(skipped, wantSkipped) {
				t.Errorf("skipped = %q, want %q", skipped, wantSkipped)
			}
			if len(got) != len(want) {
				t.Fatalf("SplitObjectEvents gave %d records, want %d", len(got), len(want))
			}
			for i, r := range got {
				if !reflect.DeepEqual(r.ObjectCreated, want[i]) {
					t.Errorf("record %d = %+v, want %+v", i, r.ObjectCreated, want[i])
				}
				again, skipped, err := DecodeObjectEvents(r.Body)
				if err != nil || len(again) != 1 || len(skipped) != 0 {
					t.Fatalf("record %d: DecodeObjectEvents(%s) = %+v, %q, %v; want one record", i, r.Body, again, skipped, err)
				}
				w := want[i]
				if w.Shape == ShapeSMN {
					w.Shape = ShapeOBS // the body is the OBS notification SMN carried
				}
				if !reflect.DeepEqual(again[0], w) {
					t.Errorf("record %d: its body decodes to %+v, want %+v", i, again[0], w)
				}
			}
		})
	}
}

func TestDecodeExportRequestGolden(t *testing.T) {
	t.Parallel()
	got, err := DecodeExportRequest(readFixture(t, "export_request.json"))
	if err != nil {
		t.Fatalf("DecodeExportRequest(export_request.json) error = %v", err)
	}
	golden(t, "export_request.want.json", got, new(ExportRequest))
}

func TestObjectCreatedJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range objectFixtures {
		created, _, err := DecodeObjectEvents(readFixture(t, tc.file))
		if err != nil {
			t.Fatalf("DecodeObjectEvents(%s) error = %v", tc.file, err)
		}
		for _, o := range created {
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("json.Marshal(%+v) error = %v", o, err)
			}
			var back ObjectCreated
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("json.Unmarshal(%s) error = %v", b, err)
			}
			if !reflect.DeepEqual(back, o) {
				t.Errorf("%s: round trip = %+v, want %+v", tc.file, back, o)
			}
		}
	}
}

func TestObjectCreatedSource(t *testing.T) {
	t.Parallel()
	o := ObjectCreated{Shape: ShapeOBS, EventName: "ObjectCreated:Put", Bucket: "b", Key: "k", Size: 7,
		ETag: "e", VersionID: "v", Sequencer: "s", Region: "r", ContentType: "c", Metadata: map[string]string{"a": "b"}}
	got := o.Source()
	want := Source{Bucket: "b", Key: "k", Size: 7, ETag: "e", VersionID: "v"}
	if got != want {
		t.Errorf("Source() = %+v, want %+v", got, want)
	}
}

func TestDecodeErrorError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  DecodeError
		want string
	}{
		{DecodeError{Reason: "empty: want a JSON object"}, "events: empty: want a JSON object"},
		{DecodeError{Field: "image_id", Reason: "missing"}, "events: image_id: missing"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// obsRecord returns an OBS record with the given event name and object
// members.
func obsRecord(eventName, object string) string {
	return `{"eventVersion":"3.0","eventSource":"OBS","eventRegion":"cn-east-3","eventTime":"2026-11-23T08:15:30.123Z",` +
		`"eventName":"` + eventName + `","obs":{"Version":"1.0","configurationId":"c",` +
		`"bucket":{"name":"b","bucket":"b"},"object":{` + object + `}}}`
}

// s3Record returns an S3-style record from source with the given event name
// and object members.
func s3Record(source, eventName, object string) string {
	return `{"eventVersion":"2.1","eventSource":"` + source + `","awsRegion":"us-east-1","eventTime":"2026-11-23T08:15:30Z",` +
		`"eventName":"` + eventName + `","s3":{"s3SchemaVersion":"1.0","bucket":{"name":"b"},"object":{` + object + `}}}`
}

func records(recs ...string) string { return `{"Records":[` + strings.Join(recs, ",") + `]}` }

var (
	t0 = time.Date(2026, 11, 23, 8, 15, 30, 123e6, time.UTC)
	t1 = time.Date(2026, 11, 23, 8, 15, 30, 0, time.UTC)
)

func TestDecodeObjectEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		want        []ObjectCreated
		wantSkipped []string
	}{
		{
			name: "size as numeric string",
			body: records(s3Record("aws:s3", "ObjectCreated:Put", `"key":"a","size":"1024"`)),
			want: []ObjectCreated{{Shape: ShapeS3, EventName: "ObjectCreated:Put", Bucket: "b", Key: "a", Size: 1024, EventTime: t1, Region: "us-east-1"}},
		},
		{
			name: "size as integral float",
			body: records(s3Record("aws:s3", "ObjectCreated:Put", `"key":"a","size":1.5e3`)),
			want: []ObjectCreated{{Shape: ShapeS3, EventName: "ObjectCreated:Put", Bucket: "b", Key: "a", Size: 1500, EventTime: t1, Region: "us-east-1"}},
		},
		{
			name: "size missing or null is zero",
			body: records(s3Record("aws:s3", "ObjectCreated:Put", `"key":"a"`), s3Record("aws:s3", "ObjectCreated:Put", `"key":"c","size":null`)),
			want: []ObjectCreated{
				{Shape: ShapeS3, EventName: "ObjectCreated:Put", Bucket: "b", Key: "a", EventTime: t1, Region: "us-east-1"},
				{Shape: ShapeS3, EventName: "ObjectCreated:Put", Bucket: "b", Key: "c", EventTime: t1, Region: "us-east-1"},
			},
		},
		{
			name: "minio:s3 records without the envelope",
			body: records(s3Record("minio:s3", "s3:ObjectCreated:Copy", `"key":"x%2By","size":3,"versionId":"null"`)),
			want: []ObjectCreated{{Shape: ShapeMinIO, EventName: "s3:ObjectCreated:Copy", Bucket: "b", Key: "x+y", Size: 3, EventTime: t1, Region: "us-east-1"}},
		},
		{
			name: "quoted eTag",
			body: records(obsRecord("ObjectCreated:Put", `"key":"a","eTag":"\"abc\""`)),
			want: []ObjectCreated{{Shape: ShapeOBS, EventName: "ObjectCreated:Put", Bucket: "b", Key: "a", ETag: "abc", EventTime: t0, Region: "cn-east-3"}},
		},
		{
			name: "bucket only in obs.bucket.bucket",
			body: `{"Records":[{"eventName":"ObjectCreated:Post","obs":{"bucket":{"bucket":"only"},"object":{"key":"k","size":1}}}]}`,
			want: []ObjectCreated{{Shape: ShapeOBS, EventName: "ObjectCreated:Post", Bucket: "only", Key: "k", Size: 1}},
		},
		{
			name: "event names are case-insensitive",
			body: records(s3Record("aws:s3", "objectcreated:put", `"key":"a"`), s3Record("aws:s3", "S3:OBJECTCREATED:PUT", `"key":"c"`)),
			want: []ObjectCreated{
				{Shape: ShapeS3, EventName: "objectcreated:put", Bucket: "b", Key: "a", EventTime: t1, Region: "us-east-1"},
				{Shape: ShapeS3, EventName: "S3:OBJECTCREATED:PUT", Bucket: "b", Key: "c", EventTime: t1, Region: "us-east-1"},
			},
		},
		{
			name:        "other events are skipped, even when malformed",
			body:        records(`{"eventName":"s3:ObjectRemoved:Delete"}`, `{"eventName":"s3:ObjectAccessed:Get","s3":"x"}`, `{"eventName":"ObjectCreatedX"}`),
			wantSkipped: []string{"s3:ObjectRemoved:Delete", "s3:ObjectAccessed:Get", "ObjectCreatedX"},
		},
		{
			name: "empty Records",
			body: `{"Records":[]}`,
		},
		{
			name:        "S3 test event",
			body:        `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T08:15:30.123Z","Bucket":"b","RequestId":"r","HostId":"h"}`,
			wantSkipped: []string{"s3:TestEvent"},
		},
		{
			name: "event time with an offset is UTC; a bad one is zero",
			body: records(
				strings.Replace(obsRecord("ObjectCreated:Put", `"key":"a"`), "2026-11-23T08:15:30.123Z", "2026-11-23T16:15:30.123+08:00", 1),
				strings.Replace(obsRecord("ObjectCreated:Put", `"key":"c"`), "2026-11-23T08:15:30.123Z", "23/11/2026", 1),
				strings.Replace(obsRecord("ObjectCreated:Put", `"key":"d"`), `"2026-11-23T08:15:30.123Z"`, "1700000000", 1),
				strings.Replace(obsRecord("ObjectCreated:Put", `"key":"e"`), "2026-11-23T08:15:30.123Z", "0000-01-01T00:00:00+01:00", 1),
			),
			want: []ObjectCreated{
				{Shape: ShapeOBS, EventName: "ObjectCreated:Put", Bucket: "b", Key: "a", EventTime: t0, Region: "cn-east-3"},
				{Shape: ShapeOBS, EventName: "ObjectCreated:Put", Bucket: "b", Key: "c", Region: "cn-east-3"},
				{Shape: ShapeOBS, EventName: "ObjectCreated:Put", Bucket: "b", Key: "d", Region: "cn-east-3"},
				{Shape: ShapeOBS, EventName: "ObjectCreated:Put", Bucket: "b", Key: "e", Region: "cn-east-3"},
			},
		},
		{
			name: "user metadata",
			body: records(s3Record("minio:s3", "s3:ObjectCreated:Put", `"key":"a","userMetadata":{`+
				`"X-Amz-Meta-Ims-Type":"system","x-obs-meta-Owner":"ops","Plain":"p","X-Amz-Meta-":"dropped",`+
				`"Content-Type":"application/x-qemu-disk","X-Amz-Meta-Dup":"1","x-amz-meta-dup":"2"}`)),
			want: []ObjectCreated{{Shape: ShapeMinIO, EventName: "s3:ObjectCreated:Put", Bucket: "b", Key: "a", EventTime: t1, Region: "us-east-1",
				ContentType: "application/x-qemu-disk",
				Metadata:    map[string]string{"ims-type": "system", "owner": "ops", "plain": "p", "dup": "2"}}},
		},
		{
			name: "only content-type metadata leaves Metadata nil",
			body: records(s3Record("minio:s3", "s3:ObjectCreated:Put", `"key":"a","contentType":"text/plain","userMetadata":{"content-type":"text/html"}`)),
			want: []ObjectCreated{{Shape: ShapeMinIO, EventName: "s3:ObjectCreated:Put", Bucket: "b", Key: "a", EventTime: t1, Region: "us-east-1", ContentType: "text/plain"}},
		},
		{
			name: "eventgrid: event name and time from the envelope",
			body: `{"specversion":"1.0","id":"i","source":"HC.OBS.DWR","type":"OBS:DWR:ObjectCreated:PUT","subject":"ignored","time":"2026-11-23T08:15:30.123Z",` +
				`"data":{"eventRegion":"cn-north-4","obs":{"bucket":{"name":"b"},"object":{"key":"a+b","size":9,"sequencer":"1"}}}}`,
			want: []ObjectCreated{{Shape: ShapeEventGrid, EventName: "OBS:DWR:ObjectCreated:PUT", Bucket: "b", Key: "a b", Size: 9, Sequencer: "1", EventTime: t0, Region: "cn-north-4"}},
		},
		{
			name:        "eventgrid: other type is skipped",
			body:        `{"specversion":"1.0","type":"OBS:DWR:ObjectRemoved:DELETE","data":{"obs":{"bucket":{"name":"b"},"object":{"key":"a"}}}}`,
			wantSkipped: []string{"OBS:DWR:ObjectRemoved:DELETE"},
		},
		{
			name:        "eventgrid: data wrapped in Records",
			body:        `{"specversion":"1.0","type":"OBS:DWR:ObjectCreated:PUT","data":` + records(obsRecord("ObjectCreated:Put", `"key":"a"`), `{"eventName":"ObjectRemoved:Delete"}`) + `}`,
			want:        []ObjectCreated{{Shape: ShapeEventGrid, EventName: "ObjectCreated:Put", Bucket: "b", Key: "a", EventTime: t0, Region: "cn-east-3"}},
			wantSkipped: []string{"ObjectRemoved:Delete"},
		},
		{
			name: "smn: S3-style message",
			body: `{"type":"Notification","topic_urn":"urn:smn:x","message":` + quote(records(s3Record("aws:s3", "ObjectCreated:Put", `"key":"a"`))) + `}`,
			want: []ObjectCreated{{Shape: ShapeSMN, EventName: "ObjectCreated:Put", Bucket: "b", Key: "a", EventTime: t1, Region: "us-east-1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, skipped, err := DecodeObjectEvents([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeObjectEvents(%s) error = %v", tc.body, err)
			}
			if !equalRecords(got, tc.want) {
				t.Errorf("DecodeObjectEvents(%s) =\n%+v\nwant\n%+v", tc.body, got, tc.want)
			}
			if !reflect.DeepEqual(skipped, tc.wantSkipped) {
				t.Errorf("DecodeObjectEvents(%s) skipped = %q, want %q", tc.body, skipped, tc.wantSkipped)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// body returns the test body: the contents of a testdata file for
// "file:<name>", else s itself.
func body(t testing.TB, s string) []byte {
	t.Helper()
	if name, ok := strings.CutPrefix(s, "file:"); ok {
		return readFixture(t, name)
	}
	return []byte(s)
}

// checkDecodeError fails unless err is a *DecodeError with the field and a
// reason containing reason.
func checkDecodeError(t *testing.T, call string, err error, field, reason string) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("%s error = %v (%T), want a *DecodeError", call, err, err)
	}
	if de.Field != field {
		t.Errorf("%s error field = %q, want %q (error %v)", call, de.Field, field, err)
	}
	if !strings.Contains(de.Reason, reason) {
		t.Errorf("%s error reason = %q, want it to contain %q", call, de.Reason, reason)
	}
}

func TestDecodeObjectEventsErrors(t *testing.T) {
	t.Parallel()
	created := func(object string) string { return records(s3Record("aws:s3", "ObjectCreated:Put", object)) }
	tests := []struct {
		name   string
		body   string // "file:<name>" for a testdata file
		field  string
		reason string
	}{
		{"empty body", "", "", "empty"},
		{"blank body", " \n", "", "empty"},
		{"truncated JSON", "file:invalid_truncated.json", "", "not valid JSON"},
		{"trailing data", `{"Records":[]} x`, "", "not valid JSON"},
		{"array body", `[]`, "", "is a JSON array; want an object"},
		{"string body", `"Records"`, "", "is a JSON string; want an object"},
		{"null body", `null`, "", "not an object notification"},
		{"unknown shape", "file:invalid_unknown_shape.json", "", "not an object notification"},
		{"other S3 Event", `{"Service":"Amazon S3","Event":"s3:Other"}`, "", "not an object notification"},
		{"S3 Event not a string", `{"Event":1}`, "Event", "is a JSON number"},
		{"Records not an array", `{"Records":{"eventName":"ObjectCreated:Put"}}`, "Records", "is a JSON object; want an array"},
		{"record not an object", `{"Records":["ObjectCreated:Put"]}`, "Records[0]", "is a JSON string; want an object"},
		{"record null", `{"Records":[null]}`, "Records[0].eventName", "missing"},
		{"no event name", records(`{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}`), "Records[0].eventName", "missing"},
		{"event name a number", records(`{"eventName":7}`), "Records[0].eventName", "is a JSON number; want a string"},
		{"neither obs nor s3", records(`{"eventName":"ObjectCreated:Put","gcs":{}}`), "Records[0]", `neither an "obs" nor an "s3"`},
		{"obs and s3", records(`{"eventName":"ObjectCreated:Put","obs":{},"s3":{}}`), "Records[0]", `both an "obs" and an "s3"`},
		{"s3 a string", records(`{"eventName":"ObjectCreated:Put","s3":"b/k"}`), "Records[0].s3", "is a JSON string; want an object"},
		{"no bucket", records(`{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}`), "Records[0].s3.bucket.name", "missing"},
		{"no key", "file:invalid_missing_key.json", "Records[0].obs.object.key", "missing"},
		{"key a number", created(`"key":5`), "Records[0].s3.object.key", "is a JSON number; want a string"},
		{"key bad escape", "file:invalid_bad_escape.json", "Records[0].obs.object.key", `"images/100%.qcow2" is not URL-encoded`},
		{"key not UTF-8", created(`"key":"a%FF"`), "Records[0].s3.object.key", "does not decode to UTF-8"},
		{"size negative", created(`"key":"k","size":-1`), "Records[0].s3.object.size", "-1 is not a non-negative integer"},
		{"size fraction", created(`"key":"k","size":1.5`), "Records[0].s3.object.size", "not a non-negative integer"},
		{"size too large", created(`"key":"k","size":1e300`), "Records[0].s3.object.size", "not a non-negative integer"},
		{"size string not digits", created(`"key":"k","size":"12a"`), "Records[0].s3.object.size", `"12a" is not a non-negative integer`},
		{"size string negative", created(`"key":"k","size":"-1"`), "Records[0].s3.object.size", "not a non-negative integer"},
		{"size string empty", created(`"key":"k","size":""`), "Records[0].s3.object.size", "not a non-negative integer"},
		{"size bool", created(`"key":"k","size":true`), "Records[0].s3.object.size", "not a non-negative integer"},
		{"metadata not strings", created(`"key":"k","userMetadata":{"a":1}`), "Records[0].s3.object.userMetadata", "is a JSON number; want a string"},
		{"second record", records(s3Record("aws:s3", "ObjectCreated:Put", `"key":"k"`), s3Record("aws:s3", "ObjectCreated:Put", `"key":""`)), "Records[1].s3.object.key", "missing"},
		{"smn subscription", "file:smn_subscription.json", "type", "must be confirmed by the HTTP ingest"},
		{"smn unsubscribe", `{"type":"UnsubscribeConfirmation","topic_urn":"urn:smn:x","message":"bye"}`, "type", "must be confirmed by the HTTP ingest"},
		{"smn other type", `{"type":"Other","topic_urn":"urn:smn:x","message":"{}"}`, "type", `is "Other"; want an SMN Notification`},
		{"smn type not a string", `{"type":1,"message":"{}"}`, "type", "is a JSON number"},
		{"smn no message", `{"type":"Notification","topic_urn":"urn:smn:x"}`, "message", "missing"},
		{"smn message not a string", `{"type":"Notification","message":{"Records":[]}}`, "message", "is a JSON object; want a string"},
		{"smn message not JSON", `{"type":"Notification","message":"hello"}`, "message", "not valid JSON"},
		{"smn message without Records", `{"type":"Notification","message":"{\"a\":1}"}`, "message", `no "Records"`},
		{"smn inner record", `{"type":"Notification","message":` + quote(`{"Records":[`+obsRecord("ObjectCreated:Put", `"key":"%zz"`)+`]}`) + `}`,
			"message.Records[0].obs.object.key", "not URL-encoded"},
		{"eventgrid no data", `{"specversion":"1.0","type":"OBS:DWR:ObjectCreated:PUT"}`, "data", "missing"},
		{"eventgrid data a string", `{"specversion":"1.0","type":"OBS:DWR:ObjectCreated:PUT","data":"x"}`, "data", "is a JSON string; want an object"},
		{"eventgrid type not a string", `{"specversion":"1.0","type":5,"data":{}}`, "type", "is a JSON number"},
		{"eventgrid no event name", `{"specversion":"1.0","data":{"obs":{}}}`, "data.eventName", "missing"},
		{"eventgrid no key", `{"specversion":"1.0","type":"OBS:DWR:ObjectCreated:PUT","data":{"obs":{"bucket":{"name":"b"},"object":{}}}}`, "data.obs.object.key", "missing"},
		{"eventgrid wrapped record", `{"specversion":"1.0","data":{"Records":[{"eventName":"ObjectCreated:Put","obs":{"object":{"key":"k"}}}]}}`,
			"data.Records[0].obs.bucket.name", "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, skipped, err := DecodeObjectEvents(body(t, tc.body))
			if got != nil || skipped != nil {
				t.Errorf("DecodeObjectEvents(%s) = %+v, %q, want nil, nil with the error", tc.body, got, skipped)
			}
			checkDecodeError(t, "DecodeObjectEvents("+tc.body+")", err, tc.field, tc.reason)
		})
	}
}

func TestDecodeExportRequest(t *testing.T) {
	t.Parallel()
	id64 := strings.Repeat("a", 63) + "Z"
	tests := []struct {
		name string
		body string
		want ExportRequest
	}{
		{"minimal", `{"image_id":"img-1"}`, ExportRequest{ImageID: "img-1", Quick: QuickAuto}},
		{"64 characters", `{"image_id":"` + id64 + `"}`, ExportRequest{ImageID: id64, Quick: QuickAuto}},
		{"quick true", `{"image_id":"a_b","quick":"TRUE"}`, ExportRequest{ImageID: "a_b", Quick: QuickTrue}},
		{"quick false", `{"image_id":"a","quick":"False","file_format":"VMDK"}`, ExportRequest{ImageID: "a", Quick: QuickFalse, FileFormat: "vmdk"}},
		{"formats", `{"image_id":"a","file_format":"zVHD"}`, ExportRequest{ImageID: "a", Quick: QuickAuto, FileFormat: "zvhd"}},
		{"colon in key", `{"image_id":"a","bucket_url":"b:dir/x:y.vhd","file_format":"vhd"}`,
			ExportRequest{ImageID: "a", Quick: QuickAuto, BucketURL: "b:dir/x:y.vhd", FileFormat: "vhd"}},
		{"unknown fields and nulls", `{"image_id":"a","note":{"x":[1]},"quick":null,"request_id":"r","batch_id":"b"}`,
			ExportRequest{ImageID: "a", Quick: QuickAuto, RequestID: "r", BatchID: "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeExportRequest([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeExportRequest(%s) error = %v", tc.body, err)
			}
			if got != tc.want {
				t.Errorf("DecodeExportRequest(%s) = %+v, want %+v", tc.body, got, tc.want)
			}
		})
	}
}

func TestDecodeExportRequestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string // "file:<name>" for a testdata file
		field  string
		reason string
	}{
		{"empty body", "", "", "empty"},
		{"not JSON", `image_id=a`, "", "not valid JSON"},
		{"array", `[{"image_id":"a"}]`, "", "is a JSON array; want an object"},
		{"no image_id", `{"bucket_url":"b:k"}`, "image_id", "missing"},
		{"null body", `null`, "image_id", "missing"},
		{"image_id a number", `{"image_id":42}`, "image_id", "is a JSON number; want a string"},
		{"image_id too long", `{"image_id":"` + strings.Repeat("a", 65) + `"}`, "image_id", "is 65 characters long"},
		{"image_id space", `{"image_id":"img 1"}`, "image_id", "characters other than letters, digits"},
		{"image_id non-ASCII", `{"image_id":"imgü"}`, "image_id", "characters other than letters, digits"},
		{"image_id slash", `{"image_id":"../a"}`, "image_id", "characters other than letters, digits"},
		{"quick yes", `{"image_id":"a","quick":"yes"}`, "quick", `is "yes"; want "auto", "true" or "false"`},
		{"quick a boolean", "file:invalid_export_quick.json", "quick", "is a JSON bool; want a string"},
		{"file_format raw", `{"image_id":"a","file_format":"raw"}`, "file_format", `is "raw"; want qcow2, vhd, zvhd or vmdk`},
		{"bucket_url no colon", `{"image_id":"a","bucket_url":"bucket"}`, "bucket_url", `want "bucket:key"`},
		{"bucket_url no bucket", `{"image_id":"a","bucket_url":":key"}`, "bucket_url", `want "bucket:key"`},
		{"bucket_url no key", `{"image_id":"a","bucket_url":"bucket:"}`, "bucket_url", `want "bucket:key"`},
		{"bucket_url slash in bucket", `{"image_id":"a","bucket_url":"b/c:k"}`, "bucket_url", "no '/' in the bucket"},
		{"bucket_url a URL", "file:invalid_export_bucket_url.json", "bucket_url", "no scheme"},
		{"request_id a number", `{"image_id":"a","request_id":1}`, "request_id", "is a JSON number; want a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeExportRequest(body(t, tc.body))
			if got != (ExportRequest{}) {
				t.Errorf("DecodeExportRequest(%s) = %+v, want the zero request with the error", tc.body, got)
			}
			checkDecodeError(t, "DecodeExportRequest("+tc.body+")", err, tc.field, tc.reason)
		})
	}
}

// s3Body re-encodes o as an AWS-style S3 notification with one record.
func s3Body(t testing.TB, o ObjectCreated) []byte {
	t.Helper()
	object := map[string]any{"key": url.QueryEscape(o.Key), "size": o.Size, "eTag": o.ETag, "sequencer": o.Sequencer}
	if o.VersionID != "" {
		object["versionId"] = o.VersionID
	}
	b, err := json.Marshal(map[string]any{"Records": []any{map[string]any{
		"eventVersion": "2.1",
		"eventSource":  "aws:s3",
		"eventName":    "ObjectCreated:Put",
		"s3":           map[string]any{"bucket": map[string]any{"name": o.Bucket}, "object": object},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fuzzSeeds adds every testdata/*.json file to f.
func fuzzSeeds(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecodeObjectEvents(f *testing.F) {
	fuzzSeeds(f)
	f.Add([]byte(records(s3Record("minio:s3", "s3:ObjectCreated:Put", `"key":"a+b%2Fc","size":"12","eTag":"\"e\"","versionId":"null","userMetadata":{"X-Amz-Meta-A":"1"}`))))
	f.Add([]byte(`{"specversion":"1.0","type":"OBS:DWR:ObjectCreated:PUT","time":"2026-11-23T08:15:30Z","data":{"obs":{"bucket":{"name":"b"},"object":{"key":"k"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		created, _, err := DecodeObjectEvents(data)
		split, _, serr := SplitObjectEvents(data)
		if (err == nil) != (serr == nil) || len(split) != len(created) {
			t.Fatalf("SplitObjectEvents = %d records, %v; DecodeObjectEvents = %d, %v", len(split), serr, len(created), err)
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeObjectEvents error = %v (%T), want a *DecodeError", err, err)
			}
			return
		}
		for i, r := range split {
			again, _, err := DecodeObjectEvents(r.Body)
			if err != nil || len(again) != 1 || again[0].Source() != created[i].Source() {
				t.Fatalf("split body %s decodes to %+v, %v; want %+v", r.Body, again, err, created[i].Source())
			}
		}
		for _, o := range created {
			if o.Bucket == "" || o.Key == "" || o.Size < 0 {
				t.Fatalf("DecodeObjectEvents accepted %+v: want bucket and key set and size >= 0", o)
			}
			switch o.Shape {
			case ShapeOBS, ShapeS3, ShapeMinIO, ShapeEventGrid, ShapeSMN:
			default:
				t.Fatalf("DecodeObjectEvents shape = %q", o.Shape)
			}
			b := s3Body(t, o)
			again, _, err := DecodeObjectEvents(b)
			if err != nil || len(again) != 1 {
				t.Fatalf("DecodeObjectEvents(%s) = %+v, %v; want one record", b, again, err)
			}
			if got, want := again[0].Source(), o.Source(); got != want {
				t.Fatalf("re-encoded record decodes to %+v, want %+v", got, want)
			}
			j, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("json.Marshal(%+v) error = %v", o, err)
			}
			var back ObjectCreated
			if err := json.Unmarshal(j, &back); err != nil || !reflect.DeepEqual(back, o) {
				t.Fatalf("JSON round trip of %+v = %+v, %v", o, back, err)
			}
		}
	})
}

func FuzzDecodeExportRequest(f *testing.F) {
	fuzzSeeds(f)
	f.Add([]byte(`{"image_id":"a","quick":"TRUE","file_format":"Qcow2","bucket_url":"b:k"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeExportRequest(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Field == "" && de.Reason == "" {
				t.Fatalf("DecodeExportRequest error = %v (%T), want a *DecodeError", err, err)
			}
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) error = %v", r, err)
		}
		again, err := DecodeExportRequest(b)
		if err != nil || again != r {
			t.Fatalf("DecodeExportRequest(%s) = %+v, %v; want %+v", b, again, err, r)
		}
	})
}

func ExampleDecodeObjectEvents() {
	body := []byte(`{"EventName":"s3:ObjectCreated:Put","Key":"uploads/dir a/ü b+c.txt","Records":[{"eventVersion":"2.0",` +
		`"eventSource":"minio:s3","eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},` +
		`"object":{"key":"dir+a%2F%C3%BC+b%2Bc.txt","size":5,"eTag":"5d41402abc4b2a76b9719d911017c592"}}}]}`)
	created, skipped, err := DecodeObjectEvents(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, o := range created {
		fmt.Printf("%s %s/%s (%d bytes)\n", o.Shape, o.Bucket, o.Key, o.Size)
	}
	fmt.Println("skipped:", len(skipped))
	// Output:
	// minio uploads/dir a/ü b+c.txt (5 bytes)
	// skipped: 0
}

func ExampleDecodeExportRequest() {
	_, err := DecodeExportRequest([]byte(`{"image_id":"6b3a9e2c","file_format":"raw"}`))
	fmt.Println(err)
	// Output:
	// events: file_format: is "raw"; want qcow2, vhd, zvhd or vmdk
}
