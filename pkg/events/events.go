// Package events is imsflow's message contract: the subjects, the input
// shapes it decodes (object-created notifications from OBS, S3, MinIO,
// EventGrid and SMN; export requests), the typed events it publishes, their
// CloudEvents headers and their deterministic message IDs. It depends on
// the standard library only.
//
// Every output is JSON in the body with CloudEvents binary-mode headers
// (ce-specversion, ce-id, ce-type, ce-source, ce-time) and a Nats-Msg-Id
// equal to ce-id, derived from what the event is about, so that JetStream
// drops a republished duplicate and a consumer can de-duplicate on it.
//
// Versioning: the version is in the type string (io.imsflow.import.succeeded.v1).
// Adding an optional field keeps v1; renaming, removing or retyping one
// needs a v2 type published alongside v1.
package events

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Subjects. Inputs are under imsflow.in, outputs under imsflow.out,
// internal traffic under imsflow.jobs, dead letters under imsflow.dlq.
const (
	// SubjectObjectsPrefix + "<source>" takes object-created notifications,
	// e.g. imsflow.in.objects.minio; SubjectObjects matches them all.
	SubjectObjectsPrefix = "imsflow.in.objects."
	SubjectObjects       = "imsflow.in.objects.>"
	// SubjectExportRequests takes ExportRequest messages.
	SubjectExportRequests = "imsflow.in.export"
	// SubjectOut matches every output.
	SubjectOut = "imsflow.out.>"
	// SubjectProgress carries optional progress updates.
	SubjectProgress = "imsflow.out.progress"
	// SubjectBatchCompleted carries a batch's totals after its last item.
	SubjectBatchCompleted = "imsflow.out.batch.completed"
	// SubjectJobSubmitted is the hand-off of a submitted IMS job to the poller.
	SubjectJobSubmitted = "imsflow.jobs.submitted"
	// SubjectDLQPrefix + "<function>" takes messages that ran out of deliveries.
	SubjectDLQPrefix = "imsflow.dlq."
)

// Kind says whether an event concerns an import or an export.
type Kind string

// Kinds.
const (
	KindImport Kind = "import"
	KindExport Kind = "export"
	// KindDistribute is one leg of an image's lifecycle after its import:
	// a copy, a share (imsflow.out.distribute.<status>).
	KindDistribute Kind = "distribute"
)

// Status is the outcome an output event reports; its subject is
// imsflow.out.<kind>.<status>.
type Status string

// Outcomes. Stalled is a warning, not an end.
const (
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusTimedOut  Status = "timed_out"
	StatusRejected  Status = "rejected"
	StatusStalled   Status = "stalled"
	// StatusWaiting: an import waits for a companion file (a RAW file's
	// bitmap); not an end.
	StatusWaiting Status = "waiting"
)

// OutSubject returns imsflow.out.<kind>.<status>.
func OutSubject(k Kind, s Status) string { return "imsflow.out." + string(k) + "." + string(s) }

// Header names.
const (
	HeaderMsgID       = "Nats-Msg-Id"
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderContentType = "ce-datacontenttype"
	HeaderSubject     = "ce-subject"
	// HeaderReason carries a dead letter's or rejection's reason.
	HeaderReason = "Imsflow-Reason"

	SpecVersion = "1.0"
	// SourcePrefix + function name is ce-source, e.g. "imsflow/import".
	SourcePrefix = "imsflow/"
)

// Method is how IMS imports or exports.
type Method string

// Methods.
const (
	MethodQuick  Method = "quick"
	MethodNormal Method = "normal"
)

// ImageType is what an import creates.
type ImageType string

// Image types.
const (
	ImageData   ImageType = "data"
	ImageSystem ImageType = "system"
)

// Source is the object an import reads, as the notification described it.
type Source struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	Size      int64  `json:"size"`
	Format    string `json:"format,omitempty"`
	ETag      string `json:"etag,omitempty"`
	VersionID string `json:"version_id,omitempty"`
}

// VersionKey identifies one version of one object: bucket, key and the
// version ID, or the ETag for unversioned objects, or the sequencer when
// neither is known. No two versions share it; an event redelivered or sent
// twice has the same.
func (s Source) VersionKey(sequencer string) string {
	v := s.VersionID
	switch {
	case v != "":
		v = "v:" + v
	case s.ETag != "":
		v = "e:" + s.ETag
	default:
		v = "s:" + sequencer
	}
	return s.Bucket + "\x00" + s.Key + "\x00" + v
}

// Hash returns the hex SHA-256 of s, truncated to n characters (at most 64).
func Hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:min(n, 64)]
}

// ExportRequest asks for one image to be exported (subject imsflow.in.export).
type ExportRequest struct {
	ImageID string `json:"image_id"`
	// BucketURL is "bucket:key"; optional when a default export bucket is configured.
	BucketURL string `json:"bucket_url,omitempty"`
	// FileFormat is qcow2, vhd, zvhd or vmdk (default qcow2; none for a quick export).
	FileFormat string `json:"file_format,omitempty"`
	// Quick is auto (default), true or false.
	Quick     string `json:"quick,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	BatchID   string `json:"batch_id,omitempty"`
}

// Quick export choices.
const (
	QuickAuto  = "auto"
	QuickTrue  = "true"
	QuickFalse = "false"
)

// JobSubmitted hands a submitted IMS job to the poller (subject
// imsflow.jobs.submitted). It carries everything the completion event
// needs, so the poller never looks back at the request.
type JobSubmitted struct {
	JobID       string    `json:"job_id"`
	JobType     string    `json:"job_type,omitempty"`
	Kind        Kind      `json:"kind"`
	Method      Method    `json:"method"`
	ImageID     string    `json:"image_id,omitempty"`
	ImageName   string    `json:"image_name,omitempty"`
	SubmittedAt time.Time `json:"submitted_at"`
	BatchID     string    `json:"batch_id,omitempty"`
	// Import only.
	ImageType ImageType `json:"image_type,omitempty"`
	Source    *Source   `json:"source,omitempty"`
	// Export only.
	BucketURL  string `json:"bucket_url,omitempty"`
	FileFormat string `json:"file_format,omitempty"`
	Quick      bool   `json:"quick,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
	// Slot is the in-flight slot the job holds, released when it ends;
	// SlotRev is the revision that took it, so that the release frees
	// this holding and never a later one under the same name.
	Slot    string `json:"slot,omitempty"`
	SlotRev uint64 `json:"slot_rev,omitempty"`
	// Rule is the label of the routing rule that imported it (imports).
	Rule string `json:"rule,omitempty"`
	// Leg is the lifecycle leg the job runs (KindDistribute).
	Leg *LegRef `json:"leg,omitempty"`
}

// JobFinished is a completed, failed or timed-out job (subjects
// imsflow.out.<kind>.succeeded|failed|timed_out). FinishedAt is IMS's
// end_time, or when the poller saw the end; DurationSeconds is how long the
// job ran, IMS's end_time minus its begin_time, or FinishedAt minus
// SubmittedAt when IMS gave no times.
type JobFinished struct {
	JobID           string    `json:"job_id"`
	JobType         string    `json:"job_type"`
	Kind            Kind      `json:"kind"`
	Status          Status    `json:"status"`
	ImageID         string    `json:"image_id,omitempty"`
	ImageName       string    `json:"image_name,omitempty"`
	Method          Method    `json:"method"`
	ImageType       ImageType `json:"image_type,omitempty"`
	Source          *Source   `json:"source,omitempty"`
	BucketURL       string    `json:"bucket_url,omitempty"`
	FileFormat      string    `json:"file_format,omitempty"`
	Quick           bool      `json:"quick,omitempty"`
	RequestID       string    `json:"request_id,omitempty"`
	SubmittedAt     time.Time `json:"submitted_at"`
	FinishedAt      time.Time `json:"finished_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	Polls           int       `json:"polls"`
	// DetectedAfterSeconds is how long after the job's end (IMS's
	// end_time) the poller saw it; 0 when IMS gave no end time.
	DetectedAfterSeconds float64 `json:"detected_after_seconds,omitempty"`
	ErrorCode            string  `json:"error_code,omitempty"`
	FailReason           string  `json:"fail_reason,omitempty"`
	BatchID              string  `json:"batch_id,omitempty"`
	Rule                 string  `json:"rule,omitempty"`
	Leg                  *LegRef `json:"leg,omitempty"`
}

// Rejected is an input that imsflow will not process, with the reason
// (subjects imsflow.out.<kind>.rejected).
type Rejected struct {
	Kind  Kind   `json:"kind"`
	Stage string `json:"stage"` // decode, route, validate, lookup, submit
	// ReasonCode is stable and machine-readable (ReasonTooLarge, ...).
	ReasonCode string `json:"reason_code"`
	// Reason is a sentence a person can act on.
	Reason  string         `json:"reason"`
	Source  *Source        `json:"source,omitempty"`
	Request *ExportRequest `json:"request,omitempty"`
	// Input is the start of a message that could not be decoded (at most
	// 1 KiB), when there is neither source nor request.
	Input     string    `json:"input,omitempty"`
	ErrorCode string    `json:"error_code,omitempty"` // IMS's, when IMS refused
	BatchID   string    `json:"batch_id,omitempty"`
	At        time.Time `json:"at"`
}

// Waiting says that an import waits for a companion file before it can be
// submitted: a RAW file for its bitmap (subject imsflow.out.import.waiting).
// It is published once, when the wait starts; the import's end follows.
type Waiting struct {
	Kind    Kind    `json:"kind"`
	Source  *Source `json:"source"`
	Reason  string  `json:"reason"`
	Missing string  `json:"missing"` // the companion's key
	// Since is when imsflow first saw the object; Until, when the wait ends
	// (imported normally, or rejected, without the companion).
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	BatchID string    `json:"batch_id,omitempty"`
}

// Type returns io.imsflow.<kind>.waiting.v1.
func (e Waiting) Type() string { return eventType(string(e.Kind), string(StatusWaiting)) }

// Subject returns imsflow.out.<kind>.waiting.
func (e Waiting) Subject() string { return OutSubject(e.Kind, StatusWaiting) }

// ID is deterministic: one waiting event per object version and what it
// waits for (a RAW file may wait for its checksum file, then its bitmap).
func (e Waiting) ID() string {
	return "waiting:" + Hash(e.Source.VersionKey("")+"\x00"+e.Missing, 32)
}

// Stalled warns that a job's progress has not moved for a while (subjects
// imsflow.out.<kind>.stalled). The job stays tracked.
type Stalled struct {
	JobID        string    `json:"job_id"`
	Kind         Kind      `json:"kind"`
	ImageName    string    `json:"image_name,omitempty"`
	Percent      float64   `json:"percent"`
	CurrentTask  string    `json:"current_task,omitempty"`
	StalledSince time.Time `json:"stalled_since"`
	BatchID      string    `json:"batch_id,omitempty"`
}

// Progress is an optional progress update (subject imsflow.out.progress).
type Progress struct {
	JobID       string    `json:"job_id"`
	Kind        Kind      `json:"kind"`
	Percent     float64   `json:"percent"`
	CurrentTask string    `json:"current_task,omitempty"`
	At          time.Time `json:"at"`
}

// BatchCompleted reports a batch's totals once its last item ended
// (subject imsflow.out.batch.completed).
type BatchCompleted struct {
	BatchID   string            `json:"batch_id"`
	Total     int               `json:"total"`
	ByStatus  map[Status]int    `json:"by_status"`
	StartedAt time.Time         `json:"started_at"`
	EndedAt   time.Time         `json:"ended_at"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// DeadLetter wraps a message that exhausted its deliveries (subject
// imsflow.dlq.<function>).
type DeadLetter struct {
	Function   string            `json:"function"`
	Subject    string            `json:"subject"`
	Reason     string            `json:"reason"`
	Deliveries uint64            `json:"deliveries"`
	StreamSeq  uint64            `json:"stream_seq"`
	Headers    map[string]string `json:"headers,omitempty"`
	Data       []byte            `json:"data"`
	At         time.Time         `json:"at"`
}

// Stable rejection reason codes.
const (
	ReasonEmptyFile        = "empty_file"
	ReasonTooLarge         = "too_large"
	ReasonNeedsConversion  = "needs_conversion"
	ReasonMissingBitmap    = "missing_bitmap"
	ReasonISONeedsSystem   = "iso_needs_system_rule"
	ReasonInvalidRequest   = "invalid_request" // a rule IMS documents; the reason names it
	ReasonIMSRefused       = "ims_refused"     // IMS answered with a permanent error
	ReasonUndecodable      = "undecodable"
	ReasonImageNotFound    = "image_not_found"
	ReasonNotActive        = "image_not_active"
	ReasonNotPrivate       = "image_not_private"
	ReasonWholeImage       = "whole_image"
	ReasonISOImage         = "iso_image"
	ReasonExportTooLarge   = "export_too_large"
	ReasonNeedsQuickExport = "needs_quick_export"
	ReasonEncryptedQuick   = "encrypted_quick_export"
	ReasonNoBucket         = "no_bucket"
	ReasonFormatMismatch   = "format_mismatch" // the content contradicts the extension
	ReasonObjectMissing    = "object_missing"  // gone from the bucket before it was read

	// What a rule verifies before IMS is called (the import's "verify" stage).
	ReasonChecksumMismatch = "checksum_mismatch" // the content's SHA-256 is not the one given
	ReasonChecksumMissing  = "checksum_missing"  // a rule requires a checksum and none came in time
	ReasonChecksumInvalid  = "checksum_invalid"  // the checksum given is no SHA-256
	ReasonStorageClass     = "storage_class"     // not in the Standard storage class, which IMS needs
)

// Typed event type strings (ce-type).
func eventType(kind string, status string) string {
	return "io.imsflow." + kind + "." + status + ".v1"
}

// Type returns the event's ce-type, e.g. io.imsflow.import.succeeded.v1.
func (e JobFinished) Type() string { return eventType(string(e.Kind), string(e.Status)) }

// Subject returns imsflow.out.<kind>.<status>.
func (e JobFinished) Subject() string { return OutSubject(e.Kind, e.Status) }

// ID is deterministic: one completion per job.
func (e JobFinished) ID() string { return "job:" + e.JobID + ":" + string(e.Status) }

// Type returns io.imsflow.<kind>.rejected.v1.
func (e Rejected) Type() string { return eventType(string(e.Kind), string(StatusRejected)) }

// Subject returns imsflow.out.<kind>.rejected.
func (e Rejected) Subject() string { return OutSubject(e.Kind, StatusRejected) }

// ID is deterministic per rejected input: the object version, or the
// export request (its request_id, else its content).
func (e Rejected) ID() string {
	switch {
	case e.Source != nil:
		return "rejected:" + Hash(e.Source.VersionKey(""), 32)
	case e.Request != nil && e.Request.RequestID != "":
		return "rejected:req:" + e.Request.RequestID
	case e.Request != nil:
		r := e.Request
		return "rejected:" + Hash(strings.Join([]string{r.ImageID, r.BucketURL, r.FileFormat, r.Quick, r.BatchID}, "\x00"), 32)
	case e.Input != "":
		return "rejected:input:" + Hash(e.Input, 32)
	}
	return "rejected:" + Hash(e.Stage+"\x00"+e.Reason, 32)
}

// Type returns io.imsflow.<kind>.stalled.v1.
func (e Stalled) Type() string { return eventType(string(e.Kind), string(StatusStalled)) }

// Subject returns imsflow.out.<kind>.stalled.
func (e Stalled) Subject() string { return OutSubject(e.Kind, StatusStalled) }

// ID is deterministic: one stall warning per job.
func (e Stalled) ID() string { return "job:" + e.JobID + ":stalled" }

// Type returns io.imsflow.progress.v1.
func (e Progress) Type() string { return "io.imsflow.progress.v1" }

// Subject returns imsflow.out.progress.
func (e Progress) Subject() string { return SubjectProgress }

// ID is one per job and percentage point.
func (e Progress) ID() string {
	return "job:" + e.JobID + ":progress:" + strconv.Itoa(int(e.Percent*100))
}

// Type returns io.imsflow.batch.completed.v1.
func (e BatchCompleted) Type() string { return "io.imsflow.batch.completed.v1" }

// Subject returns imsflow.out.batch.completed.
func (e BatchCompleted) Subject() string { return SubjectBatchCompleted }

// ID is one per batch.
func (e BatchCompleted) ID() string { return "batch:" + e.BatchID + ":completed" }

// Type returns io.imsflow.job.submitted.v1.
func (e JobSubmitted) Type() string { return "io.imsflow.job.submitted.v1" }

// Subject returns imsflow.jobs.submitted.
func (e JobSubmitted) Subject() string { return SubjectJobSubmitted }

// ID is one hand-off per job.
func (e JobSubmitted) ID() string { return "job:" + e.Ref() + ":submitted" }

// Ref is the job's one identity, used alike for its message IDs, the
// poller's state and the job_id of its events: the IMS job ID, or, for a
// job IMS gave no ID for (an earlier attempt's, found again), what it is
// known by: "image:<id>" for an import found by its image,
// "export:<hash of image and target>" for an export found by its target.
func (e JobSubmitted) Ref() string {
	switch {
	case e.JobID != "":
		return e.JobID
	case e.Kind == KindExport:
		return "export:" + Hash(e.ImageID+"\x00"+e.BucketURL, 32)
	}
	return "image:" + e.ImageID
}

// Event is what the binding publishes: a typed body with its subject,
// CloudEvents type and deterministic ID.
type Event interface {
	Type() string
	Subject() string
	ID() string
}

var (
	_ Event = JobFinished{}
	_ Event = Rejected{}
	_ Event = Stalled{}
	_ Event = Waiting{}
	_ Event = Progress{}
	_ Event = BatchCompleted{}
	_ Event = JobSubmitted{}
)

// CEHeaders returns the CloudEvents binary-mode headers and Nats-Msg-Id of
// e, published by function at t (as map[string][]string, which nats.Header is).
func CEHeaders(e Event, function string, t time.Time) map[string][]string {
	return map[string][]string{
		HeaderMsgID:       {e.ID()},
		HeaderSpecVersion: {SpecVersion},
		HeaderID:          {e.ID()},
		HeaderType:        {e.Type()},
		HeaderSource:      {SourcePrefix + function},
		HeaderTime:        {t.UTC().Format(time.RFC3339Nano)},
		HeaderContentType: {"application/json"},
	}
}
