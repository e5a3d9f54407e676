package imsapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Sizes as IMS counts them: binary units.
const (
	GiB int64 = 1 << 30
	TiB int64 = 1 << 40

	// MaxNormalImportSize is the largest file the normal (data or system
	// image) import takes: 128 GB.
	MaxNormalImportSize = 128 * GiB
	// MaxQuickImportSize is the largest file quick import takes: 1 TB.
	MaxQuickImportSize = 1 * TiB
	// MaxNormalExportSize: images above it can only be quick exported.
	MaxNormalExportSize = 128 * GiB
	// MaxExportSize: images of this size or more cannot be exported.
	MaxExportSize = 1 * TiB
	// MaxTags is the most tags one image can carry.
	MaxTags = 10
)

// JobRef is IMS's answer to an asynchronous submission: the job to follow
// with [Client.JobProgress].
type JobRef struct {
	JobID string `json:"job_id"`
}

// ImageTag is one entry of image_tags.
type ImageTag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// FlexString decodes any JSON scalar (string, number, bool; null as "") and
// keeps objects and arrays as their JSON text. It is used for fields whose
// type IMS does not document, so that an unexpected shape never makes a
// whole answer undecodable.
type FlexString string

// UnmarshalJSON implements json.Unmarshaler.
func (s *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = ""
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = FlexString(v)
	default:
		*s = FlexString(b)
	}
	return nil
}

// MarshalJSON encodes "" as null, as IMS writes error_code and fail_reason
// of a job that did not fail.
func (s FlexString) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(s))
}

// FlexBool decodes true, false, "true", "false" (any case) and null (false).
// IMS sends some flags as booleans and others as strings.
type FlexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (v *FlexBool) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	parsed, err := strconv.ParseBool(strings.ToLower(s))
	*v = FlexBool(err == nil && parsed)
	return nil
}

// Timestamp is an IMS time such as "2026-03-27T01:17:50.446Z". It decodes
// RFC 3339 with or without fractions and "2006-01-02 15:04:05" (UTC), and
// decodes "", null and anything unparseable as the zero time, so that a
// surprising value never breaks a status answer. It encodes as RFC 3339
// with milliseconds in UTC, and the zero time as null.
type Timestamp struct{ time.Time }

var timestampLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z0700", "2006-01-02 15:04:05", "2006-01-02T15:04:05"}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	t.Time = time.Time{}
	var s string
	if json.Unmarshal(b, &s) != nil || s == "" {
		return nil
	}
	for _, layout := range timestampLayouts {
		if v, err := time.Parse(layout, s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return nil
}

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format("2006-01-02T15:04:05.000Z") + `"`), nil
}
