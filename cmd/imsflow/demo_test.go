package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/imsflow/imsflow/pkg/events"
)

// checkWidth fails for every line of out wider than width runes.
func checkWidth(t *testing.T, out string, width int) {
	t.Helper()
	widest := 0
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		n := utf8.RuneCountInString(line)
		widest = max(widest, n)
		if n > width {
			t.Errorf("line %d is %d columns wide, more than %d:\n%s", i+1, n, width, line)
		}
	}
	t.Logf("widest line: %d columns", widest)
}

// TestDemoFitsTheTerminal runs the demo and requires its output (without
// -v) to fit 120 columns, and its totals to be words.
func TestDemoFitsTheTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	t.Parallel()
	var out bytes.Buffer
	code := run(t.Context(), []string{"demo", "-timeout", "60s"}, map[string]string{}, &out, io.Discard)
	if code != exitOK {
		t.Fatalf("demo exited %d:\n%s", code, out.String())
	}
	checkWidth(t, out.String(), terminalWidth)
	for _, want := range []string{": 28 succeeded, 1 failed, 8 rejected; ", "37 items: 28 succeeded, 1 failed, 8 rejected\n",
		"needs_conversion\n    the VMDK file is 200.0 GB; "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "map[") {
		t.Errorf("the output shows a Go map:\n%s", out.String())
	}
}

func TestDemoHelp(t *testing.T) {
	t.Parallel()
	checkHelp(t, "demo")
}

// TestSummaryRendering: the table fits 120 columns whatever the reasons,
// says which items went wrong and how, and puts totals in words; -v shows
// job IDs, durations and whole reasons.
func TestSummaryRendering(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a reason that goes on and on ", 12) + strings.Repeat("x", 150)
	items := []*demoItem{
		{label: "ZVHD2 data disk", key: "zvhd2/disk-00.zvhd2", want: events.StatusSucceeded, wantHow: events.MethodQuick,
			done: true, got: events.StatusSucceeded, how: events.MethodQuick, jobID: "4cf7e93abdfb1f5823d48dbd835b1bf9", polls: 2, took: 6.7},
		{label: "a label much longer than any of the demo's own labels", key: "very/long/path/to/an/object/that/takes/room.qcow2",
			want: events.StatusRejected, wantCode: events.ReasonTooLarge, done: true, got: events.StatusRejected, code: events.ReasonTooLarge, reason: long},
		{label: "IMS fails the job", key: "data/broken-disk.qcow2", want: events.StatusFailed, wantHow: events.MethodNormal, wantCode: "IMG.0057",
			done: true, got: events.StatusSucceeded, how: events.MethodNormal, jobID: "06cdfb437d76aa", polls: 1, took: 0.4},
		{label: "export, quick by size", export: &events.ExportRequest{ImageID: "dfac903c-729a-4ba4-a29c-83c51355e048"}, image: "golden-big",
			want: events.StatusSucceeded, wantHow: events.MethodQuick},
	}
	var out bytes.Buffer
	if code := summary(&out, items, 2100*time.Millisecond, false); code != exitError {
		t.Errorf("summary = %d with two items not as expected, want %d", code, exitError)
	}
	checkWidth(t, out.String(), terminalWidth)
	for _, want := range []string{
		"\n4 items in 2.1s: 2 succeeded, 1 rejected, 1 without an outcome; 2 IMS jobs, 1.5 status queries per job\n",
		"2 items did not end as expected:\n",
		"  data/broken-disk.qcow2: want failed normal IMG.0057, got succeeded normal\n",
		"  golden-big: want succeeded quick, got (no outcome)\n",
		"\n    a reason that goes on and on a reason",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "4cf7e93abdfb") {
		t.Errorf("the summary shows job IDs without -v:\n%s", out.String())
	}

	out.Reset()
	summary(&out, items, 2100*time.Millisecond, true)
	for _, want := range []string{"4cf7e93abdfb1f5823d48dbd835b1bf9", "  6.7s  ", "    " + strings.Join(strings.Fields(long), " ") + "\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary with -v lacks %q:\n%s", want, out.String())
		}
	}
}

func TestWrap(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s     string
		width int
		want  []string
	}{
		{"", 10, []string{""}},
		{"one two three", 0, []string{"one two three"}},
		{"one two three", 7, []string{"one two", "three"}},
		{"one  two\nthree", 8, []string{"one two", "three"}},
		{"abcdefghij k", 4, []string{"abcd", "efgh", "ij k"}},
		{"a ééééé", 3, []string{"a", "ééé", "éé"}},
	} {
		got := wrap(tt.s, tt.width)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.s, tt.width, got, tt.want)
		}
	}
}
