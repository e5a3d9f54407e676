// Package distributor is the distribute function: it runs the lifecycle
// a routing rule declares for the images it imports (internal/lifecycle):
// once an import succeeded, it plans the legs (copies, shares, tags, the
// family's latest pointer, retention, the source object), submits each
// leg's IMS job and hands it to the poller, advances the lifecycle as the
// poller reports each leg's end, runs a failed leg again on request, and
// publishes the whole picture when no leg can move.
//
// It consumes through two durable consumers: "distribute" on the output
// stream (imports that succeeded, legs that ended) and "distribute-retry"
// on the input stream (LifecycleRetry requests).
package distributor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/lifecycle"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Function names the function and its main consumer; RetryFunction the
// consumer of retry requests. Each is also a dead-letter subject.
const (
	Function      = "distribute"
	RetryFunction = "distribute-retry"
)

// Subjects are what the main consumer takes of runner.StreamOut: imports
// that succeeded and legs that ended; RetrySubjects what the retry
// consumer takes of runner.StreamIn.
var (
	Subjects = []string{
		events.OutSubject(events.KindImport, events.StatusSucceeded),
		events.OutSubject(events.KindDistribute, events.StatusSucceeded),
		events.OutSubject(events.KindDistribute, events.StatusFailed),
		events.OutSubject(events.KindDistribute, events.StatusTimedOut),
	}
	RetrySubjects = []string{events.SubjectLifecycleRetry}
)

// Config of the distribute function, read from the environment.
type Config struct {
	// RulesFile is the import's rules file: the lifecycles are declared
	// there, per rule.
	RulesFile string `env:"IMPORT_RULES_FILE"`
	// ClaimTTL is after how long a leg's unfinished attempt is taken over
	// (after looking for what it did).
	ClaimTTL time.Duration `env:"DISTRIBUTE_CLAIM_TTL" envDefault:"2m"`
	// SlotWait is the wait when the tenant's cross-region copies are all
	// running (IMS runs 5 at once); SlotTTL frees a replication slot that
	// no poller released.
	SlotWait time.Duration `env:"DISTRIBUTE_SLOT_WAIT" envDefault:"30s"`
	SlotTTL  time.Duration `env:"DISTRIBUTE_SLOT_TTL" envDefault:"12h"`
	// ThrottleWait is the wait after IMS throttles without Retry-After.
	ThrottleWait time.Duration `env:"IMS_THROTTLE_WAIT" envDefault:"5s"`
	// Objects is the bucket access (S3_*) that source_object: delete needs.
	Objects     objstore.Config
	Workers     int           `env:"DISTRIBUTE_WORKERS" envDefault:"4"`
	AckWait     time.Duration `env:"DISTRIBUTE_ACK_WAIT" envDefault:"60s"`
	MaxFailures int           `env:"DISTRIBUTE_MAX_FAILURES" envDefault:"100"`
}

// Check validates the combinations of settings (New checks them too).
func (c Config) Check() error {
	if c.ClaimTTL <= c.AckWait {
		return fmt.Errorf("DISTRIBUTE_CLAIM_TTL (%s) must be longer than DISTRIBUTE_ACK_WAIT (%s)", c.ClaimTTL, c.AckWait)
	}
	if c.SlotWait <= 0 || c.SlotTTL <= 0 {
		return errors.New("DISTRIBUTE_SLOT_WAIT and DISTRIBUTE_SLOT_TTL must be positive")
	}
	return nil
}

// IMS is what the function needs of IMS in one region; *imsapi.Client
// has it.
type IMS interface {
	Image(ctx context.Context, id string) (*imsapi.Image, error)
	ListImages(ctx context.Context, opts *imsapi.ListImagesOptions) (*imsapi.ImagePage, error)
	CopyImageInRegion(ctx context.Context, imageID string, r *imsapi.CopyImageInRegionRequest) (*imsapi.JobRef, error)
	CopyImageCrossRegion(ctx context.Context, imageID string, r *imsapi.CopyImageCrossRegionRequest) (*imsapi.JobRef, error)
	BatchAddMembers(ctx context.Context, r *imsapi.BatchAddMembersRequest) (*imsapi.JobRef, error)
	ListImageMembers(ctx context.Context, imageID string) (*imsapi.ImageMembers, error)
	BatchAddOrDeleteTags(ctx context.Context, imageID string, r *imsapi.BatchAddOrDeleteTagsRequest) error
	GlanceDeleteImage(ctx context.Context, imageID string) error
}

// Regions gives each region's IMS by name; Home is the region imports
// land in.
type Regions struct {
	Home   string
	Client func(region string) (IMS, error)
}

// RegionsOf is the Regions of a process's region clients (nil: the home
// region's only, which the process then lacks: every leg fails, saying so).
func RegionsOf(r *imsconfig.Regions) Regions {
	if r == nil {
		return Regions{Client: func(region string) (IMS, error) {
			return nil, fmt.Errorf("no IMS client for region %q", region)
		}}
	}
	return Regions{Home: r.Home, Client: func(region string) (IMS, error) {
		c, err := r.Client(region)
		if err != nil {
			return nil, err
		}
		return c, nil
	}}
}

// Objects deletes uploaded objects (a lifecycle's source_object: delete),
// one version, never a newer upload under the same key
// (objstore.ErrReplaced); *objstore.Store has it.
type Objects interface {
	RemoveVersion(ctx context.Context, bucket, key, versionID, etag string) error
}

// Service is the function's work: its two runners.
type Service struct{ runners []*runner.Runner }

// Run runs both consumers until ctx ends, then drains them.
func (s *Service) Run(ctx context.Context) error {
	errs := make([]error, len(s.runners))
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, r := range s.runners {
		wg.Go(func() {
			errs[i] = r.Run(ctx)
			cancel() // one stopped: stop the other
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// New returns the distribute function's service on js. The topology
// (runner.Ensure) must exist. Without objects, the bucket access of
// cfg.Objects is used, if configured.
func New(ctx context.Context, cfg Config, regions Regions, objects Objects, js jetstream.JetStream, log zerolog.Logger) (*Service, error) {
	if objects == nil && cfg.Objects.Enabled() {
		store, err := objstore.New(cfg.Objects)
		if err != nil {
			return nil, err
		}
		objects = store
	}
	d, main, retry, err := build(ctx, cfg, regions, objects, js)
	if err != nil {
		return nil, err
	}
	var s Service
	for _, rc := range []runner.Config{main, retry} {
		h := d.handle
		if rc.Function == RetryFunction {
			h = d.handleRetry
		}
		r, err := runner.New(js, rc, h, log)
		if err != nil {
			return nil, err
		}
		s.runners = append(s.runners, r)
	}
	return &s, nil
}

// build is New without the runners: the handler and the runners'
// configurations, which tests tune.
func build(ctx context.Context, cfg Config, regions Regions, objects Objects, js jetstream.JetStream) (*distributor, runner.Config, runner.Config, error) {
	if err := cfg.Check(); err != nil {
		return nil, runner.Config{}, runner.Config{}, err
	}
	rules, err := importer.LoadRules(cfg.RulesFile)
	if err != nil {
		return nil, runner.Config{}, runner.Config{}, err
	}
	kv, err := js.KeyValue(ctx, runner.BucketLifecycles)
	if err != nil {
		return nil, runner.Config{}, runner.Config{}, fmt.Errorf("bucket %s: %w", runner.BucketLifecycles, err)
	}
	slots, err := js.KeyValue(ctx, runner.BucketSlots)
	if err != nil {
		return nil, runner.Config{}, runner.Config{}, fmt.Errorf("bucket %s: %w", runner.BucketSlots, err)
	}
	d := &distributor{cfg: cfg, rules: rules, regions: regions, objects: objects, js: js, slots: slots, now: time.Now}
	d.store = &lifecycle.Store{KV: kv, JS: js, Now: func() time.Time { return d.now() }}
	tel := telemetry.FromContext(ctx)
	main := runner.Config{Function: Function, Stream: runner.StreamOut, Subjects: Subjects,
		AckWait: cfg.AckWait, MaxFailures: cfg.MaxFailures, Workers: cfg.Workers, Observer: tel.Runner(Function)}
	retry := runner.Config{Function: RetryFunction, Stream: runner.StreamIn, Subjects: RetrySubjects,
		AckWait: cfg.AckWait, MaxFailures: cfg.MaxFailures, Workers: 1, Observer: tel.Runner(RetryFunction)}
	return d, main, retry, nil
}

type distributor struct {
	cfg     Config
	rules   importer.Rules
	regions Regions
	objects Objects
	store   *lifecycle.Store
	js      jetstream.JetStream
	slots   jetstream.KeyValue // BucketSlots: repl.<n>, the tenant's cross-region copies running
	now     func() time.Time
}

// rule returns the rule labelled label, if it declares a lifecycle.
func (d *distributor) rule(label string) (importer.Rule, bool) {
	for _, r := range d.rules.Rules {
		if r.Label() == label && r.Lifecycle.Active() {
			return r, true
		}
	}
	return importer.Rule{}, false
}

// ims is region's IMS ("" the home region's).
func (d *distributor) ims(region string) (IMS, error) {
	if region == "" {
		region = d.regions.Home
	}
	return d.regions.Client(region)
}
