// Package imsapi is a typed client of Huawei Cloud's Image Management
// Service (IMS) API: the image-file imports, export, job queries, image
// lookup, OS version catalogue and quota that imsflow needs, and the copies,
// sharing, tags and deletion that distribute an image afterwards.
//
// # Use
//
//	c, err := imsapi.New("https://ims.cn-north-4.myhuaweicloud.com",
//		imsapi.AKSK{AccessKey: ak, SecretKey: imsapi.Secret(sk)},
//		imsapi.WithProjectID(projectID),
//		imsapi.WithRateLimit(5, 5))
//	ref, err := c.QuickImport(ctx, &imsapi.QuickImportRequest{
//		Name: "web-01", ImageURL: "images:web-01.zvhd2", MinDisk: 40,
//		OSVersion: "Ubuntu 22.04 server 64bit"})
//	job, err := c.JobProgress(ctx, ref.JobID)
//
// One method per operation, each with typed request and response structs
// whose JSON names are IMS's own:
//
//	QuickImport      POST /v2/cloudimages/quickimport/action
//	ImportDataImage  POST /v1/cloudimages/dataimages/action
//	ImportImage      POST /v2/cloudimages/action (system disk from a file)
//	ExportImage      POST /v1/cloudimages/{image_id}/file
//	JobProgress      GET  /v1/cloudimages/job/{job_id}
//	Job              GET  /v1/{project_id}/jobs/{job_id}
//	ListImages       GET  /v2/cloudimages (also AllImages, Image)
//	ListOSVersions   GET  /v1/cloudimages/os_version
//	Quota            GET  /v1/cloudimages/quota
//
// and, once an image is imported, its distribution (distribution.go):
//
//	CopyImageCrossRegion  POST   /v1/cloudimages/{image_id}/cross_region_copy
//	CopyImageInRegion     POST   /v1/cloudimages/{image_id}/copy
//	BatchAddMembers       POST   /v1/cloudimages/members
//	BatchUpdateMembers    PUT    /v1/cloudimages/members (by the recipient)
//	BatchDeleteMembers    DELETE /v1/cloudimages/members
//	ListImageMembers      GET    /v2/images/{image_id}/members
//	BatchAddOrDeleteTags  POST   /v2/{project_id}/images/{image_id}/tags/action
//	GlanceDeleteImage     DELETE /v2/images/{image_id}
//
// A client talks to one region: its endpoint, which may carry a path
// prefix (signed with the rest of the path), and its project ID.
//
// # Authentication
//
// [AKSK] signs every request with SDK-HMAC-SHA256 ([Signer]); temporary
// keys add a signed X-Security-Token. [Token] sends an IAM token in
// X-Auth-Token instead. [WithProjectID] adds X-Project-Id. Secrets are of
// type [Secret], which never prints. The package reads no environment
// variables and never logs: the command layer does both.
//
// # Errors
//
// Arguments are checked before any I/O against IMS's documented rules;
// every broken rule is a [*ValidationError] (errors.Is [ErrInvalidArgument]),
// carrying the IMS code the service would have answered. A non-2xx answer is
// an [*APIError] with status, code, message and request ID, parsed from
// IMS's {"error":{"code","message"}} and the gateway's
// {"error_code","error_msg","request_id"} bodies. A failure without an
// answer is a [*TransportError]. [IsRetryable] tells which are worth
// repeating (throttling 429 APIGW.0308, 400 IMG.0060/IMG.0194/IMG.0187,
// 408, 5xx, network errors, timeouts); [MaybeApplied] tells whether a
// failed submission may have started a job all the same; [RetryAfter]
// gives the server's requested delay. errors.Is works with [ErrNotFound], [ErrThrottled] and
// [ErrUnauthorized].
//
// The client never retries by itself: retrying at two levels multiplies
// load exactly when IMS is throttling. It does limit its own request rate
// ([WithRateLimit], [WithRateLimiter]; default [DefaultRateLimit] per second),
// shared by all goroutines using it, so a busy process stays under the
// configured rate instead of provoking throttling.
//
// # Observing
//
// [WithObserver] hands every request's [Observation] (operation, status,
// latency, rate-limiter wait, error) to a function of the caller's:
// imsflow's metrics come from it, and the package itself imports no
// metrics library.
package imsapi
