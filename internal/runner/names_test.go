package runner

import (
	"slices"
	"strings"
	"testing"

	"github.com/imsflow/imsflow/pkg/events"
)

// subjectMatches reports whether the concrete subject s matches the
// filter f (with * and > wildcards).
func subjectMatches(f, s string) bool {
	ft, st := strings.Split(f, "."), strings.Split(s, ".")
	for i, tok := range ft {
		switch {
		case tok == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case tok != "*" && tok != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

// TestEverySubjectInOneStream: every subject imsflow publishes or
// consumes falls in exactly one stream of the topology, so nothing is
// published into the void and no message is stored twice.
func TestEverySubjectInOneStream(t *testing.T) {
	subjects := []string{
		events.SubjectObjectsPrefix + "minio", events.SubjectObjectsPrefix + "obs", events.SubjectObjectsPrefix + "bulk",
		SubjectRejoin, SubjectSplit, events.SubjectExportRequests,
		events.SubjectJobSubmitted, SubjectPollPrefix + "j.0123", SubjectSchedPollPrefix + "j.0123",
		SubjectSweep, SubjectSweepSched,
		events.SubjectProgress, events.SubjectBatchCompleted, events.SubjectDLQPrefix + "import",
	}
	for _, k := range []events.Kind{events.KindImport, events.KindExport} {
		for _, s := range []events.Status{events.StatusSucceeded, events.StatusFailed, events.StatusTimedOut,
			events.StatusRejected, events.StatusStalled, events.StatusWaiting} {
			subjects = append(subjects, events.OutSubject(k, s))
		}
	}
	top := DefaultTopology(1)
	for _, s := range subjects {
		var in []string
		for _, sc := range top.Streams {
			if slices.ContainsFunc(sc.Subjects, func(f string) bool { return subjectMatches(f, s) }) {
				in = append(in, sc.Name)
			}
		}
		if len(in) != 1 {
			t.Errorf("%s is in streams %v, want exactly one", s, in)
		}
	}
	// The internal subjects a timer schedules into, and the schedules
	// themselves, share a stream: JetStream requires it.
	for sched, target := range map[string]string{SubjectSchedPollPrefix + "k": SubjectPollPrefix + "k", SubjectSweepSched: SubjectSweep} {
		if streamOf(top, sched) != streamOf(top, target) {
			t.Errorf("schedule %s and its target %s are in different streams", sched, target)
		}
	}
}

func streamOf(top Topology, s string) string {
	for _, sc := range top.Streams {
		if slices.ContainsFunc(sc.Subjects, func(f string) bool { return subjectMatches(f, s) }) {
			return sc.Name
		}
	}
	return ""
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		f, s string
		want bool
	}{
		{"imsflow.in.>", "imsflow.in.objects.minio", true},
		{"imsflow.in.>", "imsflow.in", false},
		{"imsflow.out.*.succeeded", "imsflow.out.import.succeeded", true},
		{"imsflow.out.*.succeeded", "imsflow.out.import.failed", false},
		{"imsflow.jobs.submitted", "imsflow.jobs.submitted", true},
		{"imsflow.jobs.submitted", "imsflow.jobs.submitted.x", false},
	} {
		if got := subjectMatches(c.f, c.s); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v", c.f, c.s, got)
		}
	}
}
