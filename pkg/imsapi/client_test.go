package imsapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

const (
	testAK      = "QTWAOYTTINDUT2QVKYUC"
	testSK      = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
	testProject = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	testJobID   = "9a175ac89d2a5e14019d2cde77f03a0f"
	testImageID = "698a61e2-abde-4151-a778-f9035e214c92"
	// basePath puts the API under a prefix, which catches absolute-path bugs.
	basePath = "/ims-prefix"
)

var testNow = time.Date(2026, 11, 23, 8, 30, 0, 0, time.UTC)

// setup starts an httptest server that verifies every request's signature
// with the real verifier before handing it, prefix stripped, to the
// returned handler slot. Requests that fail verification fail the test.
func setup(t *testing.T, creds Credentials, opts ...Option) (*Client, *handlerSlot) {
	t.Helper()
	slot := &handlerSlot{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		if _, ok := creds.(AKSK); ok {
			lookup := func(ak string) (Secret, bool) { return testSK, ak == testAK }
			if err := VerifySignature(r, body, lookup, testNow, 15*time.Minute); err != nil {
				t.Errorf("%s %s: server-side signature check: %v", r.Method, r.URL.Path, err)
			}
		}
		path, ok := strings.CutPrefix(r.URL.Path, basePath)
		if !ok {
			t.Errorf("request path %q lacks the endpoint's prefix %q", r.URL.Path, basePath)
		}
		r.URL.Path = path
		slot.calls.Add(1)
		slot.get()(w, r, body)
	}))
	t.Cleanup(srv.Close)
	all := append([]Option{
		WithProjectID(testProject),
		WithClock(func() time.Time { return testNow }),
		WithRateLimiter(rate.NewLimiter(rate.Inf, 0)),
	}, opts...)
	c, err := New(srv.URL+basePath+"/", creds, all...)
	if err != nil {
		t.Fatal(err)
	}
	return c, slot
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, body []byte)

type handlerSlot struct {
	h     atomic.Pointer[handlerFunc]
	calls atomic.Int64
}

func (s *handlerSlot) set(h handlerFunc) { s.h.Store(&h) }

func (s *handlerSlot) get() handlerFunc {
	if h := s.h.Load(); h != nil {
		return *h
	}
	return func(w http.ResponseWriter, r *http.Request, _ []byte) {
		http.Error(w, "no handler", http.StatusTeapot)
	}
}

func testAKSK() AKSK { return AKSK{AccessKey: testAK, SecretKey: testSK} }

func ptr[T any](v T) *T { return &v }

// TestOperations calls every operation and checks method, path, query,
// headers, signed headers and the exact body on the wire, and the decoded
// answer.
func TestOperations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		call      func(context.Context, *Client) (any, error)
		method    string
		path      string
		query     string
		wantBody  string // exact bytes; "" for none
		respond   string
		want      any
		wantCalls int64
	}{
		{
			name: "quick import system disk",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.QuickImport(ctx, &QuickImportRequest{
					Name: "web-01", ImageURL: "images:web/web-01.zvhd2", MinDisk: 40,
					OSVersion: "Ubuntu 22.04 server 64bit", Type: TypeECS,
					ImageTags: []ImageTag{{Key: "src", Value: "obs"}},
				})
			},
			method:   http.MethodPost,
			path:     "/v2/cloudimages/quickimport/action",
			wantBody: `{"name":"web-01","image_url":"images:web/web-01.zvhd2","min_disk":40,"os_version":"Ubuntu 22.04 server 64bit","type":"ECS","image_tags":[{"key":"src","value":"obs"}]}`,
			respond:  `{"job_id":"` + testJobID + `"}`,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "quick import data disk sends no os_version",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.QuickImport(ctx, &QuickImportRequest{
					Name: "data-01", ImageURL: "images:d.raw", MinDisk: 100, Type: TypeDataImage, OSType: OSLinux,
				})
			},
			method:   http.MethodPost,
			path:     "/v2/cloudimages/quickimport/action",
			wantBody: `{"name":"data-01","image_url":"images:d.raw","min_disk":100,"type":"DataImage","os_type":"Linux"}`,
			respond:  `{"job_id":"` + testJobID + `"}`,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "quick import data disk sends os_type Linux when it is empty",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.QuickImport(ctx, &QuickImportRequest{Name: "data-02", ImageURL: "images:d.zvhd2", MinDisk: 100, Type: TypeDataImage})
			},
			method:   http.MethodPost,
			path:     "/v2/cloudimages/quickimport/action",
			wantBody: `{"name":"data-02","image_url":"images:d.zvhd2","min_disk":100,"type":"DataImage","os_type":"Linux"}`,
			respond:  `{"job_id":"` + testJobID + `"}`,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "data image import",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ImportDataImage(ctx, &DataImageRequest{
					Name: "data-02", Description: "from obs", ImageURL: "images:d.qcow2", MinDisk: 40,
					Tags: []string{"team.storage"},
				})
			},
			method:   http.MethodPost,
			path:     "/v1/cloudimages/dataimages/action",
			wantBody: `{"name":"data-02","description":"from obs","image_url":"images:d.qcow2","min_disk":40,"tags":["team.storage"]}`,
			respond:  `{"job_id":"` + testJobID + `"}`,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "system image import from a file",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ImportImage(ctx, &ImageRequest{
					Name: "ims_test_file", ImageURL: "ims-image:centos70.qcow2", OSVersion: "CentOS 7.0 64bit",
					MinDisk: 40, IsConfig: true, Tags: []string{"aaa.111"},
				})
			},
			method: http.MethodPost,
			path:   "/v2/cloudimages/action",
			// Huawei's documented example body, field for field.
			wantBody: `{"name":"ims_test_file","image_url":"ims-image:centos70.qcow2","min_disk":40,"os_version":"CentOS 7.0 64bit","is_config":true,"tags":["aaa.111"]}`,
			respond:  `{"job_id":"` + testJobID + `"}`,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "normal export",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ExportImage(ctx, testImageID, &ExportRequest{BucketURL: "ims-image:centos7_5.qcow2", FileFormat: FormatQCOW2})
			},
			method:   http.MethodPost,
			path:     "/v1/cloudimages/" + testImageID + "/file",
			wantBody: `{"bucket_url":"ims-image:centos7_5.qcow2","file_format":"qcow2","is_quick_export":false}`,
			respond:  `{"job_id":"` + testJobID + `"}`,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "quick export sends no file_format",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ExportImage(ctx, testImageID, &ExportRequest{BucketURL: "exports:big.zvhd2", IsQuickExport: true})
			},
			method:   http.MethodPost,
			path:     "/v1/cloudimages/" + testImageID + "/file",
			wantBody: `{"bucket_url":"exports:big.zvhd2","is_quick_export":true}`,
			respond:  `{"job_id":"` + testJobID + `"}`,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name:   "job progress",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.JobProgress(ctx, testJobID) },
			method: http.MethodGet,
			path:   "/v1/cloudimages/job/" + testJobID,
			respond: `{"job_id":"9a175ac89d2a5e14019d2cde77f03a0f","job_type":"imsImportImageJob",
				"begin_time":"2026-03-27T01:17:50.446Z","end_time":"2026-03-27T01:57:11.143Z",
				"status":"SUCCESS","error_code":null,"fail_reason":null,
				"entities":{"image_name":"name","subJobId":"0825e1f7fae2477b9db78d7ea34a1a10",
				"image_id":"698a61e2-abde-4151-a778-f9035e214c92","process_percent":1,"current_task":""}}`,
			want: &Job{
				JobID: testJobID, JobType: JobTypeImportImage, Status: JobSuccess,
				BeginTime: Timestamp{time.Date(2026, 3, 27, 1, 17, 50, 446e6, time.UTC)},
				EndTime:   Timestamp{time.Date(2026, 3, 27, 1, 57, 11, 143e6, time.UTC)},
				Entities: JobEntities{
					ImageID: testImageID, ImageName: "name", ProcessPercent: ptr(1.0),
					SubJobID: "0825e1f7fae2477b9db78d7ea34a1a10",
				},
			},
		},
		{
			name: "job status under the project path",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Job(ctx, "9a175ac892fa134201930039db1a27b1")
			},
			method: http.MethodGet,
			path:   "/v1/" + testProject + "/jobs/9a175ac892fa134201930039db1a27b1",
			respond: `{"job_id":"9a175ac892fa134201930039db1a27b1","job_type":"imsNativeExportImageJob",
				"begin_time":"2024-11-06T06:46:51.929Z","end_time":"2024-11-06T06:49:53.657Z","status":"FAIL",
				"error_code":"IMG.0070","fail_reason":"the object already exists",
				"entities":{"image_id":"1ab4df10-fe18-48b7-91c9-53695fcd9df5",
				"sub_jobs_result":[{"job_id":"s1","job_type":"imsGoofysExportImageJob","status":"FAIL","error_code":"IMG.0070","entities":{"image_id":"1ab4df10-fe18-48b7-91c9-53695fcd9df5"}}]}}`,
			want: &Job{
				JobID: "9a175ac892fa134201930039db1a27b1", JobType: JobTypeExportImage, Status: JobFail,
				BeginTime: Timestamp{time.Date(2024, 11, 6, 6, 46, 51, 929e6, time.UTC)},
				EndTime:   Timestamp{time.Date(2024, 11, 6, 6, 49, 53, 657e6, time.UTC)},
				ErrorCode: "IMG.0070", FailReason: "the object already exists",
				Entities: JobEntities{
					ImageID: "1ab4df10-fe18-48b7-91c9-53695fcd9df5",
					SubJobsResult: []SubJobResult{func() SubJobResult {
						s := SubJobResult{JobID: "s1", JobType: "imsGoofysExportImageJob", Status: JobFail, ErrorCode: "IMG.0070"}
						s.Entities.ImageID = "1ab4df10-fe18-48b7-91c9-53695fcd9df5"
						return s
					}()},
				},
			},
		},
		{
			name: "list images by name and tag",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ListImages(ctx, &ListImagesOptions{Name: "web 01", Tag: "src.obs", Status: ImageActive, ImageType: "private", Limit: 2})
			},
			method:  http.MethodGet,
			path:    "/v2/cloudimages",
			query:   "__imagetype=private&limit=2&name=web%2001&status=active&tag=src.obs",
			respond: `{"images":[{"id":"a","name":"web 01","status":"active","min_disk":40,"__image_size":"1048576","__whole_image":"false","__system__cmkid":"k1","protected":false,"tags":["src.obs"]}]}`,
			want: &ImagePage{Images: []Image{{
				ID: "a", Name: "web 01", Status: ImageActive, MinDisk: 40, ImageSize: "1048576", SystemCMKID: "k1", Tags: []string{"src.obs"},
			}}, NextMarker: "a"},
		},
		{
			name:   "os versions",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.ListOSVersions(ctx, OSTagUEFI) },
			method: http.MethodGet,
			path:   "/v1/cloudimages/os_version",
			query:  "tag=uefi",
			respond: `[{"platform":"CentOS","version_list":[{"platform":"CentOS","os_version_key":"CentOS 7.0 64bit",
				"os_version":"CentOS 7.0 64bit","os_bit":64,"os_type":"Linux"}]}]`,
			want: OSVersions{{Platform: "CentOS", VersionList: []OSVersion{{
				Platform: "CentOS", OSVersionKey: "CentOS 7.0 64bit", OSVersion: "CentOS 7.0 64bit", OSBit: 64, OSType: OSLinux,
			}}}},
		},
		{
			name:    "quota",
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Quota(ctx) },
			method:  http.MethodGet,
			path:    "/v1/cloudimages/quota",
			respond: `{"quotas":{"resources":[{"type":"image","used":20,"quota":100,"min":1,"max":1000}]}}`,
			want:    &Quota{Resources: []QuotaResource{{Type: QuotaImage, Used: 20, Quota: 100, Min: 1, Max: 1000}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, slot := setup(t, testAKSK())
			slot.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				if r.Method != tt.method {
					t.Errorf("method = %s, want %s", r.Method, tt.method)
				}
				if r.URL.Path != tt.path {
					t.Errorf("path = %s, want %s", r.URL.Path, tt.path)
				}
				if r.URL.RawQuery != tt.query {
					t.Errorf("query = %q, want %q", r.URL.RawQuery, tt.query)
				}
				if string(body) != tt.wantBody {
					t.Errorf("body =\n%s\nwant\n%s", body, tt.wantBody)
				}
				wantCT := ""
				if tt.wantBody != "" {
					wantCT = "application/json;charset=UTF-8"
				}
				checkHeaders(t, r.Header, map[string]string{
					"Content-Type":  wantCT,
					"Accept":        "application/json",
					"X-Project-Id":  testProject,
					"X-Sdk-Date":    "20261123T083000Z",
					"Authorization": "SDK-HMAC-SHA256 Access=" + testAK + ", SignedHeaders=host;x-project-id;x-sdk-date, Signature=",
				})
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.respond)
			})
			got, err := tt.call(t.Context(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", deref(got), deref(tt.want))
			}
			if n := slot.calls.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
		})
	}
}

func deref(v any) any {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}

// checkHeaders compares headers exactly, except that a wanted value ending
// in "=" is a prefix; "" means absent.
func checkHeaders(t *testing.T, h http.Header, want map[string]string) {
	t.Helper()
	for k, w := range want {
		got := h.Get(k)
		if strings.HasSuffix(w, "=") && strings.HasPrefix(got, w) {
			continue
		}
		if got != w {
			t.Errorf("header %s = %q, want %q", k, got, w)
		}
	}
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, Token{Token: "MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQExDT"})
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		checkHeaders(t, r.Header, map[string]string{
			"X-Auth-Token":  "MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQExDT",
			"Authorization": "",
			"X-Sdk-Date":    "",
			"X-Project-Id":  testProject,
		})
		_, _ = io.WriteString(w, `{"quotas":{"resources":[]}}`)
	})
	if _, err := c.Quota(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := (Token{}).authenticate(httptest.NewRequest("GET", "/", nil), nil, testNow); !errors.Is(err, ErrMissingCredentials) {
		t.Errorf("empty token: %v, want ErrMissingCredentials", err)
	}
}

func TestTemporaryCredentialsSignTheSecurityToken(t *testing.T) {
	t.Parallel()
	creds := AKSK{AccessKey: testAK, SecretKey: testSK, SecurityToken: "gQpjbi1ub3J0aC00"}
	c, slot := setup(t, creds)
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		checkHeaders(t, r.Header, map[string]string{
			"X-Security-Token": "gQpjbi1ub3J0aC00",
			"Authorization":    "SDK-HMAC-SHA256 Access=" + testAK + ", SignedHeaders=host;x-project-id;x-sdk-date;x-security-token, Signature=",
		})
		_, _ = io.WriteString(w, `{"quotas":{"resources":[]}}`)
	})
	if _, err := c.Quota(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestJobNeedsProjectID(t *testing.T) {
	t.Parallel()
	c, err := New("https://ims.example.com", testAKSK())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Job(t.Context(), testJobID)
	if ve, ok := errors.AsType[*ValidationError](err); !ok || ve.Field != "project_id" {
		t.Errorf("Job without project ID = %v, want a project_id ValidationError", err)
	}
}

func TestAllImagesPages(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	ids := []string{"i1", "i2", "i3", "i4", "i5"}
	var markers []string
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		q := r.URL.Query()
		markers = append(markers, q.Get("marker"))
		start := 0
		if m := q.Get("marker"); m != "" {
			for i, id := range ids {
				if id == m {
					start = i + 1
				}
			}
		}
		end := min(start+2, len(ids))
		var parts []string
		for _, id := range ids[start:end] {
			parts = append(parts, `{"id":"`+id+`","name":"n","status":"active"}`)
		}
		fmt.Fprintf(w, `{"images":[%s]}`, strings.Join(parts, ","))
	})
	var got []string
	for im, err := range c.AllImages(t.Context(), &ListImagesOptions{Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, im.ID)
	}
	if !reflect.DeepEqual(got, ids) {
		t.Errorf("AllImages = %v, want %v", got, ids)
	}
	// The last page is the empty one after i5.
	if want := []string{"", "i2", "i4", "i5"}; !reflect.DeepEqual(markers, want) {
		t.Errorf("markers sent = %q, want %q", markers, want)
	}
}

func TestAllImagesStopsAtError(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	n := 0
	for im, err := range c.AllImages(t.Context(), nil) {
		n++
		if err == nil || im != nil {
			t.Fatalf("yielded (%v, %v), want (nil, error)", im, err)
		}
	}
	if n != 1 {
		t.Errorf("yielded %d times, want 1", n)
	}
}

func TestImageLookup(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Query().Get("id") == testImageID {
			fmt.Fprintf(w, `{"images":[{"id":%q,"name":"web","status":"active","__image_size":"2147483648","__system__cmkid":""}]}`, testImageID)
			return
		}
		_, _ = io.WriteString(w, `{"images":[]}`)
	})
	im, err := c.Image(t.Context(), testImageID)
	if err != nil {
		t.Fatal(err)
	}
	if size, ok := im.SizeBytes(); !ok || size != 2*GiB || im.Encrypted() {
		t.Errorf("image = %+v, size %d %v", im, size, ok)
	}
	_, err = c.Image(t.Context(), "00000000-0000-0000-0000-000000000000")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Image(unknown) = %v, want ErrNotFound", err)
	}
}

func TestSubmitWithoutJobID(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) { _, _ = io.WriteString(w, `{}`) })
	_, err := c.ExportImage(t.Context(), testImageID, &ExportRequest{BucketURL: "b12:k.qcow2", FileFormat: FormatQCOW2})
	if !errors.Is(err, ErrNoJobID) || IsRetryable(err) {
		t.Errorf("submit answered without job_id: %v, want ErrNoJobID, not retryable", err)
	}
}

// TestRateLimitShared: with a burst of 3 and a rate far too slow to refill
// within the callers' deadline, exactly 3 of 10 concurrent callers get
// through and the others fail fast without reaching the server.
func TestRateLimitShared(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK(), WithRateLimiter(rate.NewLimiter(rate.Every(time.Hour), 3)))
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		_, _ = io.WriteString(w, `{"quotas":{"resources":[]}}`)
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	errs := make(chan error, 10)
	for range 10 {
		go func() { _, err := c.Quota(ctx); errs <- err }()
	}
	var ok, limited int
	for range 10 {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case strings.Contains(err.Error(), "rate limit"):
			limited++
			if !IsRetryable(err) {
				t.Errorf("rate-limited call: %v is not retryable", err)
			}
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 3 || limited != 7 || slot.calls.Load() != 3 {
		t.Errorf("ok=%d limited=%d server saw %d; want 3, 7, 3", ok, limited, slot.calls.Load())
	}
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		endpoint string
		creds    Credentials
		opts     []Option
	}{
		{"no scheme", "ims.example.com", testAKSK(), nil},
		{"ftp", "ftp://ims.example.com", testAKSK(), nil},
		{"query", "https://ims.example.com?a=b", testAKSK(), nil},
		{"nil credentials", "https://ims.example.com", nil, nil},
		{"zero rate", "https://ims.example.com", testAKSK(), []Option{WithRateLimit(0, 1)}},
		{"zero burst", "https://ims.example.com", testAKSK(), []Option{WithRateLimit(1, 0)}},
		{"bad project", "https://ims.example.com", testAKSK(), []Option{WithProjectID("a/b")}},
		{"nil http client", "https://ims.example.com", testAKSK(), []Option{WithHTTPClient(nil)}},
	}
	for _, tt := range tests {
		if _, err := New(tt.endpoint, tt.creds, tt.opts...); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want ErrInvalidArgument", tt.name, err)
		}
	}
}

func TestWithHTTPClientCopies(t *testing.T) {
	t.Parallel()
	hc := &http.Client{Timeout: time.Second}
	c, err := New("https://ims.example.com", testAKSK(), WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	hc.Timeout = time.Hour
	if c.hc == hc || c.hc.Timeout != time.Second {
		t.Errorf("client shares the caller's *http.Client")
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	t.Parallel()
	creds := AKSK{AccessKey: testAK, SecretKey: testSK, SecurityToken: "tok-secret"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{creds, creds.SecretKey, &creds, Token{Token: "tok-secret"}} {
			out := fmt.Sprintf(verb, v)
			for _, secret := range []string{testSK, "tok-secret", testAK} {
				if strings.Contains(out, secret) {
					t.Errorf("Sprintf(%s, %T) = %q shows a secret", verb, v, out)
				}
			}
		}
	}
}

// TestNoRedirects: a redirect is an error, and nothing (signature, token,
// security token, body) goes to the other host.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect target got %s %s with headers %v", r.Method, r.URL, r.Header)
	}))
	t.Cleanup(other.Close)
	for _, creds := range []Credentials{AKSK{AccessKey: testAK, SecretKey: testSK, SecurityToken: "st"}, Token{Token: "tok"}} {
		for _, opts := range [][]Option{nil, {WithHTTPClient(&http.Client{})}} {
			c, slot := setup(t, creds, opts...)
			slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
				http.Redirect(w, r, other.URL+"/v1/cloudimages/quota", http.StatusTemporaryRedirect)
			})
			_, err := c.Quota(t.Context())
			if apiErr, ok := errors.AsType[*APIError](err); !ok || apiErr.StatusCode != http.StatusTemporaryRedirect {
				t.Errorf("redirect: %v, want an *APIError 307", err)
			}
		}
	}
}

func TestSubmitUndecodableAnswer(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) { _, _ = io.WriteString(w, `<html>ok</html>`) })
	_, err := c.ExportImage(t.Context(), testImageID, &ExportRequest{BucketURL: "b12:k.qcow2", FileFormat: FormatQCOW2})
	if !errors.Is(err, ErrNoJobID) || !MaybeApplied(err) {
		t.Errorf("2xx with an undecodable body: %v, want ErrNoJobID and MaybeApplied", err)
	}
}
