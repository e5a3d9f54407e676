package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Input shapes reported in ObjectCreated.Shape.
const (
	ShapeOBS       = "obs"       // OBS native Records[].obs
	ShapeS3        = "s3"        // Records[].s3 from AWS or the FunctionGraph OBS trigger
	ShapeMinIO     = "minio"     // Records[].s3 with eventSource minio:s3, or MinIO's {EventName, Key, Records}
	ShapeEventGrid = "eventgrid" // an EventGrid CloudEvent whose data is an OBS record
	ShapeSMN       = "smn"       // an SMN HTTP notification whose message holds the OBS JSON
)

// ObjectCreated is one object-created notification record, normalized
// from any supported shape.
type ObjectCreated struct {
	// Shape is the detected input shape: ShapeOBS, ShapeS3, ShapeMinIO,
	// ShapeEventGrid or ShapeSMN.
	Shape string `json:"shape"`
	// EventName is as received, e.g. "ObjectCreated:Put",
	// "s3:ObjectCreated:Put" or, for an EventGrid event without
	// data.eventName, its type "OBS:DWR:ObjectCreated:PUT".
	EventName string `json:"event_name"`
	Bucket    string `json:"bucket"`
	// Key is decoded: the notification's key through url.QueryUnescape
	// ('+' is a space).
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// ETag is without surrounding quotes.
	ETag string `json:"etag,omitempty"`
	// VersionID is "" when the object is unversioned (OBS and S3 send the
	// string "null").
	VersionID string `json:"version_id,omitempty"`
	Sequencer string `json:"sequencer,omitempty"`
	// EventTime is in UTC; zero when the notification's time is missing or
	// not RFC 3339.
	EventTime   time.Time `json:"event_time"`
	Region      string    `json:"region,omitempty"`
	ContentType string    `json:"content_type,omitempty"`
	// Metadata is the user metadata, keys lower-cased without any
	// "x-amz-meta-" or "x-obs-meta-" prefix, content-type dropped.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Source returns the Source of the record, format left empty.
func (o ObjectCreated) Source() Source {
	return Source{Bucket: o.Bucket, Key: o.Key, Size: o.Size, ETag: o.ETag, VersionID: o.VersionID}
}

// DecodeError says why an input cannot be processed, in words a person can
// act on.
type DecodeError struct {
	Field  string // "" when the whole body is at fault
	Reason string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "events: " + e.Reason
	}
	return "events: " + e.Field + ": " + e.Reason
}

// DecodeObjectEvents detects the shape of one notification body and returns
// its object-created records. Records of other events (ObjectRemoved,
// ObjectAccessed, ...) are not errors: their event names are returned in
// skipped. A body that is no known shape, or a created record lacking
// bucket or key, or whose key does not unescape, is an error of type
// *DecodeError.
func DecodeObjectEvents(body []byte) (created []ObjectCreated, skipped []string, err error) {
	var d decoder
	if err := d.decode(body); err != nil {
		return nil, nil, err
	}
	return d.created, d.skipped, nil
}

// RecordID identifies one record of a notification: its object version
// and its sequencer, JSON-encoded (a key may hold any byte) and hashed, so
// that a record passed on twice is stored once under a message ID built
// on it.
func (o ObjectCreated) RecordID() string {
	parts, _ := json.Marshal([]string{o.Bucket, o.Key, o.VersionID, o.ETag, o.Sequencer})
	return Hash(string(parts), 40)
}

// ObjectRecord is one object-created record and a notification body that
// carries it alone.
type ObjectRecord struct {
	ObjectCreated
	// Body is a notification holding this record only, in its input
	// shape: an OBS, S3 or MinIO record in {"Records":[record]}, an
	// EventGrid event with this record as its data, and for SMN the OBS
	// notification its message carried (so Body's shape is obs).
	// DecodeObjectEvents(Body) returns this record.
	Body []byte
}

// SplitObjectEvents is DecodeObjectEvents that also gives every created
// record a body of its own, so that a notification of many records can be
// passed on one message per record.
func SplitObjectEvents(body []byte) (records []ObjectRecord, skipped []string, err error) {
	d := decoder{split: true}
	if err := d.decode(body); err != nil {
		return nil, nil, err
	}
	records = make([]ObjectRecord, len(d.created))
	for i, o := range d.created {
		records[i] = ObjectRecord{ObjectCreated: o, Body: d.bodies[i]}
	}
	return records, d.skipped, nil
}

func (d *decoder) decode(body []byte) error {
	var top struct {
		Records     json.RawMessage `json:"Records"`
		EventName   json.RawMessage `json:"EventName"` // MinIO envelope
		Key         json.RawMessage `json:"Key"`       // MinIO envelope
		SpecVersion json.RawMessage `json:"specversion"`
		Type        json.RawMessage `json:"type"`
		Time        json.RawMessage `json:"time"`
		Data        json.RawMessage `json:"data"`
		Message     json.RawMessage `json:"message"`
		TopicURN    json.RawMessage `json:"topic_urn"`
		MessageID   json.RawMessage `json:"message_id"`
		Event       json.RawMessage `json:"Event"` // S3 test event
	}
	if err := unmarshal(body, &top, ""); err != nil {
		return err
	}
	switch {
	case present(top.SpecVersion):
		d.shape = ShapeEventGrid
		if d.split {
			var env map[string]json.RawMessage // parsed once, its data replaced per record
			d.wrap = func(rec json.RawMessage) ([]byte, error) {
				if env == nil {
					if err := json.Unmarshal(body, &env); err != nil {
						return nil, err
					}
				}
				env["data"] = rec
				return json.Marshal(env)
			}
		}
		return d.eventGrid(top.Type, top.Time, top.Data)
	case present(top.Type) && (present(top.Message) || present(top.TopicURN) || present(top.MessageID)):
		d.shape = ShapeSMN
		return d.smn(top.Type, top.Message)
	case present(top.Records):
		switch {
		case present(top.EventName) || present(top.Key):
			d.shape = ShapeMinIO
		default:
			d.shape = "" // per record: obs, s3 or minio
		}
		return d.records(top.Records, "")
	case present(top.Event):
		// The test message AWS S3 sends when a notification is
		// configured: {"Service":"Amazon S3","Event":"s3:TestEvent",...}.
		var ev string
		if err := unmarshal(top.Event, &ev, "Event"); err != nil {
			return err
		}
		if ev == "s3:TestEvent" {
			d.skipped = append(d.skipped, ev)
			return nil
		}
	}
	return &DecodeError{Reason: "not an object notification: expected OBS or S3 \"Records\", " +
		"a MinIO event, an EventGrid CloudEvent or an SMN notification"}
}

// decoder turns records into ObjectCreated values. shape, when set,
// overrides the shape detected per record; typeName is the EventGrid type,
// the event name of a record without one; defTime is the envelope's time.
type decoder struct {
	shape    string
	typeName string
	defTime  json.RawMessage
	created  []ObjectCreated
	skipped  []string
	// split asks for a body per created record, made by wrap (by default
	// {"Records":[record]}), in bodies.
	split  bool
	wrap   func(record json.RawMessage) ([]byte, error)
	bodies [][]byte
}

func (d *decoder) eventGrid(typ, tm, data json.RawMessage) error {
	if present(typ) {
		if err := unmarshal(typ, &d.typeName, "type"); err != nil {
			return err
		}
	}
	d.defTime = tm
	if !present(data) {
		return &DecodeError{Field: "data", Reason: "missing: an EventGrid event must carry the OBS record in data"}
	}
	var wrapped struct {
		Records json.RawMessage `json:"Records"`
	}
	if err := unmarshal(data, &wrapped, "data"); err != nil {
		return err
	}
	if present(wrapped.Records) {
		return d.records(wrapped.Records, "data.")
	}
	return d.record(data, "data")
}

func (d *decoder) smn(typ, msg json.RawMessage) error {
	var t string
	if err := unmarshal(typ, &t, "type"); err != nil {
		return err
	}
	switch t {
	case "Notification":
	case "SubscriptionConfirmation", "UnsubscribeConfirmation":
		return &DecodeError{Field: "type", Reason: "is " + t +
			": it must be confirmed by the HTTP ingest (through its subscribe_url), not processed here"}
	default:
		return &DecodeError{Field: "type", Reason: fmt.Sprintf("is %q; want an SMN Notification", t)}
	}
	var m string
	if present(msg) {
		if err := unmarshal(msg, &m, "message"); err != nil {
			return err
		}
	}
	if m == "" {
		return &DecodeError{Field: "message", Reason: "missing: an SMN notification must carry the OBS notification in message"}
	}
	var inner struct {
		Records json.RawMessage `json:"Records"`
	}
	if err := unmarshal([]byte(m), &inner, "message"); err != nil {
		return err
	}
	if !present(inner.Records) {
		return &DecodeError{Field: "message", Reason: "holds no \"Records\": not an OBS notification"}
	}
	return d.records(inner.Records, "message.")
}

func (d *decoder) records(raw json.RawMessage, prefix string) error {
	var recs []json.RawMessage
	if err := unmarshal(raw, &recs, prefix+"Records"); err != nil {
		return err
	}
	for i, r := range recs {
		if err := d.record(r, fmt.Sprintf("%sRecords[%d]", prefix, i)); err != nil {
			return err
		}
	}
	return nil
}

// s3Entity is the "obs" or "s3" object of a record.
type s3Entity struct {
	Bucket struct {
		Name   string `json:"name"`
		Bucket string `json:"bucket"` // OBS repeats the name here
	} `json:"bucket"`
	Object struct {
		Key          string            `json:"key"`
		ETag         string            `json:"eTag"`
		Size         json.RawMessage   `json:"size"`
		VersionID    string            `json:"versionId"`
		Sequencer    string            `json:"sequencer"`
		ContentType  string            `json:"contentType"`
		UserMetadata map[string]string `json:"userMetadata"`
	} `json:"object"`
}

// record decodes one record at path into d.created or d.skipped.
func (d *decoder) record(raw json.RawMessage, path string) error {
	// The event name first: a record that is skipped need not be
	// otherwise well-formed.
	var head struct {
		EventName json.RawMessage `json:"eventName"`
	}
	if err := unmarshal(raw, &head, path); err != nil {
		return err
	}
	var name string
	fromType := false
	if present(head.EventName) {
		if err := unmarshal(head.EventName, &name, path+".eventName"); err != nil {
			return err
		}
	}
	if name == "" && d.typeName != "" {
		name, fromType = d.typeName, true
	}
	if name == "" {
		return &DecodeError{Field: path + ".eventName", Reason: "missing: cannot tell whether an object was created"}
	}
	if !isCreated(name, fromType) {
		d.skipped = append(d.skipped, name)
		return nil
	}

	var rec struct {
		EventSource string          `json:"eventSource"`
		EventRegion string          `json:"eventRegion"`
		AWSRegion   string          `json:"awsRegion"`
		EventTime   json.RawMessage `json:"eventTime"`
		OBS         *s3Entity       `json:"obs"`
		S3          *s3Entity       `json:"s3"`
	}
	if err := unmarshal(raw, &rec, path); err != nil {
		return err
	}
	o := ObjectCreated{EventName: name, Shape: d.shape}
	var ent *s3Entity
	switch {
	case rec.OBS != nil && rec.S3 != nil:
		return &DecodeError{Field: path, Reason: "has both an \"obs\" and an \"s3\" object; want one"}
	case rec.OBS != nil:
		ent, path = rec.OBS, path+".obs"
		if o.Shape == "" {
			o.Shape = ShapeOBS
		}
	case rec.S3 != nil:
		ent, path = rec.S3, path+".s3"
		if o.Shape == "" {
			o.Shape = ShapeS3
			if rec.EventSource == "minio:s3" {
				o.Shape = ShapeMinIO
			}
		}
	default:
		return &DecodeError{Field: path, Reason: "has neither an \"obs\" nor an \"s3\" object: not an object notification record"}
	}

	o.Bucket = ent.Bucket.Name
	if o.Bucket == "" {
		o.Bucket = ent.Bucket.Bucket
	}
	if o.Bucket == "" {
		return &DecodeError{Field: path + ".bucket.name", Reason: "missing: the record names no bucket"}
	}
	if ent.Object.Key == "" {
		return &DecodeError{Field: path + ".object.key", Reason: "missing: the record names no object"}
	}
	key, err := url.QueryUnescape(ent.Object.Key)
	if err != nil {
		var ee url.EscapeError
		msg := err.Error()
		if errors.As(err, &ee) {
			msg = fmt.Sprintf("invalid escape %q", string(ee))
		}
		return &DecodeError{Field: path + ".object.key", Reason: fmt.Sprintf("%q is not URL-encoded (%s)", ent.Object.Key, msg)}
	}
	if !utf8.ValidString(key) {
		return &DecodeError{Field: path + ".object.key", Reason: fmt.Sprintf("%q does not decode to UTF-8", ent.Object.Key)}
	}
	o.Key = key
	if o.Size, err = parseSize(ent.Object.Size); err != nil {
		return &DecodeError{Field: path + ".object.size", Reason: err.Error()}
	}
	o.ETag = strings.Trim(ent.Object.ETag, `"`)
	if v := ent.Object.VersionID; v != "null" {
		o.VersionID = v
	}
	o.Sequencer = ent.Object.Sequencer
	o.Region = rec.EventRegion
	if o.Region == "" {
		o.Region = rec.AWSRegion
	}
	tm := rec.EventTime
	if !present(tm) {
		tm = d.defTime
	}
	o.EventTime = parseTime(tm)
	o.ContentType = ent.Object.ContentType
	o.Metadata, o.ContentType = userMetadata(ent.Object.UserMetadata, o.ContentType)
	d.created = append(d.created, o)
	if d.split {
		wrap := d.wrap
		if wrap == nil {
			wrap = recordsBody
		}
		b, err := wrap(raw)
		if err != nil {
			return &DecodeError{Field: path, Reason: err.Error()}
		}
		d.bodies = append(d.bodies, b)
	}
	return nil
}

// recordsBody returns {"Records":[rec]}.
func recordsBody(rec json.RawMessage) ([]byte, error) {
	return json.Marshal(struct {
		Records []json.RawMessage `json:"Records"`
	}{[]json.RawMessage{rec}})
}

// isCreated reports whether an event name is an object-created one:
// "ObjectCreated:..." after an optional "s3:" prefix, or, for an EventGrid
// type such as "OBS:DWR:ObjectCreated:PUT", "ObjectCreated" as its last
// but one part. Both are case-insensitive.
func isCreated(name string, fromType bool) bool {
	const p = "ObjectCreated:"
	if fromType {
		parts := strings.Split(name, ":")
		return len(parts) >= 2 && strings.EqualFold(parts[len(parts)-2], "ObjectCreated")
	}
	if len(name) >= 3 && strings.EqualFold(name[:3], "s3:") {
		name = name[3:]
	}
	return len(name) >= len(p) && strings.EqualFold(name[:len(p)], p)
}

// parseSize accepts a non-negative integer as a JSON number (integral
// floats included) or as a decimal string; missing or null is 0.
func parseSize(raw json.RawMessage) (int64, error) {
	if !present(raw) {
		return 0, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("is not a JSON number or string")
		}
		if s == "" || strings.Trim(s, "0123456789") != "" {
			return 0, fmt.Errorf("%q is not a non-negative integer", s)
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f > 1<<53 {
		return 0, fmt.Errorf("%s is not a non-negative integer", s)
	}
	return int64(f), nil
}

// parseTime returns the UTC time of an RFC 3339 JSON string, or the zero
// time when it is missing or is not one.
func parseTime(raw json.RawMessage) time.Time {
	var s string
	if !present(raw) || json.Unmarshal(raw, &s) != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{} // would not marshal back to JSON
	}
	return t
}

// userMetadata normalizes MinIO/S3 user metadata: keys lower-cased without
// an x-amz-meta- or x-obs-meta- prefix, content-type dropped (it becomes
// contentType when that is empty). Keys that collide after normalizing
// take the value of the last original key in sorted order.
func userMetadata(in map[string]string, contentType string) (map[string]string, string) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out map[string]string
	for _, k := range keys {
		v := in[k]
		n := strings.ToLower(k)
		for _, p := range []string{"x-amz-meta-", "x-obs-meta-"} {
			n = strings.TrimPrefix(n, p)
		}
		switch n {
		case "":
			continue
		case "content-type":
			if contentType == "" {
				contentType = v
			}
			continue
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[n] = v
	}
	return out, contentType
}

// DecodeExportRequest decodes and checks an ExportRequest: image_id is
// required (letters, digits, '-' and '_', at most 64); quick is "", auto,
// true or false, case-insensitive, stored lower-case with "" as auto;
// file_format is "", qcow2, vhd, zvhd or vmdk, case-insensitive, stored
// lower-case; bucket_url is empty or "bucket:key" with both parts
// non-empty, not a URL such as obs://bucket/key. Unknown fields are
// allowed. Errors are *DecodeError with Field set.
func DecodeExportRequest(body []byte) (ExportRequest, error) {
	var r ExportRequest
	if err := unmarshal(body, &r, ""); err != nil {
		return ExportRequest{}, err
	}
	switch {
	case r.ImageID == "":
		return ExportRequest{}, &DecodeError{Field: "image_id", Reason: "missing: say which image to export"}
	case len(r.ImageID) > 64:
		return ExportRequest{}, &DecodeError{Field: "image_id", Reason: fmt.Sprintf("is %d characters long; an image ID has at most 64", len(r.ImageID))}
	case strings.IndexFunc(r.ImageID, notIDRune) >= 0:
		return ExportRequest{}, &DecodeError{Field: "image_id", Reason: fmt.Sprintf("%q has characters other than letters, digits, '-' and '_'", r.ImageID)}
	}
	switch q := strings.ToLower(r.Quick); q {
	case "":
		r.Quick = QuickAuto
	case QuickAuto, QuickTrue, QuickFalse:
		r.Quick = q
	default:
		return ExportRequest{}, &DecodeError{Field: "quick", Reason: fmt.Sprintf("is %q; want \"auto\", \"true\" or \"false\"", r.Quick)}
	}
	switch f := strings.ToLower(r.FileFormat); f {
	case "", "qcow2", "vhd", "zvhd", "vmdk":
		r.FileFormat = f
	default:
		return ExportRequest{}, &DecodeError{Field: "file_format", Reason: fmt.Sprintf("is %q; want qcow2, vhd, zvhd or vmdk", r.FileFormat)}
	}
	if r.BucketURL != "" {
		bucket, key, ok := strings.Cut(r.BucketURL, ":")
		switch {
		case !ok || bucket == "" || key == "":
			return ExportRequest{}, &DecodeError{Field: "bucket_url", Reason: fmt.Sprintf("is %q; want \"bucket:key\", both parts non-empty", r.BucketURL)}
		case strings.Contains(bucket, "/") || strings.HasPrefix(key, "//"):
			return ExportRequest{}, &DecodeError{Field: "bucket_url", Reason: fmt.Sprintf("is %q; want \"bucket:key\" (no scheme, no '/' in the bucket)", r.BucketURL)}
		}
	}
	return r, nil
}

func notIDRune(c rune) bool {
	return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_')
}

// present reports whether a raw JSON member was given and is not null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// unmarshal is json.Unmarshal into v with its errors as *DecodeError; path
// names the value data is, "" for the whole body.
func unmarshal(data []byte, v any, path string) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &DecodeError{Field: path, Reason: "empty: want a JSON object"}
	}
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		switch {
		case field == "":
			field = path
		case path != "":
			field = path + "." + field
		}
		return &DecodeError{Field: field, Reason: fmt.Sprintf("is a JSON %s; want %s", te.Value, jsonKind(te.Type.String()))}
	case errors.As(err, &se):
		return &DecodeError{Field: path, Reason: fmt.Sprintf("not valid JSON at byte %d: %v", se.Offset, se)}
	}
	return &DecodeError{Field: path, Reason: "not valid JSON: " + err.Error()}
}

// jsonKind names the JSON kind of a Go type from an UnmarshalTypeError.
func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "an object"
}
