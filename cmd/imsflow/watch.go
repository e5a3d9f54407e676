package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/natsconn"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

const watchUsage = `usage: imsflow watch [-json] [-all] [-n N] [-batch ID]

Prints imsflow's output events (imsflow.out.>) as they arrive, one line
each, stamped with the time the event was published (its ce-time), so
that events replayed with -all keep their own times. A finished job shows
how long IMS ran it (IMS's begin_time to end_time). NATS_URL (and the
other NATS_* variables) say where NATS is.
`

// runWatch prints imsflow's output events as they arrive: one line each
// for a person, or the JSON with -json.
func runWatch(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	fs := newFlags("imsflow watch", watchUsage)
	asJSON := fs.Bool("json", false, "print each event as one JSON line: {subject, type, id, time, data}")
	all := fs.Bool("all", false, "start from the oldest event kept, not from now")
	count := fs.Int("n", 0, "exit after this many events (0: until interrupted)")
	batch := fs.String("batch", "", "only events of this batch")
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	var cfg natsconn.Config
	if err := imsconfig.ParseEnv(&cfg, environ); err != nil {
		fmt.Fprintf(stderr, "imsflow watch: %v\n", err)
		return exitUsage
	}
	nc, js, err := cfg.ConnectContext(ctx, "imsflow-watch")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow watch: %v\n", err)
		return exitError
	}
	defer nc.Close()
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectOut}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *all {
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, runner.StreamOut, cc)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow watch: %v (is imsflow running against %s?)\n", err, cfg.RedactedURL())
		return exitError
	}
	msgs, err := cons.Messages()
	if err != nil {
		fmt.Fprintf(stderr, "imsflow watch: %v\n", err)
		return exitError
	}
	go func() { <-ctx.Done(); msgs.Stop() }()
	seen := 0
	for {
		m, err := msgs.Next()
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintf(stderr, "imsflow watch: %v\n", err)
			return exitError
		}
		if *batch != "" && !strings.Contains(string(m.Data()), `"batch_id":"`+*batch+`"`) {
			continue
		}
		at := msgTime(m)
		if *asJSON {
			line, _ := json.Marshal(map[string]any{"subject": m.Subject(), "type": m.Headers().Get(events.HeaderType),
				"id": m.Headers().Get(events.HeaderID), "time": at.UTC(), "data": json.RawMessage(m.Data())})
			fmt.Fprintln(stdout, string(line))
		} else {
			fmt.Fprintln(stdout, describeAt(m.Subject(), m.Data(), at, time.Now()))
		}
		seen++
		if *count > 0 && seen >= *count {
			return exitOK
		}
	}
}

// msgTime is when an output event happened: its ce-time, else the time
// its body carries, else when the stream stored it.
func msgTime(m jetstream.Msg) time.Time {
	if t := eventTime(m.Headers(), m.Data()); !t.IsZero() {
		return t
	}
	if md, err := m.Metadata(); err == nil && !md.Timestamp.IsZero() {
		return md.Timestamp
	}
	return time.Now()
}

// eventTime is the event's own time: the CloudEvents ce-time header, else
// the first of at, finished_at and ended_at in its body; zero when it has
// none.
func eventTime(h nats.Header, data []byte) time.Time {
	if v := h.Get(events.HeaderTime); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t
		}
	}
	var body struct {
		At         time.Time `json:"at"`
		FinishedAt time.Time `json:"finished_at"`
		EndedAt    time.Time `json:"ended_at"`
	}
	_ = json.Unmarshal(data, &body)
	for _, t := range []time.Time{body.At, body.FinishedAt, body.EndedAt} {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// describe turns an output event into one line a person can read, stamped
// with the time its body carries (now when it carries none).
func describe(subject string, data []byte) string {
	now := time.Now()
	at := eventTime(nil, data)
	if at.IsZero() {
		at = now
	}
	return describeAt(subject, data, at, now)
}

// describeAt turns an output event that happened at into one line a
// person can read; the time is of day when at is on now's date.
func describeAt(subject string, data []byte, at, now time.Time) string {
	stamp := clockTime(at, now)
	var f events.JobFinished
	var r events.Rejected
	switch {
	case strings.HasSuffix(subject, ".rejected") && json.Unmarshal(data, &r) == nil:
		what := ""
		if r.Source != nil {
			what = r.Source.Bucket + ":" + r.Source.Key
		} else if r.Request != nil {
			what = "export of " + r.Request.ImageID
		}
		return fmt.Sprintf("%s %-6s rejected   %s  %s: %s", stamp, r.Kind, what, r.ReasonCode, r.Reason)
	case subject == events.SubjectProgress:
		var p events.Progress
		_ = json.Unmarshal(data, &p)
		return fmt.Sprintf("%s %-6s progress   job %s  %3.0f%%  %s", stamp, p.Kind, p.JobID, p.Percent*100, p.CurrentTask)
	case strings.HasSuffix(subject, ".stalled"):
		var s events.Stalled
		_ = json.Unmarshal(data, &s)
		return fmt.Sprintf("%s %-6s stalled    job %s  %s at %.0f%% since %s", stamp, s.Kind, s.JobID, s.ImageName, s.Percent*100, clockTime(s.StalledSince, now))
	case strings.HasSuffix(subject, ".waiting"):
		var w events.Waiting
		_ = json.Unmarshal(data, &w)
		what := ""
		if w.Source != nil {
			what = w.Source.Bucket + ":" + w.Source.Key
		}
		return fmt.Sprintf("%s %-6s waiting    %s  for %s until %s", stamp, w.Kind, what, w.Missing, clockTime(w.Until, now))
	case subject == events.SubjectBatchCompleted:
		var b events.BatchCompleted
		_ = json.Unmarshal(data, &b)
		return fmt.Sprintf("%s batch  completed  %s  %d items: %s", stamp, b.BatchID, b.Total, statusTotals(b.ByStatus))
	case strings.HasPrefix(subject, events.SubjectLifecyclePrefix):
		var l events.LifecycleCompleted
		_ = json.Unmarshal(data, &l)
		regions := make([]string, 0, len(l.Images))
		for r := range l.Images {
			regions = append(regions, r)
		}
		slices.Sort(regions)
		line := fmt.Sprintf("%s lifecycle %-9s %s  rule %s  family %s  generation %d  images in %s", stamp, l.Status, l.Lifecycle, l.Rule, l.Family, l.Generation, strings.Join(regions, ", "))
		for _, leg := range l.Legs {
			if leg.State != "succeeded" {
				line += fmt.Sprintf("  %s %s", leg.Name, leg.State)
			}
		}
		return line
	case json.Unmarshal(data, &f) == nil && f.JobID != "":
		what := f.BucketURL
		if f.Leg != nil {
			what = f.Leg.Leg + " of lifecycle " + f.Leg.Lifecycle
		}
		if f.Source != nil && f.Leg == nil {
			what = f.Source.Bucket + ":" + f.Source.Key
		}
		line := fmt.Sprintf("%s %-6s %-10s %s  image %s (%s)  %s  %s  %d polls", stamp, f.Kind, f.Status, what, f.ImageName, f.ImageID, f.Method, seconds(f.DurationSeconds), f.Polls)
		if f.ErrorCode != "" || f.FailReason != "" {
			line += fmt.Sprintf("  %s %s", f.ErrorCode, f.FailReason)
		}
		return line
	}
	return fmt.Sprintf("%s %s %s", stamp, subject, data)
}

// clockTime is t in local time: the time of day when t is on now's date,
// else the date too.
func clockTime(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format(time.TimeOnly)
	}
	return t.Format(time.DateTime)
}

// seconds is a duration in seconds as a person reads it: "0.4s", "6.7s",
// "42s", "6m40s", "2h05m".
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d <= 0:
		return "0s"
	case d < 50*time.Millisecond:
		return "<0.1s"
	case d < 10*time.Second-50*time.Millisecond:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute-time.Second/2:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d < time.Hour-time.Second/2:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// statusTotals is a batch's totals in words, the usual outcomes first:
// "28 succeeded, 1 failed, 8 rejected".
func statusTotals(by map[events.Status]int) string {
	order := []events.Status{events.StatusSucceeded, events.StatusFailed, events.StatusTimedOut, events.StatusRejected}
	var parts []string
	for _, st := range order {
		if n := by[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	var rest []events.Status
	for st, n := range by {
		if n > 0 && !slices.Contains(order, st) {
			rest = append(rest, st)
		}
	}
	slices.Sort(rest)
	for _, st := range rest {
		name := string(st)
		if name == "" {
			name = "without an outcome"
		}
		parts = append(parts, fmt.Sprintf("%d %s", by[st], name))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
