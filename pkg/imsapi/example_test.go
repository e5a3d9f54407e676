package imsapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// fakeIMS answers like IMS does, for the examples: submissions get a job,
// the job reports success, and a quick import of a too-large file fails.
func fakeIMS() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/cloudimages/quickimport/action", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"job_id":"4010a32c7fd3a2b00182eb6d14d201df"}`)
	})
	mux.HandleFunc("POST /v1/cloudimages/{id}/file", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "7c1a2b")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error_code":"APIGW.0308","error_msg":"The throttling threshold has been reached"}`)
	})
	mux.HandleFunc("GET /v1/cloudimages/job/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"job_id":%q,"job_type":"imsImportImageJob","status":"RUNNING",
			"entities":{"image_name":"web-01","process_percent":0.24,"current_task":"ImportImageTask:ObtainImageInfoTask"}}`, r.PathValue("id"))
	})
	return httptest.NewServer(mux)
}

func ExampleClient_QuickImport() {
	srv := fakeIMS()
	defer srv.Close()
	c, err := imsapi.New(srv.URL, imsapi.AKSK{AccessKey: "AK", SecretKey: "SK"}, imsapi.WithProjectID("0a1b2c3d"))
	if err != nil {
		panic(err)
	}
	ref, err := c.QuickImport(context.Background(), &imsapi.QuickImportRequest{
		Name:      "web-01",
		ImageURL:  "images:web/web-01.zvhd2",
		MinDisk:   40,
		OSVersion: "Ubuntu 22.04 server 64bit",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("job", ref.JobID)
	// Output: job 4010a32c7fd3a2b00182eb6d14d201df
}

func ExampleClient_JobProgress() {
	srv := fakeIMS()
	defer srv.Close()
	c, _ := imsapi.New(srv.URL, imsapi.AKSK{AccessKey: "AK", SecretKey: "SK"})
	job, err := c.JobProgress(context.Background(), "4010a32c7fd3a2b00182eb6d14d201df")
	if err != nil {
		panic(err)
	}
	p, _ := job.Progress()
	fmt.Printf("%s %s %.0f%% done=%v\n", job.JobType, job.Status, p*100, job.Status.Done())
	// Output: imsImportImageJob RUNNING 24% done=false
}

func ExampleClient_ExportImage_throttled() {
	srv := fakeIMS()
	defer srv.Close()
	c, _ := imsapi.New(srv.URL, imsapi.AKSK{AccessKey: "AK", SecretKey: "SK"})
	_, err := c.ExportImage(context.Background(), "698a61e2-abde-4151-a778-f9035e214c92",
		&imsapi.ExportRequest{BucketURL: "exports:web-01.qcow2", FileFormat: imsapi.FormatQCOW2})
	var apiErr *imsapi.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.Code, apiErr.RequestID)
	}
	fmt.Println("throttled:", errors.Is(err, imsapi.ErrThrottled), "retry:", imsapi.IsRetryable(err))
	// Output:
	// 429 APIGW.0308 7c1a2b
	// throttled: true retry: true
}

func ExampleQuickImportRequest_Validate() {
	r := &imsapi.QuickImportRequest{Name: " web/01", ImageURL: "images:web.zvhd2", MinDisk: 2048}
	for _, ve := range imsapi.ValidationErrors(r.Validate()) {
		fmt.Printf("%s %s %s: %s\n", ve.Code, ve.Field, ve.Rule, ve.Message)
	}
	// Output:
	// IMG.0003 name format: must not start or end with a space
	// IMG.0003 name charset: contains '/'; allowed are letters, digits, Chinese characters, space, '-', '.' and '_'
	// IMG.0056 os_version required: is required for a system disk (type ECS); pick one from ListOSVersions
	// IMG.0055 min_disk range: is 2048 GB; quick imports take 10 to 1024 GB
}

func ExampleSecret() {
	creds := imsapi.AKSK{AccessKey: "QTWAOYTTINDUT2QVKYUC", SecretKey: "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"}
	fmt.Println(creds)
	fmt.Printf("%x\n", creds.SecretKey)
	slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})).Info("signing", "sk", creds.SecretKey)
	// Output:
	// AKSK{AccessKey: QTWA..., SecretKey: [redacted], SecurityToken: [redacted]}
	// [redacted]
	// level=INFO msg=signing sk=[redacted]
}
