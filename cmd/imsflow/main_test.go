package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

const (
	testAK = "AKTEST"
	testSK = "SKTEST-never-printed"
)

// fakeIMS checks every request's signature with the real verifier and
// answers a few paths the way IMS does.
func fakeIMS(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		lookup := func(ak string) (imsapi.Secret, bool) { return testSK, ak == testAK }
		if err := imsapi.VerifySignature(r, body, lookup, time.Now(), 15*time.Minute); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information","request_id":"r1"}`)
			return
		}
		switch {
		case r.URL.Path == "/v1/cloudimages/quota":
			_, _ = io.WriteString(w, `{"quotas":{"resources":[{"type":"image","used":3,"quota":50,"min":1,"max":100}]}}`)
		case r.URL.Path == "/v1/p1/jobs/j1":
			_, _ = io.WriteString(w, `{"job_id":"j1","job_type":"imsNativeExportImageJob","status":"SUCCESS","entities":{"image_id":"i1"}}`)
		case r.URL.Path == "/v1/cloudimages/job/missing":
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":"IMG.0001","message":"job not found"}}`)
		case r.URL.Path == "/v2/cloudimages":
			if r.URL.Query().Get("marker") == "" {
				_, _ = io.WriteString(w, `{"images":[{"id":"a","name":"one","status":"active"}]}`)
			} else {
				_, _ = io.WriteString(w, `{"images":[]}`)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, env, &out, &errOut)
	if strings.Contains(out.String()+errOut.String(), testSK) {
		t.Errorf("output reveals the secret key:\n%s\n%s", out.String(), errOut.String())
	}
	return code, out.String(), errOut.String()
}

func TestIMSCommands(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"IMS_ENDPOINT": fakeIMS(t), "HUAWEICLOUD_SDK_AK": testAK, "HUAWEICLOUD_SDK_SK": testSK, "HUAWEICLOUD_SDK_PROJECT_ID": "p1",
	}
	code, out, errOut := runCLI(t, env, "ims", "quota")
	var q imsapi.Quota
	if code != exitOK || json.Unmarshal([]byte(out), &q) != nil {
		t.Fatalf("quota: code %d, out %q, err %q", code, out, errOut)
	}
	if r, ok := q.Resource(imsapi.QuotaImage); !ok || r.Used != 3 || r.Quota != 50 {
		t.Errorf("quota = %+v", q)
	}

	code, out, _ = runCLI(t, env, "ims", "job", "-status-api", "j1")
	var job imsapi.Job
	if code != exitOK || json.Unmarshal([]byte(out), &job) != nil || job.Status != imsapi.JobSuccess || job.Entities.ImageID != "i1" {
		t.Errorf("job -status-api: code %d, out %q", code, out)
	}

	code, out, _ = runCLI(t, env, "ims", "images", "-limit", "1")
	var images []imsapi.Image
	if code != exitOK || json.Unmarshal([]byte(out), &images) != nil || len(images) != 1 || images[0].ID != "a" {
		t.Errorf("images: code %d, out %q", code, out)
	}

	code, _, errOut = runCLI(t, env, "ims", "job", "missing")
	if code != exitError || !strings.Contains(errOut, "404 IMG.0001: job not found") {
		t.Errorf("job missing: code %d, stderr %q", code, errOut)
	}

	code, _, errOut = runCLI(t, env, "ims", "job", "bad/id")
	if code != exitUsage || !strings.Contains(errOut, "invalid job_id") {
		t.Errorf("job bad/id: code %d, stderr %q", code, errOut)
	}
}

func TestWrongSecretIsReportedNotRevealed(t *testing.T) {
	t.Parallel()
	env := map[string]string{"IMS_ENDPOINT": fakeIMS(t), "HUAWEICLOUD_SDK_AK": testAK, "HUAWEICLOUD_SDK_SK": testSK + "-wrong"}
	code, _, errOut := runCLI(t, env, "ims", "quota")
	if code != exitError || !strings.Contains(errOut, "401 APIGW.0301") || strings.Contains(errOut, "-wrong") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	good := map[string]string{"IMS_ENDPOINT": "https://ims.example.com", "IMS_AUTH_TOKEN": "t"}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"no command", good, nil, "Usage:"},
		{"unknown command", good, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown ims command", good, []string{"ims", "delete"}, `unknown command "delete"`},
		{"missing config", map[string]string{"HUAWEICLOUD_SDK_SK": testSK}, []string{"ims", "quota"}, "IMS_ENDPOINT is not set"},
		{"missing job id", good, []string{"ims", "job"}, "want 1 argument(s), got 0"},
		{"bad flag", good, []string{"ims", "quota", "-x"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		code, _, errOut := runCLI(t, tt.env, tt.args...)
		if code != exitUsage || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%s: code %d, stderr %q; want %d and %q", tt.name, code, errOut, exitUsage, tt.wantErr)
		}
	}
}
