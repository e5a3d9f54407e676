package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/functions/distribute/distributor"
	"github.com/imsflow/imsflow/functions/export/exporter"
	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/ingest/ingest"
	"github.com/imsflow/imsflow/functions/poller/poller"
	"github.com/imsflow/imsflow/internal/embedded"
	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/telemetry"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// devConfig is the local stack's own settings; the functions read theirs
// (IMPORT_*, EXPORT_*, POLL_*, ...) as they do when deployed.
type devConfig struct {
	DataDir      string  `env:"IMSFLOW_DATA" envDefault:".data"`
	NATSPort     int     `env:"IMSFLOW_NATS_PORT" envDefault:"4222"`
	EmulatorAddr string  `env:"IMSEMU_ADDR" envDefault:"127.0.0.1:8089"`
	TimeScale    float64 `env:"IMSEMU_TIME_SCALE" envDefault:"60"`
	ExportBucket string  `env:"EXPORT_BUCKET" envDefault:"exports"`
	IngestAddr   string  `env:"IMSFLOW_INGEST_ADDR" envDefault:"127.0.0.1:8090"`
}

// devEGToken is the EventGrid token of "imsflow dev" when INGEST_EG_TOKEN
// is not set: the ingest listens on loopback only.
const devEGToken = "imsflow-dev-token"

// The emulator of "imsflow dev" has three regions, the home region (where
// imports land, served at the emulator's root too) first, and one other
// account, "the team", with a project in each region: what image
// lifecycles copy to and share with (docs/lifecycle.md).
const (
	devHome        = "cn-north-4"
	devTeamDomain  = "00000000000000000000000000007ea7"
	devHomeProject = "0000000000000000000000000000f10c"
)

// devRegions are the emulator's regions and the projects of its own
// account there; devTeamProjects the team's projects, by region.
var (
	devRegions = []imsemu.Region{
		{Name: devHome, ProjectID: devHomeProject},
		{Name: "ap-southeast-3", ProjectID: "000000000000000000000000000af10c"},
		{Name: "eu-west-101", ProjectID: "000000000000000000000000000ef10c"},
	}
	devTeamProjects = map[string]string{
		devHome:          "0000000000000000000000000c047ea7",
		"ap-southeast-3": "0000000000000000000000000a537ea7",
		"eu-west-101":    "0000000000000000000000000e017ea7",
	}
)

// devRules are the routing rules of "imsflow dev" when IMPORT_RULES_FILE
// is not set: one rule, whose uploads (images:golden/...) run a lifecycle
// in the emulator's three regions; everything else is imported by the
// default rule, as without rules.
var devRules = fmt.Sprintf(`{"rules": [
  {"name": "golden", "bucket": "images", "prefix": "golden/", "image_type": "system", "os_version": "Ubuntu 22.04 server 64bit",
   "lifecycle": {
     "family": "golden",
     "share": {"projects": [%q]},
     "regions": [
       {"region": "ap-southeast-3", "agency_name": "ims_admin_agency", "share": {"projects": [%q]}},
       {"region": "eu-west-101", "agency_name": "ims_admin_agency"}],
     "tags": {"channel": "stable"},
     "keep_last": 3}}
]}
`, devTeamProjects[devHome], devTeamProjects["ap-southeast-3"])

// service is a function as the stack runs it: a runner, or the
// distribute function's two.
type service interface {
	Run(ctx context.Context) error
}

// stack is everything "imsflow dev" runs in one process.
type stack struct {
	nats    *server.Server
	emu     *imsemu.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	runners []service
	ingest  *ingest.Server
	// tel is the whole pipeline's telemetry, served on the ingest's
	// listener (/healthz, /readyz, /metrics).
	tel *telemetry.Telemetry
	// ingestLn is the ingest's listener, ingestURL its URL.
	ingestLn  net.Listener
	ingestURL string
}

// startStack starts the embedded NATS, the emulator (devRegions, and the
// team's account) and the four functions' runners (not yet running).
func startStack(ctx context.Context, cfg devConfig, environ map[string]string, log zerolog.Logger, emuCfg func(*imsemu.Config)) (*stack, error) {
	var icfg importer.Config
	var ecfg exporter.Config
	var pcfg poller.Config
	var dcfg distributor.Config
	var gcfg ingest.Config
	var s3 objstore.Config
	// The problems of every function in one list, each once (S3_* is
	// read by several).
	var problems imsconfig.EnvError
	seen := map[string]bool{}
	for _, c := range []any{&icfg, &ecfg, &pcfg, &dcfg, &gcfg, &s3} {
		var some imsconfig.EnvError
		err := imsconfig.ParseEnv(c, environ)
		if !errors.As(err, &some) && err != nil {
			return nil, err
		}
		for _, p := range some {
			if !seen[p.Error()] {
				seen[p.Error()] = true
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	if ecfg.DefaultBucket == "" {
		ecfg.DefaultBucket = cfg.ExportBucket
	}
	st := &stack{tel: telemetry.New()}
	st.tel.Ready("nats", telemetry.NotYet("not connected"))
	var err error
	if st.nats, err = embedded.Start(filepath.Join(cfg.DataDir, "nats"), cfg.NATSPort); err != nil {
		return nil, err
	}
	ec := imsemu.Config{
		Credentials: map[string]imsapi.Secret{"IMSFLOWLOCALAK": devSecretKey}, ProjectID: devHomeProject,
		TimeScale: cfg.TimeScale, AssumeObjects: true,
		Regions:  devRegions,
		Accounts: []imsemu.Account{{DomainID: devTeamDomain, Projects: devTeamProjects}},
	}
	if s3.Enabled() {
		// A real bucket (MinIO, scripts/minio.sh): the emulator checks and
		// writes the objects there.
		store, err := imsemu.NewS3Store(s3.Endpoint, s3.AccessKey, s3.SecretKey.Reveal(), s3.Secure)
		if err != nil {
			return nil, err
		}
		ec.Store, ec.AssumeObjects = store, false
	}
	if emuCfg != nil {
		emuCfg(&ec)
	}
	st.emu, err = imsemu.Listen(cfg.EmulatorAddr, ec)
	if err != nil { // the port is taken: any free one
		st.emu, err = imsemu.New(ec)
	}
	if err != nil {
		st.close()
		return nil, err
	}
	st.emu.AddBucket(ecfg.DefaultBucket)
	// One rate limit for every region's client, as a deployed function
	// has (internal/fnmain).
	opts := []imsapi.Option{imsapi.WithRateLimiter(rate.NewLimiter(50, 50)), imsapi.WithObserver(st.tel.IMS)}
	client, err := st.emu.Client(opts...)
	if err != nil {
		st.close()
		return nil, err
	}
	// The clients of the other regions: the distribute function copies
	// and shares there, and the poller asks each leg's region.
	home := imsemu.DefaultRegion
	if len(ec.Regions) > 0 {
		home = ec.Regions[0].Name
	}
	clients := map[string]*imsapi.Client{home: client}
	for _, r := range ec.Regions[min(1, len(ec.Regions)):] {
		if clients[r.Name], err = st.emu.RegionClient(r.Name, opts...); err != nil {
			st.close()
			return nil, err
		}
	}
	regions := imsconfig.RegionsFor(home, clients)
	if st.nc, err = nats.Connect(st.nats.ClientURL(), nats.InProcessServer(st.nats), nats.Name("imsflow-dev")); err != nil {
		st.close()
		return nil, err
	}
	if st.js, err = jetstream.New(st.nc); err != nil {
		st.close()
		return nil, err
	}
	st.tel.Ready("nats", telemetry.NATSConnected(st.nc))
	// The functions find the one telemetry and the region clients in the
	// context they are built with.
	ctx = imsconfig.NewContext(telemetry.NewContext(ctx, st.tel), regions)
	if err := runner.Ensure(ctx, st.js, runner.DefaultTopology(1)); err != nil {
		st.close()
		return nil, err
	}
	builds := []func() (service, error){
		func() (service, error) { return importer.New(ctx, icfg, client, st.js, log) },
		func() (service, error) { return exporter.New(ctx, ecfg, client, st.js, log) },
		func() (service, error) { return poller.New(ctx, pcfg, client, st.js, log) },
		func() (service, error) {
			return distributor.New(ctx, dcfg, distributor.RegionsOf(regions), nil, st.js, log)
		},
	}
	for _, b := range builds {
		r, err := b()
		if err != nil {
			st.close()
			return nil, err
		}
		st.runners = append(st.runners, r)
	}
	if gcfg.EGToken == "" {
		gcfg.EGToken = devEGToken
	}
	gcfg.Addr = cfg.IngestAddr
	if st.ingest, err = ingest.New(gcfg, st.js, log); err != nil {
		st.close()
		return nil, err
	}
	if err := st.ingest.Instrument(st.tel); err != nil {
		st.close()
		return nil, err
	}
	if st.ingestLn, err = net.Listen("tcp", cfg.IngestAddr); err != nil { // the port is taken: any free one
		st.ingestLn, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		st.close()
		return nil, err
	}
	scheme := "http"
	if gcfg.TLSCert != "" {
		scheme = "https"
	}
	st.ingestURL = scheme + "://" + st.ingestLn.Addr().String()
	return st, nil
}

// run runs the functions until ctx ends, then drains them.
func (st *stack) run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(st.runners)+1)
	for i, r := range st.runners {
		wg.Go(func() { errs[i] = r.Run(ctx) })
	}
	ln := st.ingestLn
	st.ingestLn = nil // Serve closes it
	wg.Go(func() { errs[len(st.runners)] = st.ingest.Serve(ctx, ln) })
	wg.Wait()
	for i, err := range errs {
		// Stopped before it was running, by ctx: no failure.
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			errs[i] = nil
		}
	}
	return errors.Join(errs...)
}

func (st *stack) close() {
	if st.ingestLn != nil {
		_ = st.ingestLn.Close()
	}
	if st.nc != nil {
		_ = st.nc.Drain()
	}
	if st.emu != nil {
		_ = st.emu.Close()
	}
	if st.nats != nil {
		st.nats.Shutdown()
		st.nats.WaitForShutdown()
	}
}

const devUsage = `usage: imsflow dev [flags]

Runs the whole pipeline in this process: NATS with JetStream (embedded,
its data in a directory that one imsflow dev at a time may use), the IMS
emulator, the import, export, poller and distribute functions, and the
HTTP ingest; prints how to send it work. The emulator has three regions
(cn-north-4, where imports land, ap-southeast-3 and eu-west-101) and
another account with a project in each, for image lifecycles to copy to
and share with. Without IMPORT_RULES_FILE, dev writes its own rules file
into the data directory: uploads under images:golden/ run a lifecycle
(docs/lifecycle.md), the rest is imported as without rules. The
functions read their own settings (IMPORT_*, EXPORT_*, POLL_*,
DISTRIBUTE_*, INGEST_*, S3_*) as when deployed. Ctrl-C stops.
`

func runDev(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	var cfg devConfig
	// A wrong variable is reported after the flags, so that -h answers.
	envErr := imsconfig.ParseEnv(&cfg, environ)
	fs := newFlags("imsflow dev", devUsage)
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory of the embedded NATS's data (IMSFLOW_DATA)")
	fs.IntVar(&cfg.NATSPort, "nats-port", cfg.NATSPort, "loopback port of the embedded NATS; a free one if taken (IMSFLOW_NATS_PORT)")
	fs.StringVar(&cfg.EmulatorAddr, "emulator-addr", cfg.EmulatorAddr, "address of the IMS emulator; a free port if taken (IMSEMU_ADDR)")
	fs.Float64Var(&cfg.TimeScale, "time-scale", cfg.TimeScale, "IMS jobs run this many times faster than IMS would (IMSEMU_TIME_SCALE)")
	fs.StringVar(&cfg.IngestAddr, "ingest-addr", cfg.IngestAddr, "address of the HTTP ingest; a free loopback port if taken (IMSFLOW_INGEST_ADDR)")
	jsonLogs := fs.Bool("json", false, "log JSON lines instead of text")
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	switch {
	case envErr != nil:
		fmt.Fprintf(stderr, "imsflow dev: %v\n", envErr)
		return exitUsage
	case fs.NArg() > 0:
		return fs.fail(stderr, "unexpected arguments %q", fs.Args())
	case !(cfg.TimeScale > 0):
		return fs.fail(stderr, "-time-scale must be positive")
	}
	lock, err := lockDataDir(cfg.DataDir)
	var inUse *dataDirInUseError
	if errors.As(err, &inUse) {
		fmt.Fprintf(stderr, "imsflow dev: %v\n", err)
		return exitInUse
	}
	if err != nil {
		fmt.Fprintf(stderr, "imsflow dev: %v\n", err)
		return exitError
	}
	defer lock.release()
	env, rules, ownRules, err := devEnviron(environ, cfg.DataDir)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow dev: %v\n", err)
		return exitError
	}
	var logOut io.Writer = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}
	if *jsonLogs {
		logOut = stderr
	}
	log := zerolog.New(logOut).With().Timestamp().Logger()
	st, err := startStack(ctx, cfg, env, log, nil)
	var badSetting imsconfig.EnvError
	if errors.As(err, &badSetting) {
		fmt.Fprintf(stderr, "imsflow dev: %v\n", err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "imsflow dev: %v\n", err)
		return exitError
	}
	defer st.close()
	natsURL := st.nats.ClientURL()
	if err := lock.note(fmt.Sprintf("PID %d, NATS at %s, HTTP ingest at %s, IMS emulator at %s", os.Getpid(), natsURL, st.ingestURL, st.emu.URL)); err != nil {
		fmt.Fprintf(stderr, "imsflow dev: %v\n", err)
		return exitError
	}
	rulesNote := "(IMPORT_RULES_FILE)"
	if ownRules {
		rulesNote = "(dev's own: uploads under images:golden/ run a lifecycle; IMPORT_RULES_FILE replaces it)"
	}
	var others []string
	for _, r := range devRegions[1:] {
		others = append(others, r.Name)
	}
	fmt.Fprintf(stdout, `imsflow dev: the whole pipeline in this process
  NATS with JetStream  %s   (data in %s)
  IMS emulator         %s   (jobs run %gx faster than IMS; any object named is taken to exist)
    regions            %s (imports land here), %s; each at %s
    another account    %s, a project in each region (lifecycles share with it)
  functions            import, export, poller, distribute, ingest
  routing rules        %s   %s
  HTTP ingest          %s   (POST /eventgrid, /smn; GET /healthz, /readyz, /metrics of the whole pipeline)

Send an upload notification (nats CLI: go install github.com/nats-io/natscli/nats@latest):
  nats -s %s pub imsflow.in.objects.demo '{"Records":[{"eventVersion":"2.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"images"},"object":{"key":"web-01.zvhd2","size":5368709120,"eTag":"e1"}}}]}'
Or post it as EventGrid would, to the HTTP ingest:
  curl -H 'Authorization: Bearer %s' -H 'Content-Type: application/cloudevents+json' %s/eventgrid -d '{"specversion":"1.0","id":"1","source":"HC.OBS.DWR","type":"OBS:DWR:ObjectCreated:PUT","data":{"eventName":"ObjectCreated:Put","obs":{"bucket":{"name":"images"},"object":{"key":"web-02.zvhd2","size":5368709120,"eTag":"e2"}}}}'
Ask for an export:
  nats -s %s pub imsflow.in.export '{"image_id":"<id from the succeeded event>"}'
`, natsURL, filepath.Join(cfg.DataDir, "nats"), st.emu.URL, cfg.TimeScale, devHome, strings.Join(others, ", "), st.emu.RegionURL("<region>"),
		devTeamDomain, rules, rulesNote, st.ingestURL, natsURL, egToken(environ), st.ingestURL, natsURL)
	if ownRules {
		fmt.Fprintf(stdout, `See an image lifecycle: an upload under golden/ is copied to %s, shared with the other account and tagged:
  nats -s %s pub imsflow.in.objects.demo '{"Records":[{"eventVersion":"2.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"images"},"object":{"key":"golden/web-base-1.zvhd2","size":5368709120,"eTag":"g1"}}}]}'
`, strings.Join(others, " and "), natsURL)
	}
	fmt.Fprintf(stdout, `Watch what happens:
  NATS_URL=%s imsflow watch          (or: nats -s %s sub 'imsflow.out.>')
  NATS_URL=%s imsflow lifecycle      (image lifecycles; then: imsflow lifecycle show ID, retry ID LEG)
Ctrl-C stops.
`, natsURL, natsURL, natsURL)
	if err := st.run(ctx); err != nil {
		fmt.Fprintf(stderr, "imsflow dev: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, "imsflow dev: stopped")
	return exitOK
}

// devRulesFile is the file dev writes devRules to, in its data directory.
const devRulesFile = "rules.json"

// devEnviron is the environment dev's functions read: environ (nil: the
// process's) and, when IMPORT_RULES_FILE is not set, IMPORT_RULES_FILE
// naming devRules, written afresh into the data directory. It returns the
// rules file the functions read and whether it is dev's own.
func devEnviron(environ map[string]string, dataDir string) (map[string]string, string, bool, error) {
	env := environMap(environ)
	if f := env["IMPORT_RULES_FILE"]; f != "" {
		return env, f, false, nil
	}
	f := filepath.Join(dataDir, devRulesFile)
	if err := os.WriteFile(f, []byte(devRules), 0o644); err != nil {
		return nil, "", false, fmt.Errorf("dev's rules file: %w", err)
	}
	env["IMPORT_RULES_FILE"] = f
	return env, f, true, nil
}

// environMap is a copy of environ, or of the process environment when
// environ is nil.
func environMap(environ map[string]string) map[string]string {
	env := make(map[string]string, len(environ))
	for k, v := range environ {
		env[k] = v
	}
	if environ == nil {
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

// egToken is the EventGrid token the dev ingest takes, as the banner shows
// it: the development default, or a reminder of the variable set.
func egToken(environ map[string]string) string {
	v, ok := environ["INGEST_EG_TOKEN"]
	if environ == nil {
		v, ok = os.LookupEnv("INGEST_EG_TOKEN")
	}
	if ok && v != "" {
		return "$INGEST_EG_TOKEN"
	}
	return devEGToken
}
