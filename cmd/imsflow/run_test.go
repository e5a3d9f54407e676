package main

import (
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	code, _, stderr := runCLI(t, nil, "run", "importer")
	if code != exitUsage || !strings.Contains(stderr, `unknown function "importer"`) || !strings.Contains(stderr, "import, export, poller, distribute, ingest") {
		t.Errorf("imsflow run importer: exit %d, stderr %q; want %d naming the functions", code, stderr, exitUsage)
	}
	if code, _, _ := runCLI(t, nil, "run"); code != exitUsage {
		t.Errorf("imsflow run: exit %d, want %d", code, exitUsage)
	}
	if code, stdout, _ := runCLI(t, nil, "run", "-h"); code != exitOK || !strings.HasPrefix(stdout, "usage: imsflow run FUNCTION") {
		t.Errorf("imsflow run -h: exit %d, stdout %q", code, stdout)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "imsflow ") {
		t.Errorf("imsflow version: exit %d, stdout %q", code, stdout)
	}
	old := version
	t.Cleanup(func() { version = old })
	version = "0123abc+modified"
	if _, stdout, _ := runCLI(t, nil, "version"); stdout != "imsflow 0123abc+modified\n" {
		t.Errorf("imsflow version with a stamped version: %q", stdout)
	}
}
