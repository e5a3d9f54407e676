package imsapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAPIErrors is the typed-error table: per status code and body shape,
// what the caller sees.
func TestAPIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		want      APIError // Method and Path are filled in
		retryable bool
		is        []error // sentinels errors.Is must match
		isNot     []error // and must not
	}{
		{
			name:   "ims body",
			status: 400, header: map[string]string{"X-Request-Id": "req-1"},
			body:  `{"error":{"message":"The file is too large.","code":"IMG.0059"}}`,
			want:  APIError{StatusCode: 400, Code: "IMG.0059", Message: "The file is too large.", RequestID: "req-1"},
			isNot: []error{ErrNotFound, ErrThrottled, ErrUnauthorized},
		},
		{
			name:   "gateway throttling with request id in body and Retry-After seconds",
			status: 429, header: map[string]string{"Retry-After": "3", "X-Request-Id": "header-id"},
			body:      `{"error_msg":"The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second","error_code":"APIGW.0308","request_id":"body-id"}`,
			want:      APIError{StatusCode: 429, Code: "APIGW.0308", Message: "The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second", RequestID: "body-id", RetryAfter: 3 * time.Second},
			retryable: true,
			is:        []error{ErrThrottled},
		},
		{
			name:   "gateway throttling with the APIG prefix",
			status: 429, body: `{"error_msg":"over ratelimit","error_code":"APIG.0308","request_id":"r"}`,
			want:      APIError{StatusCode: 429, Code: "APIG.0308", Message: "over ratelimit", RequestID: "r"},
			retryable: true, is: []error{ErrThrottled},
		},
		{
			name:   "ims task flow control",
			status: 400, body: `{"error":{"message":"flow control","code":"IMG.0060"}}`,
			want:      APIError{StatusCode: 400, Code: "IMG.0060", Message: "flow control"},
			retryable: true, is: []error{ErrThrottled},
		},
		{
			name:   "too many imports at once",
			status: 400, body: `{"error":{"message":"too many import jobs","code":"IMG.0194"}}`,
			want:      APIError{StatusCode: 400, Code: "IMG.0194", Message: "too many import jobs"},
			retryable: true, is: []error{ErrThrottled},
		},
		{
			name:   "kms traffic limit",
			status: 400, body: `{"error":{"message":"kms flow control","code":"IMG.0187"}}`,
			want:      APIError{StatusCode: 400, Code: "IMG.0187", Message: "kms flow control"},
			retryable: true, is: []error{ErrThrottled},
		},
		{
			name: "404 without body", status: 404,
			want: APIError{StatusCode: 404, Message: "not found"},
			is:   []error{ErrNotFound}, isNot: []error{ErrThrottled},
		},
		{
			name: "image does not exist", status: 400,
			body: `{"error":{"message":"The image does not exist.","code":"IMG.0027"}}`,
			want: APIError{StatusCode: 400, Code: "IMG.0027", Message: "The image does not exist."},
			is:   []error{ErrNotFound},
		},
		{
			name: "image does not exist, other code", status: 400,
			body: `{"error":{"message":"no such image","code":"IMG.0144"}}`,
			want: APIError{StatusCode: 400, Code: "IMG.0144", Message: "no such image"},
			is:   []error{ErrNotFound},
		},
		{
			name: "auth failed", status: 401,
			body: `{"error_msg":"Incorrect IAM authentication information: verify aksk signature fail","error_code":"APIGW.0301","request_id":"x"}`,
			want: APIError{StatusCode: 401, Code: "APIGW.0301", Message: "Incorrect IAM authentication information: verify aksk signature fail", RequestID: "x"},
			is:   []error{ErrUnauthorized},
		},
		{
			name: "no permission", status: 403,
			body: `{"error":{"message":"Invalid role or no real-name authentication.","code":"IMG.0026"}}`,
			want: APIError{StatusCode: 403, Code: "IMG.0026", Message: "Invalid role or no real-name authentication."},
			is:   []error{ErrUnauthorized},
		},
		{
			name: "html 500", status: 500, body: "<html><body>Internal Server Error</body></html>",
			want:      APIError{StatusCode: 500, Message: "<html><body>Internal Server Error</body></html>"},
			retryable: true,
		},
		{
			name: "503 with Retry-After date", status: 503,
			header:    map[string]string{"Retry-After": testNow.Add(10 * time.Second).Format(http.TimeFormat)},
			want:      APIError{StatusCode: 503, Message: "service unavailable", RetryAfter: 10 * time.Second},
			retryable: true,
		},
		{
			name: "502 empty", status: 502,
			want: APIError{StatusCode: 502, Message: "bad gateway"}, retryable: true,
		},
		{
			name: "501 is permanent", status: 501,
			want: APIError{StatusCode: 501, Message: "not implemented"},
		},
		{
			name: "408", status: 408,
			want: APIError{StatusCode: 408, Message: "request timeout"}, retryable: true,
		},
		{
			name: "top-level code and message", status: 400,
			body: `{"code":"IMG.0001","message":"bad request"}`,
			want: APIError{StatusCode: 400, Code: "IMG.0001", Message: "bad request"},
		},
		{
			name: "nested elsewhere", status: 400,
			body: `{"badRequest":{"code":"IMG.0017","message":"The URL is invalid."}}`,
			want: APIError{StatusCode: 400, Code: "IMG.0017", Message: "The URL is invalid."},
		},
		{
			name: "long text is cut", status: 500, body: strings.Repeat("x", 2<<20),
			want:      APIError{StatusCode: 500, Message: strings.Repeat("x", maxErrorMessageLength) + "..."},
			retryable: true,
		},
		{
			name: "long text is cut between characters", status: 500, body: "x" + strings.Repeat("é", 1000),
			want:      APIError{StatusCode: 500, Message: "x" + strings.Repeat("é", (maxErrorMessageLength-1)/2) + "..."},
			retryable: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, slot := setup(t, testAKSK())
			slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			_, err := c.Quota(t.Context())
			apiErr, ok := errors.AsType[*APIError](err)
			if !ok {
				t.Fatalf("error %v (%T), want *APIError", err, err)
			}
			want := tt.want
			want.Method, want.Path = http.MethodGet, "/v1/cloudimages/quota"
			if *apiErr != want {
				t.Errorf("got  %+v\nwant %+v", *apiErr, want)
			}
			if got := IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retryable)
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = false", target)
				}
			}
			for _, target := range tt.isNot {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = true", target)
				}
			}
			if d, ok := RetryAfter(err); ok != (want.RetryAfter > 0) || d != want.RetryAfter {
				t.Errorf("RetryAfter = %v, %v; want %v", d, ok, want.RetryAfter)
			}
			for _, secret := range []string{testSK, "Signature="} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals %q", err, secret)
				}
			}
		})
	}
}

func TestAPIErrorMessage(t *testing.T) {
	t.Parallel()
	e := &APIError{Method: "POST", Path: "/v2/cloudimages/action", StatusCode: 400, Code: "IMG.0059", Message: "file too large", RequestID: "abc"}
	want := "imsapi: POST /v2/cloudimages/action: 400 IMG.0059: file too large (request abc)"
	if got := e.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestTransportErrors: failures without an answer are *TransportError,
// retryable unless cancelled, and say whether the request may have reached
// the server.
func TestTransportErrors(t *testing.T) {
	t.Parallel()

	t.Run("connection refused never reached the server", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		c, err := New("http://"+addr, testAKSK())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ImportDataImage(t.Context(), &DataImageRequest{Name: "d", ImageURL: "bkt:d.qcow2", MinDisk: 40})
		te, ok := errors.AsType[*TransportError](err)
		if !ok || te.MaybeApplied || !IsRetryable(err) {
			t.Errorf("got %v (%+v), want a retryable TransportError with MaybeApplied false", err, te)
		}
	})

	t.Run("connection dropped after the request may have been applied", func(t *testing.T) {
		t.Parallel()
		c, slot := setup(t, testAKSK())
		slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			_ = conn.Close()
		})
		_, err := c.ImportDataImage(t.Context(), &DataImageRequest{Name: "d", ImageURL: "bkt:d.qcow2", MinDisk: 40})
		te, ok := errors.AsType[*TransportError](err)
		if !ok || !te.MaybeApplied || !IsRetryable(err) {
			t.Errorf("got %v (%+v), want a retryable TransportError with MaybeApplied true", err, te)
		}
	})

	t.Run("truncated answer", func(t *testing.T) {
		t.Parallel()
		c, slot := setup(t, testAKSK())
		slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, `{"job_id":"abc`)
		})
		_, err := c.ImportDataImage(t.Context(), &DataImageRequest{Name: "d", ImageURL: "bkt:d.qcow2", MinDisk: 40})
		te, ok := errors.AsType[*TransportError](err)
		if !ok || !te.MaybeApplied || !IsRetryable(err) {
			t.Errorf("got %v, want a retryable TransportError with MaybeApplied true", err)
		}
	})

	t.Run("client timeout", func(t *testing.T) {
		t.Parallel()
		c, slot := setup(t, testAKSK(), WithHTTPClient(&http.Client{Timeout: 50 * time.Millisecond}))
		slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) { <-r.Context().Done() })
		_, err := c.JobProgress(t.Context(), testJobID)
		if _, ok := errors.AsType[*TransportError](err); !ok || !IsRetryable(err) {
			t.Errorf("got %v, want a retryable TransportError", err)
		}
	})

	t.Run("cancelled by the caller", func(t *testing.T) {
		t.Parallel()
		c, slot := setup(t, testAKSK())
		ctx, cancel := context.WithCancel(t.Context())
		slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) { cancel(); <-r.Context().Done() })
		_, err := c.JobProgress(ctx, testJobID)
		if !errors.Is(err, context.Canceled) || IsRetryable(err) {
			t.Errorf("got %v, want context.Canceled, not retryable", err)
		}
	})

	t.Run("malformed JSON answer is permanent", func(t *testing.T) {
		t.Parallel()
		c, slot := setup(t, testAKSK())
		slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) { _, _ = io.WriteString(w, `{"job_id":42}`) })
		_, err := c.JobProgress(t.Context(), testJobID)
		if err == nil || IsRetryable(err) {
			t.Errorf("got %v, want a permanent decoding error", err)
		}
	})
}

func TestIsRetryableOtherErrors(t *testing.T) {
	t.Parallel()
	for _, err := range []error{nil, errors.New("x"), &ValidationError{Field: "name"}, ErrNoJobID} {
		if IsRetryable(err) {
			t.Errorf("IsRetryable(%v) = true", err)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	tests := map[string]time.Duration{
		"":   0,
		"0":  0,
		"-5": 0,
		"7":  7 * time.Second,
		testNow.Add(-time.Minute).Format(http.TimeFormat): 0,
		testNow.Add(time.Minute).Format(http.TimeFormat):  time.Minute,
		"soon": 0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, testNow); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNeverSent(t *testing.T) {
	t.Parallel()
	if neverSent(errors.New("EOF")) {
		t.Error("neverSent(EOF) = true")
	}
	if !neverSent(&net.OpError{Op: "dial", Err: errors.New("refused")}) {
		t.Error("neverSent(dial error) = false")
	}
}

func TestMaybeApplied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{&TransportError{Method: "POST", MaybeApplied: true}, true},
		{&TransportError{Method: "POST", MaybeApplied: false}, false},
		{&TransportError{Method: "GET", MaybeApplied: true}, false},
		{&APIError{Method: "POST", StatusCode: 504}, true},
		{&APIError{Method: "POST", StatusCode: 408}, true},
		{&APIError{Method: "POST", StatusCode: 503, Code: "APIGW.0308"}, false},
		{&APIError{Method: "POST", StatusCode: 400, Code: "IMG.0194"}, false},
		{&APIError{Method: "GET", StatusCode: 500}, false},
		{fmt.Errorf("submit: %w", ErrNoJobID), true},
		{&ValidationError{Field: "name"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := MaybeApplied(tt.err); got != tt.want {
			t.Errorf("MaybeApplied(%#v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestThrottleDelay(t *testing.T) {
	throttled := &APIError{StatusCode: 429, Code: "APIGW.0308"}
	if !errors.Is(throttled, ErrThrottled) {
		t.Fatal("a 429 is not ErrThrottled; the test's premise is wrong")
	}
	withAfter := &APIError{StatusCode: 429, Code: "APIGW.0308", RetryAfter: 3 * time.Second}
	for _, c := range []struct {
		err  error
		want time.Duration
		ok   bool
	}{
		{throttled, 7 * time.Second, true},
		{fmt.Errorf("wrapped: %w", withAfter), 3 * time.Second, true},
		{&APIError{StatusCode: 400, Code: "IMG.0001"}, 0, false},
		{errors.New("other"), 0, false},
	} {
		if d, ok := ThrottleDelay(c.err, 7*time.Second); d != c.want || ok != c.ok {
			t.Errorf("ThrottleDelay(%v) = %s %v, want %s %v", c.err, d, ok, c.want, c.ok)
		}
	}
}
