package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/natsconn"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

const lifecycleUsage = `usage:
  imsflow lifecycle                  every image lifecycle: its rule, family, state and legs
  imsflow lifecycle show ID          one lifecycle's legs as a tree (also "imsflow status ID")
  imsflow lifecycle retry ID LEG     run one failed or refused leg again, alone
  imsflow lifecycle latest FAMILY    the family's latest images, region by region

Lifecycles are declared per routing rule (docs/lifecycle.md). NATS is found
with NATS_URL and the other NATS_* settings.
`

func runLifecycle(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	fs := newFlags("imsflow lifecycle", lifecycleUsage)
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	want := map[string]int{"": 0, "list": 0, "show": 1, "retry": 2, "latest": 1}
	verb := fs.Arg(0)
	n, ok := want[verb]
	if !ok {
		return fs.fail(stderr, "unknown subcommand %q", verb)
	}
	if rest := max(fs.NArg()-1, 0); rest != n {
		return fs.fail(stderr, "%s takes %d arguments, got %d", verb, n, rest)
	}
	e, err := parseBulkEnv(environ)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow lifecycle: %v\n", err)
		return exitUsage
	}
	nc, js, err := e.NATS.ConnectContext(ctx, "imsflow-lifecycle")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow lifecycle: %v\n", err)
		return exitError
	}
	defer nc.Close()
	store, err := lifecycleStore(ctx, js, e.NATS)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow lifecycle: %v\n", err)
		return exitError
	}
	switch verb {
	case "show":
		return showLifecycle(ctx, store, fs.Arg(1), stdout, stderr)
	case "retry":
		return retryLeg(ctx, js, store, fs.Arg(1), fs.Arg(2), stdout, stderr)
	case "latest":
		return showLatest(ctx, store, fs.Arg(1), stdout, stderr)
	}
	return listLifecycles(ctx, store, stdout, stderr)
}

func lifecycleStore(ctx context.Context, js jetstream.JetStream, c natsconn.Config) (*lifecycle.Store, error) {
	kv, err := js.KeyValue(ctx, runner.BucketLifecycles)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketLifecycles, noImsflow(err, c))
	}
	return &lifecycle.Store{KV: kv, JS: js, Now: time.Now}, nil
}

func showLifecycle(ctx context.Context, store *lifecycle.Store, id string, stdout, stderr io.Writer) int {
	rec, _, err := store.Load(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow lifecycle: %v\n", err)
		return exitError
	}
	lifecycle.WriteTree(stdout, rec)
	return exitOK
}

// retryLeg asks the distribute function to run one leg again. The request
// is checked here first, for a clear answer, and the function checks it
// again; its message ID makes a repeated command one request.
func retryLeg(ctx context.Context, js jetstream.JetStream, store *lifecycle.Store, id, leg string, stdout, stderr io.Writer) int {
	rec, _, err := store.Load(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow lifecycle retry: %v\n", err)
		return exitError
	}
	l := rec.Leg(leg)
	if l == nil || (l.State != lifecycle.LegFailed && l.State != lifecycle.LegRefused) {
		var failed []string
		for _, f := range rec.FailedLegs() {
			failed = append(failed, f.Name)
		}
		state := "not a leg of it"
		if l != nil {
			state = l.State
		}
		fmt.Fprintf(stderr, "imsflow lifecycle retry: %s is %s; legs that can be retried: %v\n", leg, state, failed)
		return exitError
	}
	body, _ := json.Marshal(events.LifecycleRetry{Lifecycle: id, Leg: leg})
	msgID := "retry:" + id + ":" + leg + ":" + strconv.Itoa(l.Attempt)
	if _, err := js.Publish(ctx, events.SubjectLifecycleRetry, body, jetstream.WithMsgID(msgID)); err != nil {
		fmt.Fprintf(stderr, "imsflow lifecycle retry: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "leg %s of lifecycle %s (attempt %d %s: %s) will run again as attempt %d\n", leg, id, l.Attempt, l.State, l.Reason, l.Attempt+1)
	return exitOK
}

func showLatest(ctx context.Context, store *lifecycle.Store, family string, stdout, stderr io.Writer) int {
	p, _, err := store.Latest(ctx, family)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "imsflow lifecycle latest: %v\n", err)
		return exitError
	case p == nil:
		fmt.Fprintf(stderr, "imsflow lifecycle latest: family %s has no latest image yet\n", family)
		return exitError
	}
	fmt.Fprintf(stdout, "family %s: lifecycle %s, imported %s, set %s\n", family, p.Lifecycle, p.ImportedAt.Format(time.RFC3339), p.SetAt.Format(time.RFC3339))
	regions := make([]string, 0, len(p.Images))
	for r := range p.Images {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	for _, r := range regions {
		fmt.Fprintf(stdout, "  %-20s %s\n", r, p.Images[r])
	}
	return exitOK
}

func listLifecycles(ctx context.Context, store *lifecycle.Store, stdout, stderr io.Writer) int {
	keys, err := store.KV.ListKeysFiltered(ctx, "l.*")
	if err != nil {
		fmt.Fprintf(stderr, "imsflow lifecycle: %v\n", err)
		return exitError
	}
	var recs []*lifecycle.Record
	for k := range keys.Keys() {
		rec, _, err := store.Load(ctx, k[len("l."):])
		if errors.Is(err, lifecycle.ErrNotFound) {
			continue
		}
		if err != nil {
			fmt.Fprintf(stderr, "imsflow lifecycle: %v\n", err)
			return exitError
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		fmt.Fprintln(stdout, "no lifecycles")
		return exitOK
	}
	slices.SortFunc(recs, func(a, b *lifecycle.Record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIFECYCLE\tRULE\tFAMILY\tSTATE\tLEGS\tSTARTED")
	for _, r := range recs {
		counts := map[string]int{}
		for _, l := range r.Legs {
			counts[l.State]++
		}
		var parts []string
		for _, st := range []string{lifecycle.LegSucceeded, lifecycle.LegRunning, lifecycle.LegPending, lifecycle.LegFailed, lifecycle.LegRefused, lifecycle.LegBlocked} {
			if counts[st] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", r.ID, r.Rule, r.Family, r.State, parts, r.CreatedAt.Format(time.RFC3339))
	}
	_ = tw.Flush()
	return exitOK
}
