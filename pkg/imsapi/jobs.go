package imsapi

import (
	"context"
	"fmt"
	"net/http"
)

// JobStatus is the state of an asynchronous IMS job. Values other than the
// four documented ones are kept as they come.
type JobStatus string

// Documented job states; only JobSuccess and JobFail are terminal.
const (
	JobInit    JobStatus = "INIT"
	JobRunning JobStatus = "RUNNING"
	JobSuccess JobStatus = "SUCCESS"
	JobFail    JobStatus = "FAIL"
)

// Done reports whether the job has ended (SUCCESS or FAIL).
func (s JobStatus) Done() bool { return s == JobSuccess || s == JobFail }

// Known reports whether s is one of the four documented states.
func (s JobStatus) Known() bool {
	return s == JobInit || s == JobRunning || s == JobSuccess || s == JobFail
}

// Job types documented by IMS. Others, such as the unknown type of a quick
// import, are accepted as they come.
const (
	JobTypeImportImage     = "imsImportImageJob"       // system disk from a file
	JobTypeImportDataImage = "imsImportDataImageJob"   // data disk from a file
	JobTypeExportImage     = "imsNativeExportImageJob" // export

	JobTypeCrossRegionCopy = "imsCrossRegionCopyImageJob" // CopyImageCrossRegion
	JobTypeCopyInRegion    = "imsCopyImageInRegionJob"    // CopyImageInRegion
	JobTypeAddMembers      = "imsAddImageMembersJob"      // BatchAddMembers
	JobTypeUpdateMembers   = "imsUpdateImageMembersJob"   // BatchUpdateMembers
	JobTypeDeleteMembers   = "imsDelImageMembersJob"      // BatchDeleteMembers
)

// Job is an asynchronous IMS job, as both job APIs report it.
type Job struct {
	JobID     string    `json:"job_id"`
	JobType   string    `json:"job_type"`
	Status    JobStatus `json:"status"`
	BeginTime Timestamp `json:"begin_time"`
	EndTime   Timestamp `json:"end_time"`
	// ErrorCode and FailReason explain a FAIL; empty (null) otherwise.
	ErrorCode  FlexString  `json:"error_code"`
	FailReason FlexString  `json:"fail_reason"`
	Entities   JobEntities `json:"entities"`
}

// Progress returns entities.process_percent, a fraction from 0 to 1, and
// false when the answer had none.
func (j *Job) Progress() (float64, bool) {
	if j.Entities.ProcessPercent == nil {
		return 0, false
	}
	return *j.Entities.ProcessPercent, true
}

// JobEntities are a job's details. Import jobs name the new image, export
// jobs the source image.
type JobEntities struct {
	ImageID   string `json:"image_id,omitempty"`
	ImageName string `json:"image_name,omitempty"`
	// ProcessPercent is a fraction from 0 to 1 (not a percentage).
	ProcessPercent *float64 `json:"process_percent,omitempty"`
	// CurrentTask is e.g. "ImportImageTask:ObtainImageInfoTask"; "" when done.
	CurrentTask string `json:"current_task,omitempty"`
	// SubJobID is the camelCase "subJobId" of import jobs (progress API).
	SubJobID      string         `json:"subJobId,omitempty"`
	SubJobsResult []SubJobResult `json:"sub_jobs_result,omitempty"`
	SubJobsList   []string       `json:"sub_jobs_list,omitempty"`
	// The fields below are in Huawei's SDK models only; when IMS fills them
	// is not documented.
	Results           any        `json:"results,omitempty"`
	AdditionErrorCode FlexString `json:"addition_error_code,omitempty"`
	AdditionErrorMsg  FlexString `json:"addition_error_msg,omitempty"`
	ErrorCode         FlexString `json:"error_code,omitempty"`
	Error             FlexString `json:"error,omitempty"`
	AlarmCode         FlexString `json:"alarm_code,omitempty"`
}

// SubJobResult is one entry of entities.sub_jobs_result.
type SubJobResult struct {
	JobID      string     `json:"job_id"`
	JobType    string     `json:"job_type"`
	Status     JobStatus  `json:"status"`
	BeginTime  Timestamp  `json:"begin_time"`
	EndTime    Timestamp  `json:"end_time"`
	ErrorCode  FlexString `json:"error_code"`
	FailReason FlexString `json:"fail_reason"`
	Entities   struct {
		ImageID   string `json:"image_id,omitempty"`
		ImageName string `json:"image_name,omitempty"`
	} `json:"entities"`
}

// JobProgress returns a job's state and progress (ShowJobProgress), the
// recommended job API. It returns an error wrapping [ErrInvalidArgument] for
// a malformed ID, an [*APIError] (errors.Is [ErrNotFound] for an unknown
// job), or a [*TransportError].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0911.html
//
//meta:operation GET /v1/cloudimages/job/{job_id}
func (c *Client) JobProgress(ctx context.Context, jobID string) (*Job, error) {
	return c.getJob(ctx, OpJobProgress, jobID, "/v1/cloudimages/job/"+jobID, false)
}

// Job returns a job's state (ShowJob), the older job API under the project
// path, documented as deprecated in favour of [Client.JobProgress]. It needs
// the project ID ([WithProjectID]). Errors as for [Client.JobProgress].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0905_1.html
//
//meta:operation GET /v1/{project_id}/jobs/{job_id}
func (c *Client) Job(ctx context.Context, jobID string) (*Job, error) {
	return c.getJob(ctx, OpJob, jobID, fmt.Sprintf("/v1/%s/jobs/%s", c.projectID, jobID), true)
}

func (c *Client) getJob(ctx context.Context, op, jobID, path string, needsProject bool) (*Job, error) {
	var v validator
	v.id("job_id", jobID)
	if needsProject && c.projectID == "" {
		v.add("project_id", "required", "IMG.0001", "is required for GET /v1/{project_id}/jobs/{job_id}; configure it with WithProjectID")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var job Job
	if err := c.do(ctx, op, http.MethodGet, path, nil, nil, &job); err != nil {
		return nil, err
	}
	return &job, nil
}
