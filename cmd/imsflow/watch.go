package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/natsconn"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

// runWatch prints imsflow's output events as they arrive: one line each
// for a person, or the JSON with -json.
func runWatch(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	var cfg natsconn.Config
	opts := env.Options{}
	if environ != nil {
		opts.Environment = environ
	}
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
		fmt.Fprintf(stderr, "imsflow watch: %v\n", err)
		return exitUsage
	}
	fs := flag.NewFlagSet("imsflow watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print each event as one JSON line: {subject, type, id, data}")
	all := fs.Bool("all", false, "start from the oldest event kept, not from now")
	count := fs.Int("n", 0, "exit after this many events (0: until interrupted)")
	batch := fs.String("batch", "", "only events of this batch")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	nc, js, err := cfg.Connect("imsflow-watch")
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
		fmt.Fprintf(stderr, "imsflow watch: %v (is imsflow running against %s?)\n", err, cfg.URL)
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
		if *asJSON {
			line, _ := json.Marshal(map[string]any{"subject": m.Subject(), "type": m.Headers().Get(events.HeaderType),
				"id": m.Headers().Get(events.HeaderID), "data": json.RawMessage(m.Data())})
			fmt.Fprintln(stdout, string(line))
		} else {
			fmt.Fprintln(stdout, describe(m.Subject(), m.Data()))
		}
		seen++
		if *count > 0 && seen >= *count {
			return exitOK
		}
	}
}

// describe turns an output event into one line a person can read.
func describe(subject string, data []byte) string {
	now := time.Now().Format(time.TimeOnly)
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
		return fmt.Sprintf("%s %-6s rejected   %s  %s: %s", now, r.Kind, what, r.ReasonCode, r.Reason)
	case subject == events.SubjectProgress:
		var p events.Progress
		_ = json.Unmarshal(data, &p)
		return fmt.Sprintf("%s %-6s progress   job %s  %3.0f%%  %s", now, p.Kind, p.JobID, p.Percent*100, p.CurrentTask)
	case strings.HasSuffix(subject, ".stalled"):
		var s events.Stalled
		_ = json.Unmarshal(data, &s)
		return fmt.Sprintf("%s %-6s stalled    job %s  %s at %.0f%% since %s", now, s.Kind, s.JobID, s.ImageName, s.Percent*100, s.StalledSince.Format(time.TimeOnly))
	case subject == events.SubjectBatchCompleted:
		var b events.BatchCompleted
		_ = json.Unmarshal(data, &b)
		return fmt.Sprintf("%s batch  completed  %s  %d items %v", now, b.BatchID, b.Total, b.ByStatus)
	case json.Unmarshal(data, &f) == nil && f.JobID != "":
		what := f.BucketURL
		if f.Source != nil {
			what = f.Source.Bucket + ":" + f.Source.Key
		}
		line := fmt.Sprintf("%s %-6s %-10s %s  image %s (%s)  %s  %.0fs  %d polls", now, f.Kind, f.Status, what, f.ImageName, f.ImageID, f.Method, f.DurationSeconds, f.Polls)
		if f.ErrorCode != "" || f.FailReason != "" {
			line += fmt.Sprintf("  %s %s", f.ErrorCode, f.FailReason)
		}
		return line
	}
	return fmt.Sprintf("%s %s %s", now, subject, data)
}
