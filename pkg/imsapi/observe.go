package imsapi

import (
	"fmt"
	"time"
)

// Operation names, one per API operation the client calls: the
// Operation of an [Observation], the same names the emulator (imsemu)
// counts its requests by. [Client.Image] is a ListImages call.
const (
	OpQuickImport     = "quick_import"
	OpDataImageImport = "data_image_import"
	OpImageImport     = "image_import"
	OpExport          = "export"
	OpJobProgress     = "job_progress"
	OpJob             = "job"
	OpListImages      = "list_images"
	OpOSVersions      = "os_versions"
	OpQuota           = "quota"
	// The distribution operations (distribution.go).
	OpCopyCrossRegion = "copy_cross_region"
	OpCopyInRegion    = "copy_in_region"
	OpAddMembers      = "add_members"
	OpUpdateMembers   = "update_members"
	OpDeleteMembers   = "delete_members"
	OpListMembers     = "list_members"
	OpTags            = "tags"
	OpDeleteImage     = "delete_image"
)

// Observation is what the client tells the observer given with
// [WithObserver] about one request: its operation, how it ended and how
// long it took. It names no path, ID or credential, so that it can feed
// metrics as it is.
type Observation struct {
	// Operation is one of the Op constants.
	Operation string
	// Sent is false when the request never left: the context ended while
	// it waited for the rate limiter (Wait says how long it waited).
	Sent bool
	// StatusCode is the answer's HTTP status; 0 when none arrived (a
	// connection refused, reset or timed out: Err is a *TransportError).
	StatusCode int
	// Duration is from sending the request to its answer (or failure),
	// without the rate limiter's wait.
	Duration time.Duration
	// Wait is how long the request waited for the client's rate limiter.
	Wait time.Duration
	// Err is what the call returns: nil for a 2xx answer decoded, else an
	// *APIError, a *TransportError or a decoding error.
	Err error
}

// WithObserver makes the client call observe after each request it sends
// (or gives up sending while it waits for the rate limiter), from the
// calling goroutine; observe must return at once. imsflow counts IMS
// requests, their latency and throttling with it.
func WithObserver(observe func(Observation)) Option {
	return func(c *Client) error {
		if observe == nil {
			return fmt.Errorf("%w: nil observer", ErrInvalidArgument)
		}
		c.observe = observe
		return nil
	}
}
