package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/ledger"
)

// Store keeps lifecycle records and family pointers in a KV bucket
// (runner.BucketLifecycles). Every write is a compare-and-set on the
// revision read, so two replicas acting on one lifecycle never both win.
type Store struct {
	KV  jetstream.KeyValue
	Now func() time.Time
	// JS, when set, makes every read ask the bucket's stream leader
	// (ledger.LeaderGet): a KV get is answered by any replica, and one
	// that lags hands back a record older than the write just made, after
	// which nothing would run the legs that write made ready.
	JS jetstream.JetStream
}

// get reads key's last revision: from the stream's leader when JS is set.
func (s *Store) get(ctx context.Context, key string) ([]byte, uint64, error) {
	if s.JS != nil {
		e, err := ledger.LeaderGet(ctx, s.JS, s.KV.Bucket(), key)
		return e.Value, e.Revision, err
	}
	e, err := s.KV.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

// ErrNotFound: no lifecycle has that ID.
var ErrNotFound = errors.New("lifecycle not found")

// changeTries bounds Change's attempts when others keep writing.
const changeTries = 8

// Key is the KV key of a lifecycle: l.<id>.
func Key(id string) string { return "l." + id }

// Create stores a new lifecycle's record. If one exists (an earlier
// delivery of the same import's success), it returns that one and false.
func (s *Store) Create(ctx context.Context, r *Record) (*Record, bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, false, err
	}
	_, err = s.KV.Create(ctx, Key(r.ID), b)
	switch {
	case err == nil:
		return r, true, nil
	case !ledger.Conflict(err):
		return nil, false, fmt.Errorf("store lifecycle %s: %w", r.ID, err)
	}
	old, _, err := s.Load(ctx, r.ID)
	return old, false, err
}

// Load reads a lifecycle and the revision it was read at.
func (s *Store) Load(ctx context.Context, id string) (*Record, uint64, error) {
	b, rev, err := s.get(ctx, Key(id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	case err != nil:
		return nil, 0, fmt.Errorf("read lifecycle %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, 0, fmt.Errorf("lifecycle %s is not JSON: %w", id, err)
	}
	return &r, rev, nil
}

// Change reads a lifecycle, lets f change it, and writes it back at the
// revision read, reading again and calling f again when another write
// came first. f reports whether it changed anything; when it did not,
// nothing is written. Change returns the record as written (or as read).
func (s *Store) Change(ctx context.Context, id string, f func(*Record) (bool, error)) (*Record, error) {
	for range changeTries {
		r, rev, err := s.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		changed, err := f(r)
		if err != nil || !changed {
			return r, err
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		_, err = s.KV.Update(ctx, Key(id), b, rev)
		switch {
		case err == nil:
			return r, nil
		case !ledger.Conflict(err):
			return nil, fmt.Errorf("write lifecycle %s: %w", id, err)
		}
	}
	return nil, fmt.Errorf("write lifecycle %s: %d writes in a row lost to others", id, changeTries)
}

// Pointer is a family's latest images: what a deployment reads.
type Pointer struct {
	Family    string            `json:"family"`
	Lifecycle string            `json:"lifecycle"`
	Images    map[string]string `json:"images"` // region: image ID
	// ImportedAt orders the family's images: a pointer never moves to an
	// image imported before the one it names.
	ImportedAt time.Time `json:"imported_at"`
	SetAt      time.Time `json:"set_at"`
}

// PointerKey is the KV key of a family's pointer.
func PointerKey(family string) string { return "latest." + family }

// Latest reads a family's pointer (nil when it has none).
func (s *Store) Latest(ctx context.Context, family string) (*Pointer, uint64, error) {
	b, rev, err := s.get(ctx, PointerKey(family))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, fmt.Errorf("read the latest of %s: %w", family, err)
	}
	var p Pointer
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, 0, fmt.Errorf("the latest of %s is not JSON: %w", family, err)
	}
	return &p, rev, nil
}

// SetLatest points the family at p unless it names an image imported
// later (a lifecycle that ends after a newer one does not take the
// pointer back), and reports whether the pointer names p's lifecycle.
func (s *Store) SetLatest(ctx context.Context, p Pointer) (bool, error) {
	for range changeTries {
		cur, rev, err := s.Latest(ctx, p.Family)
		if err != nil {
			return false, err
		}
		if cur != nil && (cur.Lifecycle == p.Lifecycle || cur.ImportedAt.After(p.ImportedAt)) {
			return cur.Lifecycle == p.Lifecycle, nil
		}
		p.SetAt = s.Now().UTC()
		b, err := json.Marshal(p)
		if err != nil {
			return false, err
		}
		if cur == nil {
			_, err = s.KV.Create(ctx, PointerKey(p.Family), b)
		} else {
			_, err = s.KV.Update(ctx, PointerKey(p.Family), b, rev)
		}
		switch {
		case err == nil:
			return true, nil
		case !ledger.Conflict(err):
			return false, fmt.Errorf("set the latest of %s: %w", p.Family, err)
		}
	}
	return false, fmt.Errorf("set the latest of %s: %d writes in a row lost to others", p.Family, changeTries)
}
