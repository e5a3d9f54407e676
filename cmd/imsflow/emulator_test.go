package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// TestEmulatorCommand starts "imsflow emulator" on a free port with an
// object catalogue and a failure rule from files, drives it with the real
// client through the printed endpoint, and stops it with the context.
func TestEmulatorCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects.json")
	rules := filepath.Join(dir, "failures.json")
	if err := os.WriteFile(objects, []byte(`[{"bucket":"images","key":"a.zvhd2","size":1073741824}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rules, []byte(`[{"key_pattern":"broken*","error_code":"IMG.0057","fail_reason":"damaged"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	endpoint, stop := startEmulatorCommand(t, "-objects", objects, "-failures", rules, "-time-scale", "1000")
	ctx := t.Context()
	c, err := imsapi.New(endpoint, imsapi.AKSK{AccessKey: "IMSFLOWLOCALAK", SecretKey: devSecretKey})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.QuickImport(ctx, &imsapi.QuickImportRequest{Name: "a", ImageURL: "images:a.zvhd2", MinDisk: 10, Type: imsapi.TypeDataImage})
	if err != nil {
		t.Fatalf("quick import against the command's emulator: %v", err)
	}
	if _, err := c.JobProgress(ctx, ref.JobID); err != nil {
		t.Fatal(err)
	}
	if code := stop(); code != exitOK {
		t.Errorf("exit code %d", code)
	}
}

// TestEmulatorCommandRegions: -regions serves each region at its own
// path, the first also at the root, each with its own catalogue.
func TestEmulatorCommandRegions(t *testing.T) {
	t.Parallel()
	endpoint, stop := startEmulatorCommand(t, "-regions", "cn-north-4,ap-southeast-3=p-apse3", "-time-scale", "1000")
	ctx := t.Context()
	creds := imsapi.AKSK{AccessKey: "IMSFLOWLOCALAK", SecretKey: devSecretKey}
	there, err := imsapi.New(endpoint+"/region/ap-southeast-3", creds, imsapi.WithProjectID("p-apse3"))
	if err != nil {
		t.Fatal(err)
	}
	home, err := imsapi.New(endpoint, creds)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*imsapi.Client{"ap-southeast-3": there, "home": home} {
		if _, err := c.ListImages(ctx, nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	nowhere, err := imsapi.New(endpoint+"/region/eu-west-101", creds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nowhere.ListImages(ctx, nil); err == nil {
		t.Error("a region not given answered")
	}
	if code := stop(); code != exitOK {
		t.Errorf("exit code %d", code)
	}
	got := emulatorRegions(" cn-north-4 , ap-southeast-3=p3,", "p-home")
	if len(got) != 2 || got[0].ProjectID != "p-home" || got[1].Name != "ap-southeast-3" || got[1].ProjectID != "p3" {
		t.Errorf("regions = %+v", got)
	}
}

// startEmulatorCommand runs "imsflow emulator" on a free port with args,
// and returns its endpoint and the function that stops it and returns its
// exit code.
func startEmulatorCommand(t *testing.T, args ...string) (endpoint string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"emulator", "-addr", "127.0.0.1:0"}, args...), map[string]string{}, pw, io.Discard)
		_ = pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var exports string
	for lines.Scan() && exports == "" {
		line := lines.Text()
		if u, ok := strings.CutPrefix(line, "IMS emulator listening on "); ok {
			endpoint = u
		}
		if strings.Contains(line, "export IMS_ENDPOINT=") {
			exports = line
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	stop = func() int {
		cancel()
		return testenv.Await(t, done, "the emulator command to stop")
	}
	if endpoint == "" || !strings.Contains(exports, "HUAWEICLOUD_SDK_SK="+devSecretKey) {
		stop()
		t.Fatalf("printed endpoint %q, exports %q", endpoint, exports)
	}
	return endpoint, stop
}

// TestEmulatorCommandAcceptsBeforeDropping: with -drop-rate 1
// -accept-before-drop, a submission takes effect though its answer is
// lost, the case a caller must look up before submitting again.
func TestEmulatorCommandAcceptsBeforeDropping(t *testing.T) {
	t.Parallel()
	objects := filepath.Join(t.TempDir(), "objects.json")
	if err := os.WriteFile(objects, []byte(`[{"bucket":"images","key":"a.zvhd2","size":1073741824}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	endpoint, stop := startEmulatorCommand(t, "-objects", objects, "-drop-rate", "1", "-accept-before-drop")
	defer stop()
	c, err := imsapi.New(endpoint, imsapi.AKSK{AccessKey: "IMSFLOWLOCALAK", SecretKey: devSecretKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.QuickImport(t.Context(), &imsapi.QuickImportRequest{Name: "a", ImageURL: "images:a.zvhd2", MinDisk: 10, Type: imsapi.TypeDataImage})
	if !imsapi.MaybeApplied(err) {
		t.Fatalf("quick import: %v, want a lost answer that may have applied", err)
	}
	resp, err := http.Get(endpoint + "/_emulator/submissions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var subs []imsemu.Submission
	if err := json.NewDecoder(resp.Body).Decode(&subs); err != nil || len(subs) != 1 || subs[0].URL != "images:a.zvhd2" {
		t.Errorf("submissions = %+v, %v; want the one whose answer was dropped", subs, err)
	}
}

func TestEmulatorCommandBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"missing objects file", []string{"-objects", "/nonexistent/objects.json"}, nil, "objects.json"},
		{"bad time scale", []string{"-time-scale", "0"}, nil, "time scale positive"},
		{"bad env", nil, map[string]string{"IMSEMU_RATE_LIMIT": "lots"}, `IMSEMU_RATE_LIMIT: "lots" is not a number`},
		{"bad fault rate", []string{"-addr", "127.0.0.1:0", "-error-rate", "3"}, nil, "fault rates"},
	}
	for _, tt := range tests {
		env := tt.env
		if env == nil {
			env = map[string]string{}
		}
		code, _, errOut := runCLI(t, env, append([]string{"emulator"}, tt.args...)...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: code %d, stderr %q; want %q", tt.name, code, errOut, tt.want)
		}
	}
}
