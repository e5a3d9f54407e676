package fnmain

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/ingest/ingest"
)

// TestReadConfigNamesVariables: a function's wrong settings are reported
// by their environment variables, every one of them.
func TestReadConfigNamesVariables(t *testing.T) {
	t.Parallel()
	_, err := readConfig[importer.Config](map[string]string{
		"IMPORT_BITMAP_WAIT": "x", "NATS_REPLICAS": "three", "S3_SECURE": "maybe", "LOG_LEVEL": "debug",
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`IMPORT_BITMAP_WAIT: time: invalid duration "x"`, `NATS_REPLICAS: "three" is not a whole number`, `S3_SECURE: "maybe" is not true or false`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "field") || strings.Contains(err.Error(), "BitmapWait") {
		t.Errorf("error %q names Go fields", err)
	}

	if _, err := readConfig[importer.Config](map[string]string{"NATS_REPLICAS": "9"}); err == nil || !strings.Contains(err.Error(), "NATS_REPLICAS 9") {
		t.Errorf("NATS_REPLICAS 9: %v", err)
	}
	cfg, err := readConfig[importer.Config](map[string]string{"IMPORT_BITMAP_WAIT": "1m"})
	if err != nil || cfg.Function.BitmapWait.Minutes() != 1 || cfg.LogLevel != "info" {
		t.Errorf("readConfig = %+v, %v", cfg, err)
	}
}

// TestIngestWarnsWhenItRefusesEverything: an ingest with neither SMN
// topics nor an EventGrid token logs one warning at start naming both
// variables; with either, none.
func TestIngestWarnsWhenItRefusesEverything(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{}, 1},
		{map[string]string{"INGEST_EG_TOKEN": "t"}, 0},
		{map[string]string{"INGEST_SMN_TOPICS": "urn:smn:cn-north-4:p1:uploads"}, 0},
	}
	for _, tt := range tests {
		cfg, err := readConfig[ingest.Config](tt.env)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		warn(zerolog.New(&out), ingest.Function, cfg.Function)
		lines := strings.Count(out.String(), "\n")
		if lines != tt.want {
			t.Errorf("%v: %d warnings, want %d:\n%s", tt.env, lines, tt.want, out.String())
		}
		if lines == 1 && (!strings.Contains(out.String(), `"level":"warn"`) || !strings.Contains(out.String(), "INGEST_SMN_TOPICS") ||
			!strings.Contains(out.String(), "INGEST_EG_TOKEN") || !strings.Contains(out.String(), "every notification will be refused")) {
			t.Errorf("warning %s", out.String())
		}
	}
}
