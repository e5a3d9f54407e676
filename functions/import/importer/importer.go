// Package importer is the import function: it turns object-created
// notifications into IMS import jobs (SPEC section 3) and hands each job to
// the poller. The function's main (functions/import) and "imsflow dev"
// both run it.
package importer

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/internal/batches"
	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/events"
)

// Function is the name of the consumer and of the dead-letter subject.
const Function = "import"

// Stream holds what the function consumes (object notifications),
// through its durable consumer, named Function.
const Stream = runner.StreamIn

// Subjects are what the function's consumer takes of Stream.
var Subjects = []string{events.SubjectObjects}

// Config of the import function, read from the environment.
type Config struct {
	// RulesFile maps bucket and key prefix to import settings (JSON, see Rules).
	RulesFile string `env:"IMPORT_RULES_FILE"`
	// ImgAsRaw treats .img files as RAW.
	ImgAsRaw bool `env:"IMPORT_IMG_AS_RAW"`
	// BitmapWait bounds how long a RAW file waits for its .mf bitmap.
	BitmapWait time.Duration `env:"IMPORT_BITMAP_WAIT" envDefault:"30m"`
	// BitmapPoll is how often a waiting RAW file looks again.
	BitmapPoll time.Duration `env:"IMPORT_BITMAP_POLL" envDefault:"2m"`
	// ClaimTTL is after how long an unfinished attempt is taken over.
	ClaimTTL time.Duration `env:"IMPORT_CLAIM_TTL" envDefault:"2m"`
	// MaxInFlight caps IMS image-creation jobs in flight (0: no cap).
	MaxInFlight int `env:"IMS_MAX_INFLIGHT" envDefault:"40"`
	// SlotTTL frees an in-flight slot that no poller released.
	SlotTTL time.Duration `env:"IMPORT_SLOT_TTL" envDefault:"6h"`
	// SlotWait is the wait when every slot is taken.
	SlotWait time.Duration `env:"IMPORT_SLOT_WAIT" envDefault:"20s"`
	// ThrottleWait is the wait after IMS throttles without Retry-After.
	ThrottleWait time.Duration `env:"IMS_THROTTLE_WAIT" envDefault:"5s"`
	// Objects is the bucket access (S3_*): where set, each image's first
	// and last bytes are read to check its format and virtual size, and
	// what its rule verifies is verified (Verify).
	Objects objstore.Config
	// HashBudget is how long one delivery reads an object to check its
	// SHA-256 before it saves how far it got and comes back for more; 0
	// is a third of AckWait (20s by default).
	HashBudget time.Duration `env:"IMPORT_HASH_BUDGET"`
	// ChecksumWait bounds how long an object whose rule requires a
	// checksum waits for its checksum file; ChecksumPoll is how often it
	// looks again meanwhile (0: 2m).
	ChecksumWait time.Duration `env:"IMPORT_CHECKSUM_WAIT" envDefault:"30m"`
	ChecksumPoll time.Duration `env:"IMPORT_CHECKSUM_POLL" envDefault:"2m"`
	// Workers and AckWait tune the consumer; MaxFailures is how many
	// failed deliveries send a message to the dead letters (waits do not
	// count). An import mostly waits (four NATS round trips, the IMS
	// request, the bucket's bytes), so a process runs many at once:
	// BenchmarkFanOut gains 1.5x from 4 workers to 16 and little beyond.
	Workers     int           `env:"IMPORT_WORKERS" envDefault:"16"`
	AckWait     time.Duration `env:"IMPORT_ACK_WAIT" envDefault:"60s"`
	MaxFailures int           `env:"IMPORT_MAX_FAILURES" envDefault:"100"`
}

// IMS is what the import function needs of IMS; *imsapi.Client has it.
type IMS = imsAPI

// Check validates the combinations of settings (New checks them too).
func (c Config) Check() error {
	switch {
	case c.BitmapWait < 0 || c.BitmapPoll <= 0:
		return fmt.Errorf("IMPORT_BITMAP_WAIT must not be negative and IMPORT_BITMAP_POLL must be positive")
	case c.ClaimTTL <= c.AckWait:
		return fmt.Errorf("IMPORT_CLAIM_TTL (%s) must be longer than IMPORT_ACK_WAIT (%s), or a slow attempt could be taken over", c.ClaimTTL, c.AckWait)
	case c.MaxInFlight < 0:
		return fmt.Errorf("IMS_MAX_INFLIGHT must not be negative")
	case c.MaxInFlight > 0 && (c.SlotTTL <= 0 || c.SlotWait <= 0):
		return fmt.Errorf("IMPORT_SLOT_TTL and IMPORT_SLOT_WAIT must be positive")
	case c.HashBudget < 0 || c.HashBudget > c.ackWait()/2:
		return fmt.Errorf("IMPORT_HASH_BUDGET (%s) must not be negative nor above half of IMPORT_ACK_WAIT (%s): a delivery must save its reading in time", c.HashBudget, c.ackWait())
	case c.ChecksumWait < 0 || c.ChecksumPoll < 0:
		return fmt.Errorf("IMPORT_CHECKSUM_WAIT and IMPORT_CHECKSUM_POLL must not be negative")
	}
	return nil
}

// ackWait is AckWait, or the runner's default when it is 0.
func (c Config) ackWait() time.Duration { return cmp.Or(c.AckWait, 60*time.Second) }

// New returns the import function's runner on js, calling ims. The
// topology (runner.Ensure) must exist. The process's telemetry, if ctx
// carries one (telemetry.NewContext), observes the runner and reports the
// in-flight slots.
func New(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream, log zerolog.Logger) (*runner.Runner, error) {
	h, rc, err := build(ctx, cfg, ims, js)
	if err != nil {
		return nil, err
	}
	return runner.New(js, rc, h.handle, log)
}

// build is New without the runner: the handler and its runner's
// configuration, which tests tune.
func build(ctx context.Context, cfg Config, ims IMS, js jetstream.JetStream) (*importer, runner.Config, error) {
	if err := cfg.Check(); err != nil {
		return nil, runner.Config{}, err
	}
	rules, err := LoadRules(cfg.RulesFile)
	if err != nil {
		return nil, runner.Config{}, err
	}
	if req := rules.checksumRequired(); len(req) > 0 && !cfg.Objects.Enabled() {
		return nil, runner.Config{}, fmt.Errorf("rules %v require checksums (verify.checksum required), which are read from the bucket: set S3_ENDPOINT", req)
	}
	imports, err := js.KeyValue(ctx, runner.BucketImports)
	if err != nil {
		return nil, runner.Config{}, fmt.Errorf("bucket %s: %w", runner.BucketImports, err)
	}
	slots, err := js.KeyValue(ctx, runner.BucketSlots)
	if err != nil {
		return nil, runner.Config{}, fmt.Errorf("bucket %s: %w", runner.BucketSlots, err)
	}
	h := &importer{
		cfg: handlerConfig{
			route: routeConfig{Rules: rules, ImgAsRaw: cfg.ImgAsRaw}, BitmapWait: cfg.BitmapWait, BitmapPoll: cfg.BitmapPoll,
			ClaimTTL: cfg.ClaimTTL, MaxInFlight: cfg.MaxInFlight, SlotTTL: cfg.SlotTTL, SlotWait: cfg.SlotWait, ThrottleWait: cfg.ThrottleWait,
			HashBudget: cmp.Or(cfg.HashBudget, cfg.ackWait()/3), HashLease: cfg.ackWait(), hashChunk: defaultHashChunk,
			ChecksumWait: cfg.ChecksumWait, ChecksumPoll: cmp.Or(cfg.ChecksumPoll, 2*time.Minute),
		},
		ims: ims, imports: imports, slots: slots, js: js, now: time.Now,
	}
	h.ledger = &ledger.Ledger{KV: imports, TTL: cfg.ClaimTTL, Now: func() time.Time { return h.now() }}
	if cfg.Objects.Enabled() {
		store, err := objstore.New(cfg.Objects)
		if err != nil {
			return nil, runner.Config{}, err
		}
		h.objects = store
	}
	counter, err := batches.New(ctx, js, Function)
	if err != nil {
		return nil, runner.Config{}, err
	}
	tel := telemetry.FromContext(ctx)
	if err := tel.Slots(cfg.MaxInFlight, telemetry.KeyCount(slots, runner.SlotKeys)); err != nil {
		return nil, runner.Config{}, err
	}
	if h.hashed, err = hashedCounter(tel); err != nil {
		return nil, runner.Config{}, err
	}
	return h, runner.Config{
		Function: Function, Stream: Stream, Subjects: Subjects,
		AckWait: cfg.AckWait, MaxFailures: cfg.MaxFailures, Workers: cfg.Workers,
		Published: func(ctx context.Context, evs []events.Event) error { return counter.Ended(ctx, evs...) },
		Observer:  tel.Runner(Function),
	}, nil
}
