package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
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
		"needs_conversion\n    the VMDK file is 200.0 GB; ", "\nREGION          IMAGE  ", "\nthe lifecycle ended as expected: "} {
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

// demoRunFixture is a lifecycle run of the demo as it should go: the copy
// to eu-west-101 failed alone, was retried alone, and the second end
// succeeded with every region's image shared and tagged as declared.
func demoRunFixture(t *testing.T) (*demoLifecycle, *lifecycleRun) {
	t.Helper()
	decl, err := demoDeclaration(demoRules)
	if err != nil {
		t.Fatal(err)
	}
	d := &demoLifecycle{decl: decl, home: devHome}
	rec := lifecycle.Plan(lifecycle.Start{ID: "5ad1b3906a11d1fce91837dab7e15487", Rule: demoLifecycleRule, Declaration: decl, SourceRegion: devHome,
		Image: lifecycle.Image{ID: "img-home", Name: "base-7-f9b583e0", SizeGB: 12}, Source: &events.Source{Bucket: "images", Key: demoLifecycleKey}, At: time.Now()})
	first := &events.LifecycleCompleted{Lifecycle: rec.ID, Status: events.StatusFailed, Rule: demoLifecycleRule, Family: rec.Family}
	second := &events.LifecycleCompleted{Lifecycle: rec.ID, Status: events.StatusSucceeded, Generation: 1, Rule: demoLifecycleRule, Family: rec.Family,
		Images: map[string]string{}, SharedWith: map[string][]string{}, Tags: decl.Tags, Latest: true}
	blocked := map[string]bool{"tag:" + demoFailRegion: true, "latest": true}
	for i := range rec.Legs {
		l := &rec.Legs[i]
		state, code, reason := lifecycle.LegSucceeded, "", ""
		switch {
		case l.Name == demoFailLeg:
			state, code, reason = lifecycle.LegFailed, demoFailCode, "IMS's job failed: "+demoFailReason
		case blocked[l.Name] || l.Kind == lifecycle.KindRetain:
			state = lifecycle.LegBlocked
		}
		first.Legs = append(first.Legs, events.LifecycleLeg{Name: l.Name, State: state, Attempt: 1, ErrorCode: code, Reason: reason})
		l.State = lifecycle.LegSucceeded
		if l.Kind == lifecycle.KindReplicate {
			l.ImageID = "img-" + l.Region
		}
		if l.Name == demoFailLeg {
			l.Attempt = 2
		}
		second.Legs = append(second.Legs, events.LifecycleLeg{Name: l.Name, State: l.State, Attempt: l.Attempt})
	}
	rec.State, rec.Generation = lifecycle.Succeeded, 1
	r := &lifecycleRun{first: first, second: second, record: rec, retried: true, retryOut: "leg " + demoFailLeg + " will run again as attempt 2"}
	shares := d.regionShares()
	for _, region := range rec.Regions() {
		id := "img-" + region
		if region == devHome {
			id = "img-home"
		}
		second.Images[region] = id
		if shares[region] != nil {
			second.SharedWith[region] = shares[region]
		}
		r.regions = append(r.regions, regionView{region: region, imageID: id, found: true, status: imsapi.ImageActive,
			tags: []string{"imsflow-family.web-base", "channel.stable"}, members: shares[region]})
	}
	return d, r
}

// TestLifecycleReport: the demo's report of its lifecycle exits 0 only
// when the leg made to fail failed alone, ran again alone (attempt 2),
// the second end succeeded, and every region has its image, active,
// with the members and tags declared; it names what went wrong, within
// 120 columns.
func TestLifecycleReport(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		change func(r *lifecycleRun)
		want   string // "": as expected
	}{
		{"as expected", func(*lifecycleRun) {}, ""},
		{"no end", func(r *lifecycleRun) {
			*r = lifecycleRun{err: errors.New("no end of the lifecycle of images:web/base-7.zvhd2 before the demo's time ran out")}
		}, "no end of the lifecycle"},
		{"nothing failed", func(r *lifecycleRun) {
			r.first.Status, r.retried, r.second, r.record, r.regions = events.StatusSucceeded, false, nil, nil, nil
			for i := range r.first.Legs {
				r.first.Legs[i].State = lifecycle.LegSucceeded
			}
		}, "first end: want exactly replicate:eu-west-101 failed IMS.0999, got none"},
		{"another leg failed too", func(r *lifecycleRun) {
			for i, l := range r.first.Legs {
				if l.Name == "share:ap-southeast-3" {
					r.first.Legs[i].State = lifecycle.LegFailed
				}
			}
		}, "got share:ap-southeast-3 failed, replicate:eu-west-101 failed IMS.0999"},
		{"the retry refused", func(r *lifecycleRun) { r.retryCode, r.second = exitError, nil }, "imsflow lifecycle retry exited 1"},
		{"retried twice", func(r *lifecycleRun) { setAttempt(r, demoFailLeg, 3) }, "replicate:eu-west-101 succeeded at attempt 3, want succeeded at attempt 2"},
		{"another leg ran again", func(r *lifecycleRun) { setAttempt(r, "tag:"+devHome, 2) }, "tag:cn-north-4 succeeded at attempt 2, want succeeded at attempt 1"},
		{"second end failed", func(r *lifecycleRun) { r.second.Status = events.StatusFailed }, "second end: want succeeded (generation 1), got failed"},
		{"an image missing", func(r *lifecycleRun) { r.regions[2].found = false }, "eu-west-101: image img-eu-west-101 is missing in IMS"},
		{"no image", func(r *lifecycleRun) { r.regions[1].imageID = "" }, "ap-southeast-3: no image"},
		{"not shared", func(r *lifecycleRun) { r.regions[1].members = nil }, "ap-southeast-3: shared with none (the event says 0000000000000000000000000a537ea7), want 0000000000000000000000000a537ea7"},
		{"untagged", func(r *lifecycleRun) { r.regions[0].tags = r.regions[0].tags[:1] }, "cn-north-4: image img-home lacks the tag channel=stable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, r := demoRunFixture(t)
			tt.change(r)
			var out bytes.Buffer
			code := d.report(&out, r, false)
			checkWidth(t, out.String(), terminalWidth)
			switch {
			case tt.want == "" && (code != exitOK || !strings.Contains(out.String(), "the lifecycle ended as expected")):
				t.Errorf("report = %d, want %d:\n%s", code, exitOK, out.String())
			case tt.want != "" && (code != exitError || !strings.Contains(out.String(), "the lifecycle did not end as expected:\n") ||
				!strings.Contains(strings.Join(strings.Fields(out.String()), " "), tt.want)): // as wrapped
				t.Errorf("report = %d, want %d and %q:\n%s", code, exitError, tt.want, out.String())
			}
		})
	}
}

func setAttempt(r *lifecycleRun, leg string, attempt int) {
	for i, l := range r.second.Legs {
		if l.Name == leg {
			r.second.Legs[i].Attempt = attempt
		}
	}
}
