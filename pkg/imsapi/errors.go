package imsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Sentinel errors callers branch on with [errors.Is]. An [*APIError] matches
// the ones that fit its status and code.
var (
	// ErrNotFound: HTTP 404, or IMS's "image does not exist" (IMG.0027, IMG.0144).
	ErrNotFound = errors.New("imsapi: not found")
	// ErrThrottled: the gateway's rate limit (HTTP 429, APIGW.0308) or IMS's
	// own flow control answered with HTTP 400 (IMG.0060 task flow control,
	// IMG.0194 too many imports at once, IMG.0187 KMS traffic limit). Wait and retry.
	ErrThrottled = errors.New("imsapi: throttled")
	// ErrUnauthorized: HTTP 401 or 403, bad credentials or missing permission.
	ErrUnauthorized = errors.New("imsapi: unauthorized")
	// ErrInvalidArgument: a request was refused before any I/O because it
	// breaks a documented rule; see [ValidationError].
	ErrInvalidArgument = errors.New("imsapi: invalid argument")
)

// Throttling and error codes named in the IMS and API gateway documentation.
const (
	CodeGatewayThrottled  = "APIGW.0308"
	CodeGatewayAuth       = "APIGW.0301"
	CodeGatewayExpired    = "APIGW.0303"
	CodeFlowControl       = "IMG.0060"
	CodeTooManyImports    = "IMG.0194"
	CodeKMSFlowControl    = "IMG.0187"
	CodeImageNotExist     = "IMG.0027"
	CodeImageNotExistAlt  = "IMG.0144"
	maxErrorBody          = 1 << 20
	maxErrorMessageLength = 512
)

// APIError is returned for every answer with a status other than 2xx.
// Inspect it with [errors.As], or branch with [errors.Is] on [ErrNotFound],
// [ErrThrottled] and [ErrUnauthorized].
type APIError struct {
	Method     string // HTTP method of the request
	Path       string // request path, without query
	StatusCode int
	Code       string // "IMG.0059", "APIGW.0308", ... ("" when the body had none)
	Message    string
	RequestID  string // quote this to Huawei Cloud support
	// RetryAfter is the server's Retry-After, zero when it sent none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "imsapi: %s %s: %d", e.Method, e.Path, e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	return b.String()
}

// Throttled reports whether the service asked the caller to slow down.
func (e *APIError) Throttled() bool {
	switch normalizeCode(e.Code) {
	case CodeGatewayThrottled, CodeFlowControl, CodeTooManyImports, CodeKMSFlowControl:
		return true
	}
	return e.StatusCode == http.StatusTooManyRequests
}

// Retryable reports whether the same request may succeed later: throttling
// (see [APIError.Throttled]), HTTP 408, and 5xx but 501 and 505.
func (e *APIError) Retryable() bool {
	switch e.StatusCode {
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return e.Throttled() || e.StatusCode == http.StatusRequestTimeout || e.StatusCode >= 500
}

// Is makes errors.Is(err, ErrNotFound / ErrThrottled / ErrUnauthorized) hold
// for the answers that mean it.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		c := normalizeCode(e.Code)
		return e.StatusCode == http.StatusNotFound || c == CodeImageNotExist || c == CodeImageNotExistAlt
	case ErrThrottled:
		return e.Throttled()
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
	}
	return false
}

// normalizeCode maps the gateway's alternative prefix APIG. onto APIGW.
func normalizeCode(code string) string {
	if rest, ok := strings.CutPrefix(code, "APIG."); ok {
		return "APIGW." + rest
	}
	return code
}

// TransportError is returned when no HTTP answer arrived: the connection
// failed, was reset, or the request timed out.
type TransportError struct {
	Method string
	Path   string
	Err    error
	// MaybeApplied is true when the request may have reached IMS before the
	// failure (anything but a refused or failed dial). A submission that
	// ends this way may have started a job: look for it before submitting
	// again.
	MaybeApplied bool
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("imsapi: %s %s: %v", e.Method, e.Path, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Retryable reports whether repeating the request may succeed: true unless
// the caller cancelled it.
func (e *TransportError) Retryable() bool { return !errors.Is(e.Err, context.Canceled) }

// IsRetryable reports whether err, from any method of [Client], is worth
// retrying with the same request: throttling, 408 and 5xx answers, network
// failures and timeouts. Validation errors, other 4xx answers, decoding
// errors and cancellation are permanent.
func IsRetryable(err error) bool {
	if apiErr, ok := errors.AsType[*APIError](err); ok {
		return apiErr.Retryable()
	}
	if tErr, ok := errors.AsType[*TransportError](err); ok {
		return tErr.Retryable()
	}
	return false
}

// MaybeApplied reports whether a failed submission (a POST, or the PUT and
// DELETE of the member and image-delete APIs) may have taken effect all the
// same: the connection broke after the request may have reached IMS, or the
// gateway answered 408 or 5xx, which it can do after IMS accepted the job.
// Before submitting again, look for the job's image (by its name or a tag),
// or the same image may be created twice. A failed GET never applied
// anything.
func MaybeApplied(err error) bool {
	if tErr, ok := errors.AsType[*TransportError](err); ok {
		return tErr.MaybeApplied && writes(tErr.Method)
	}
	if apiErr, ok := errors.AsType[*APIError](err); ok {
		return writes(apiErr.Method) && !apiErr.Throttled() &&
			(apiErr.StatusCode == http.StatusRequestTimeout || apiErr.StatusCode >= 500)
	}
	return errors.Is(err, ErrNoJobID)
}

// writes reports whether a request of method may change state at IMS.
func writes(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
		return true
	}
	return false
}

// RetryAfter returns the delay the service asked for in a Retry-After
// header, and false when err carries none.
func RetryAfter(err error) (time.Duration, bool) {
	if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.RetryAfter > 0 {
		return apiErr.RetryAfter, true
	}
	return 0, false
}

// ThrottleDelay reports whether err asks the caller to slow down
// ([ErrThrottled]) and how long to wait: the Retry-After IMS sent, else
// fallback.
func ThrottleDelay(err error, fallback time.Duration) (time.Duration, bool) {
	if !errors.Is(err, ErrThrottled) {
		return 0, false
	}
	if d, ok := RetryAfter(err); ok {
		return d, true
	}
	return fallback, true
}

// newAPIError builds the error for a non-2xx response, reading at most 1 MiB
// of its body. Both IMS's {"error":{"code","message"}} and the gateway's
// {"error_code","error_msg","request_id"} bodies are understood, and so are
// other nestings, as Huawei's SDK does.
func newAPIError(method, path string, resp *http.Response, now time.Time) *APIError {
	e := &APIError{Method: method, Path: path, StatusCode: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var doc any
	if json.Unmarshal(body, &doc) == nil {
		e.Code, e.Message, e.RequestID = findErrorFields(doc, 0)
	} else if text := strings.TrimSpace(string(body)); text != "" {
		e.Message = text
	}
	if e.Message == "" {
		e.Message = strings.ToLower(http.StatusText(resp.StatusCode))
	}
	if len(e.Message) > maxErrorMessageLength {
		cut := maxErrorMessageLength
		for cut > 0 && !utf8.RuneStart(e.Message[cut]) {
			cut--
		}
		e.Message = e.Message[:cut] + "..."
	}
	if e.RequestID == "" {
		e.RequestID = resp.Header.Get(HeaderRequestID)
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	return e
}

// findErrorFields looks for error_code/error_msg, then code/message, first at
// the top level and then in nested objects, depth first.
func findErrorFields(v any, depth int) (code, msg, requestID string) {
	obj, ok := v.(map[string]any)
	if !ok || depth > 4 {
		return "", "", ""
	}
	requestID, _ = obj["request_id"].(string)
	str := func(k string) string { s, _ := obj[k].(string); return s }
	if c, m := str("error_code"), str("error_msg"); c != "" || m != "" {
		return c, m, requestID
	}
	if c, m := str("code"), str("message"); c != "" || m != "" {
		return c, m, requestID
	}
	keys := slices.Sorted(maps.Keys(obj))
	if _, ok := obj["error"]; ok { // IMS's own envelope first
		keys = append([]string{"error"}, keys...)
	}
	for _, k := range keys {
		if c, m, r := findErrorFields(obj[k], depth+1); c != "" || m != "" {
			if r == "" {
				r = requestID
			}
			return c, m, r
		}
	}
	return "", "", requestID
}

// parseRetryAfter reads a Retry-After value in seconds or as an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if s > 0 {
			return time.Duration(s) * time.Second
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// neverSent reports whether a transport failure happened before the request
// could reach the server.
func neverSent(err error) bool {
	if opErr, ok := errors.AsType[*net.OpError](err); ok && opErr.Op == "dial" {
		return true
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
