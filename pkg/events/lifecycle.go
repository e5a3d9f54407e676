package events

import (
	"strconv"
	"time"
)

// Subjects of image lifecycles (see internal/lifecycle).
const (
	// SubjectLifecycleRetry takes LifecycleRetry requests: run one failed
	// leg of a lifecycle again, alone.
	SubjectLifecycleRetry = "imsflow.in.lifecycle.retry"
	// SubjectLifecyclePrefix + <status> carries LifecycleCompleted.
	SubjectLifecyclePrefix = "imsflow.out.lifecycle."
)

// LegRef names one run of a lifecycle leg: the lifecycle's ID, the leg's
// name (copy, replicate:<region>, share:<region> ...), its attempt and
// the region whose IMS runs the job.
type LegRef struct {
	Lifecycle string `json:"lifecycle"`
	Leg       string `json:"leg"`
	Attempt   int    `json:"attempt"`
	Region    string `json:"region,omitempty"`
}

// LifecycleRetry asks for one failed or refused leg of a lifecycle to run
// again (subject imsflow.in.lifecycle.retry).
type LifecycleRetry struct {
	Lifecycle string `json:"lifecycle"`
	Leg       string `json:"leg"`
	// RequestID names the request (default: a new one per message).
	RequestID string `json:"request_id,omitempty"`
}

// LifecycleLeg is how one leg ended, in a LifecycleCompleted.
type LifecycleLeg struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Attempt   int    `json:"attempt"`
	ImageID   string `json:"image_id,omitempty"`
	JobID     string `json:"job_id,omitempty"`
	Reason    string `json:"reason,omitempty"`
	ErrorCode string `json:"error_code,omitempty"`
}

// LifecycleCompleted is the whole picture of an image's lifecycle once no
// leg can move (subjects imsflow.out.lifecycle.succeeded|failed): the image
// in every region, who it is shared with, the tags set, the family's
// latest pointer, what retention removed, and every leg. A retry after a
// failure ends in a new one (its Generation is one more).
type LifecycleCompleted struct {
	Lifecycle  string              `json:"lifecycle"`
	Status     Status              `json:"status"` // succeeded or failed
	Generation int                 `json:"generation"`
	Rule       string              `json:"rule"`
	Family     string              `json:"family"`
	Source     *Source             `json:"source,omitempty"`
	Images     map[string]string   `json:"images"`           // region: image ID
	SharedWith map[string][]string `json:"shared,omitempty"` // region: members
	Tags       map[string]string   `json:"tags,omitempty"`
	Latest     bool                `json:"latest"`            // the family's latest pointer now names these images
	Removed    map[string][]string `json:"removed,omitempty"` // region: image IDs retention deleted
	SourceGone bool                `json:"source_deleted,omitempty"`
	Legs       []LifecycleLeg      `json:"legs"`
	BatchID    string              `json:"batch_id,omitempty"`
	At         time.Time           `json:"at"`
}

// Type implements Event.
func (e LifecycleCompleted) Type() string { return eventType("lifecycle", string(e.Status)) }

// Subject implements Event.
func (e LifecycleCompleted) Subject() string { return SubjectLifecyclePrefix + string(e.Status) }

// ID implements Event: one per lifecycle, generation and outcome.
func (e LifecycleCompleted) ID() string {
	return "lifecycle:" + e.Lifecycle + ":" + strconv.Itoa(e.Generation) + ":" + string(e.Status)
}

var _ Event = LifecycleCompleted{}
