package batches

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
)

// TestBatchCompletesOnce: items counted once however often they are seen,
// the batch opened after some ended, one completion event with the totals.
func TestBatchCompletesOnce(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	if err := runner.Ensure(t.Context(), js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan *nats.Msg, 10)
	if _, err := nc.ChanSubscribe(events.SubjectBatchCompleted, done); err != nil {
		t.Fatal(err)
	}
	c, err := New(t.Context(), js, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ok1 := events.JobFinished{JobID: "j1", Kind: events.KindImport, Status: events.StatusSucceeded, BatchID: "b"}
	ok2 := events.JobFinished{JobID: "j2", Kind: events.KindImport, Status: events.StatusSucceeded, BatchID: "b"}
	rej := events.Rejected{Kind: events.KindImport, ReasonCode: events.ReasonEmptyFile, Source: &events.Source{Bucket: "x", Key: "e.qcow2"}, BatchID: "b"}
	other := events.JobFinished{JobID: "j9", Kind: events.KindImport, Status: events.StatusFailed, BatchID: "other"}
	if err := c.Ended(ctx, ok1, ok1, rej, other); err != nil { // ok1 twice
		t.Fatal(err)
	}
	if err := c.Open(ctx, "b", 3, nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Get(ctx, "b"); r.Completed || r.Ended() != 2 {
		t.Fatalf("record before the last item = %+v", r)
	}
	if err := c.Ended(ctx, ok2, rej); err != nil { // the last item, and a repeat
		t.Fatal(err)
	}
	var got events.BatchCompleted
	select {
	case m := <-done:
		if err := json.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
	case <-time.After(testenv.Patience):
		t.Fatalf("no batch completion in %s", testenv.Patience)
	}
	if got.BatchID != "b" || got.Total != 3 || got.ByStatus[events.StatusSucceeded] != 2 || got.ByStatus[events.StatusRejected] != 1 {
		t.Errorf("completion = %+v", got)
	}
	if err := c.Ended(ctx, ok2); err != nil {
		t.Fatal(err)
	}
	if err := c.Open(ctx, "b", 5, nil); err != nil { // a second open changes nothing
		t.Fatal(err)
	}
	if r, _ := c.Get(ctx, "b"); r.Total != 3 || r.Ended() != 3 || !r.Completed {
		t.Errorf("record after = %+v", r)
	}
	select {
	case m := <-done:
		t.Errorf("a second completion: %s", m.Data)
	default:
	}
	if r, _ := c.Get(ctx, "other"); r.Completed || r.Total != 0 || r.Counts[events.StatusFailed] != 1 {
		t.Errorf("unopened batch = %+v", r)
	}
}
