// Package batches keeps the totals of batches (SPEC sections 5 and 6):
// every item that ends (a job's completion, a rejection) is counted once
// in its batch, and when the batch's last item has ended,
// imsflow.out.batch.completed is published once.
package batches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/pkg/events"
)

// Record is a batch's state in the imsflow_batches bucket.
type Record struct {
	BatchID   string                `json:"batch_id"`
	Total     int                   `json:"total"` // 0 until the batch is opened
	Counts    map[events.Status]int `json:"counts"`
	StartedAt time.Time             `json:"started_at"`
	EndedAt   time.Time             `json:"ended_at,omitzero"`
	Labels    map[string]string     `json:"labels,omitempty"`
	Completed bool                  `json:"completed,omitempty"`
}

// Ended is the number of items that ended.
func (r Record) Ended() int {
	n := 0
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// Counter counts batch items in the imsflow_batches bucket.
type Counter struct {
	kv       jetstream.KeyValue
	js       jetstream.JetStream
	function string
	now      func() time.Time
}

// New returns a counter; function is the ce-source of the completion event.
func New(ctx context.Context, js jetstream.JetStream, function string) (*Counter, error) {
	kv, err := js.KeyValue(ctx, runner.BucketBatches)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", runner.BucketBatches, err)
	}
	return &Counter{kv: kv, js: js, function: function, now: time.Now}, nil
}

func recordKey(batch string) string { return "b." + events.Hash(batch, 40) }

// Open declares a batch and its size; items may have ended before.
func (c *Counter) Open(ctx context.Context, batch string, total int, labels map[string]string) error {
	if batch == "" || total < 1 {
		return errors.New("batches: a batch needs an ID and at least one item")
	}
	return c.update(ctx, batch, func(r *Record) bool {
		if r.Total != 0 {
			return false
		}
		r.Total, r.Labels = total, labels
		return true
	})
}

// Get returns a batch's record.
func (c *Counter) Get(ctx context.Context, batch string) (Record, error) {
	e, err := c.kv.Get(ctx, recordKey(batch))
	if err != nil {
		return Record{}, err
	}
	var r Record
	err = json.Unmarshal(e.Value(), &r)
	return r, err
}

// Ended counts the events that end a batch item (JobFinished other than
// stalled, Rejected), each once however often it is seen.
func (c *Counter) Ended(ctx context.Context, evs ...events.Event) error {
	for _, e := range evs {
		var batch string
		var status events.Status
		switch v := e.(type) {
		case events.JobFinished:
			batch, status = v.BatchID, v.Status
		case events.Rejected:
			batch, status = v.BatchID, events.StatusRejected
		}
		if batch == "" {
			continue
		}
		mark := "i." + events.Hash(batch, 40) + "." + events.Hash(e.ID(), 40)
		if _, err := c.kv.Create(ctx, mark, []byte(status)); ledger.Conflict(err) {
			continue // counted before
		} else if err != nil {
			return fmt.Errorf("count batch item: %w", err)
		}
		if err := c.update(ctx, batch, func(r *Record) bool {
			r.Counts[status]++
			return true
		}); err != nil {
			return err
		}
	}
	return nil
}

// update changes a batch's record by compare-and-set, then publishes the
// completion when the last item has ended.
func (c *Counter) update(ctx context.Context, batch string, change func(*Record) bool) error {
	key := recordKey(batch)
	for attempt := 0; attempt < 50; attempt++ {
		var r Record
		var rev uint64
		e, err := c.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			r = Record{BatchID: batch, StartedAt: c.now().UTC()}
		case err != nil:
			return fmt.Errorf("read batch %s: %w", batch, err)
		default:
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				return fmt.Errorf("batch %s: %w", batch, err)
			}
			rev = e.Revision()
		}
		if r.Counts == nil {
			r.Counts = map[events.Status]int{}
		}
		if !change(&r) {
			return nil
		}
		done := !r.Completed && r.Total > 0 && r.Ended() >= r.Total
		if done {
			r.Completed, r.EndedAt = true, c.now().UTC()
			// Publish before recording: a crash in between publishes again
			// under the same Nats-Msg-Id.
			ev := events.BatchCompleted{BatchID: batch, Total: r.Total, ByStatus: r.Counts, StartedAt: r.StartedAt, EndedAt: r.EndedAt, Labels: r.Labels}
			if err := runner.Publish(ctx, c.js, c.function, ev); err != nil {
				return err
			}
		}
		b, _ := json.Marshal(r)
		if rev == 0 {
			_, err = c.kv.Create(ctx, key, b)
		} else {
			_, err = c.kv.Update(ctx, key, b, rev)
		}
		if ledger.Conflict(err) {
			continue // another writer got there first: read again
		}
		if err != nil {
			return fmt.Errorf("record batch %s: %w", batch, err)
		}
		return nil
	}
	return fmt.Errorf("batch %s: too much contention", batch)
}
