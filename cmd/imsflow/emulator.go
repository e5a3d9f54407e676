package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// devSecretKey is the built-in secret key of the local emulator (see the
// IMSEMU_SK default): it guards nothing but a loopback port, and is printed
// so a client can be pointed at it. A secret key the user sets is not.
const devSecretKey = "imsflow-local-secret-key"

// emulatorConfig is read from the environment (IMSEMU_*); flags override it.
type emulatorConfig struct {
	Addr        string        `env:"IMSEMU_ADDR" envDefault:"127.0.0.1:8089"`
	AccessKey   string        `env:"IMSEMU_AK" envDefault:"IMSFLOWLOCALAK"`
	SecretKey   string        `env:"IMSEMU_SK" envDefault:"imsflow-local-secret-key"`
	Token       string        `env:"IMSEMU_TOKEN"`
	ProjectID   string        `env:"IMSEMU_PROJECT_ID" envDefault:"0000000000000000000000000000f10c"`
	ImportMiB   int64         `env:"IMSEMU_IMPORT_SPEED_MIB" envDefault:"256"`
	ExportMiB   int64         `env:"IMSEMU_EXPORT_SPEED_MIB" envDefault:"512"`
	TimeScale   float64       `env:"IMSEMU_TIME_SCALE" envDefault:"1"`
	Init        time.Duration `env:"IMSEMU_INIT" envDefault:"2s"`
	RateLimit   float64       `env:"IMSEMU_RATE_LIMIT" envDefault:"0"`
	RateBurst   int           `env:"IMSEMU_RATE_BURST" envDefault:"10"`
	MaxJobs     int           `env:"IMSEMU_MAX_JOBS" envDefault:"40"`
	Quota       int           `env:"IMSEMU_QUOTA" envDefault:"50"`
	ErrorRate   float64       `env:"IMSEMU_ERROR_RATE" envDefault:"0"`
	DropRate    float64       `env:"IMSEMU_DROP_RATE" envDefault:"0"`
	AcceptDrop  bool          `env:"IMSEMU_ACCEPT_BEFORE_DROP" envDefault:"false"`
	Latency     time.Duration `env:"IMSEMU_LATENCY" envDefault:"0s"`
	ObjectsFile string        `env:"IMSEMU_OBJECTS"`
	RulesFile   string        `env:"IMSEMU_FAILURES"`
	Seed        uint64        `env:"IMSEMU_SEED" envDefault:"1"`
	S3Endpoint  string        `env:"IMSEMU_S3_ENDPOINT"`
	S3AccessKey string        `env:"IMSEMU_S3_ACCESS_KEY"`
	S3SecretKey string        `env:"IMSEMU_S3_SECRET_KEY"`
	S3Secure    bool          `env:"IMSEMU_S3_SECURE"`
	// Regions lists region[=project_id], the first the home region
	// (its project -project); AccountsFile, other accounts (JSON).
	Regions      string `env:"IMSEMU_REGIONS"`
	AccountsFile string `env:"IMSEMU_ACCOUNTS"`
}

// emulatorRegions parses -regions: region[=project_id], comma-separated.
func emulatorRegions(list, homeProject string) []imsemu.Region {
	var out []imsemu.Region
	for part := range strings.SplitSeq(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, project, _ := strings.Cut(part, "=")
		if len(out) == 0 && project == "" {
			project = homeProject
		}
		out = append(out, imsemu.Region{Name: strings.TrimSpace(name), ProjectID: strings.TrimSpace(project)})
	}
	return out
}

const emulatorUsage = `usage: imsflow emulator [flags]

Runs the local IMS emulator: the IMS API on one address, AK/SK signed, its
jobs taking the time IMS's would (divided by -time-scale), with faults to
inject; it prints the variables that point imsflow at it. Every flag has
an IMSEMU_* variable too; a flag overrides it.
`

func runEmulator(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	var cfg emulatorConfig
	// A wrong variable is reported after the flags, so that -h answers.
	envErr := imsconfig.ParseEnv(&cfg, environ)
	fs := newFlags("imsflow emulator", emulatorUsage)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (IMSEMU_ADDR)")
	fs.StringVar(&cfg.AccessKey, "ak", cfg.AccessKey, "access key clients sign with (IMSEMU_AK)")
	fs.StringVar(&cfg.SecretKey, "sk", cfg.SecretKey, "its secret key (IMSEMU_SK)")
	fs.StringVar(&cfg.Token, "token", cfg.Token, "an X-Auth-Token to accept too (IMSEMU_TOKEN)")
	fs.StringVar(&cfg.ProjectID, "project", cfg.ProjectID, "project ID (IMSEMU_PROJECT_ID)")
	fs.Int64Var(&cfg.ImportMiB, "import-speed", cfg.ImportMiB, "MiB an import job handles per emulated second (IMSEMU_IMPORT_SPEED_MIB)")
	fs.Int64Var(&cfg.ExportMiB, "export-speed", cfg.ExportMiB, "MiB an export job handles per emulated second (IMSEMU_EXPORT_SPEED_MIB)")
	fs.Float64Var(&cfg.TimeScale, "time-scale", cfg.TimeScale, "divide job durations by this (IMSEMU_TIME_SCALE)")
	fs.DurationVar(&cfg.Init, "init", cfg.Init, "emulated time a job stays INIT, 0 for none (IMSEMU_INIT)")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", cfg.RateLimit, "requests per second per AK, 0 for none; above it 429 APIGW.0308 (IMSEMU_RATE_LIMIT)")
	fs.IntVar(&cfg.RateBurst, "rate-burst", cfg.RateBurst, "burst of the rate limit (IMSEMU_RATE_BURST)")
	fs.IntVar(&cfg.MaxJobs, "max-jobs", cfg.MaxJobs, "running import jobs before IMG.0194, negative for no cap (IMSEMU_MAX_JOBS)")
	fs.IntVar(&cfg.Quota, "quota", cfg.Quota, "private image quota, negative for none (IMSEMU_QUOTA)")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", cfg.ErrorRate, "fraction of requests answered 500/503 (IMSEMU_ERROR_RATE)")
	fs.Float64Var(&cfg.DropRate, "drop-rate", cfg.DropRate, "fraction of connections dropped unanswered (IMSEMU_DROP_RATE)")
	fs.BoolVar(&cfg.AcceptDrop, "accept-before-drop", cfg.AcceptDrop, "a dropped submission takes effect first: IMS started the job, the caller never heard (IMSEMU_ACCEPT_BEFORE_DROP)")
	fs.DurationVar(&cfg.Latency, "latency", cfg.Latency, "added to every answer (IMSEMU_LATENCY)")
	fs.StringVar(&cfg.ObjectsFile, "objects", cfg.ObjectsFile, "JSON file: [{bucket,key,size,storage_class}] (IMSEMU_OBJECTS)")
	fs.StringVar(&cfg.RulesFile, "failures", cfg.RulesFile, "JSON file: [{key_pattern,error_code,fail_reason}] (IMSEMU_FAILURES)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of IDs and injected faults (IMSEMU_SEED)")
	fs.StringVar(&cfg.S3Endpoint, "s3-endpoint", cfg.S3Endpoint, "host:port of an S3 API (MinIO, OBS) to check imports against and write exports to (IMSEMU_S3_ENDPOINT)")
	fs.StringVar(&cfg.S3AccessKey, "s3-access-key", cfg.S3AccessKey, "its access key (IMSEMU_S3_ACCESS_KEY)")
	fs.BoolVar(&cfg.S3Secure, "s3-secure", cfg.S3Secure, "use HTTPS to it (IMSEMU_S3_SECURE)")
	fs.StringVar(&cfg.Regions, "regions", cfg.Regions, "regions as region[=project_id],...; the first is IMS_ENDPOINT's, each served at /region/<name> (IMSEMU_REGIONS)")
	fs.StringVar(&cfg.AccountsFile, "accounts", cfg.AccountsFile, "JSON file: other accounts [{domain_id,credentials,projects}] to share with (IMSEMU_ACCOUNTS)")
	if code, ok := fs.parse(args, stdout, stderr); !ok {
		return code
	}
	if envErr != nil {
		fmt.Fprintf(stderr, "imsflow emulator: %v\n", envErr)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return fs.fail(stderr, "unexpected arguments %q", fs.Args())
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" || cfg.ImportMiB <= 0 || cfg.ExportMiB <= 0 || !(cfg.TimeScale > 0) || cfg.Init < 0 {
		fmt.Fprintln(stderr, "imsflow emulator: -ak and -sk must be set, speeds and time scale positive, -init not negative")
		return exitUsage
	}
	initDuration := cfg.Init
	if initDuration == 0 {
		initDuration = -1 // imsemu: negative is no INIT (0 would be its default)
	}
	ecfg := imsemu.Config{
		Credentials:    map[string]imsapi.Secret{cfg.AccessKey: imsapi.Secret(cfg.SecretKey)},
		ProjectID:      cfg.ProjectID,
		ImportSpeed:    cfg.ImportMiB << 20,
		ExportSpeed:    cfg.ExportMiB << 20,
		TimeScale:      cfg.TimeScale,
		InitDuration:   initDuration,
		RateLimit:      cfg.RateLimit,
		RateBurst:      cfg.RateBurst,
		MaxRunningJobs: cfg.MaxJobs,
		ImageQuota:     cfg.Quota,
		Faults:         imsemu.Faults{ErrorRate: cfg.ErrorRate, DropRate: cfg.DropRate, AcceptBeforeDrop: cfg.AcceptDrop, Latency: imsemu.Duration(cfg.Latency)},
		Seed:           cfg.Seed,
	}
	if cfg.Token != "" {
		ecfg.Tokens = []imsapi.Secret{imsapi.Secret(cfg.Token)}
	}
	regions := emulatorRegions(cfg.Regions, cfg.ProjectID)
	ecfg.Regions = regions
	if cfg.S3Endpoint != "" {
		// The secret key comes from the environment only, never a flag,
		// so it stays out of process listings.
		store, err := imsemu.NewS3Store(cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Secure)
		if err != nil {
			fmt.Fprintf(stderr, "imsflow emulator: %v\n", err)
			return exitUsage
		}
		ecfg.Store = store
	}
	var objects []imsemu.Object
	var rules []imsemu.FailureRule
	for _, f := range []struct {
		path string
		into any
	}{{cfg.ObjectsFile, &objects}, {cfg.RulesFile, &rules}, {cfg.AccountsFile, &ecfg.Accounts}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err == nil {
			err = json.Unmarshal(b, f.into)
		}
		if err != nil {
			fmt.Fprintf(stderr, "imsflow emulator: %s: %v\n", f.path, err)
			return exitUsage
		}
	}
	s, err := imsemu.Listen(cfg.Addr, ecfg)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow emulator: %v\n", err)
		return exitUsage
	}
	for _, o := range objects {
		s.PutObject(o)
	}
	for _, r := range rules {
		if err := s.AddFailureRule(r); err != nil {
			fmt.Fprintf(stderr, "imsflow emulator: %v\n", err)
			_ = s.Close()
			return exitUsage
		}
	}
	sk := "(the secret key you set)"
	if cfg.SecretKey == devSecretKey {
		sk = devSecretKey
	}
	fmt.Fprintf(stdout, "IMS emulator listening on %s\n", s.URL)
	fmt.Fprintf(stdout, "  export IMS_ENDPOINT=%s HUAWEICLOUD_SDK_AK=%s HUAWEICLOUD_SDK_SK=%s HUAWEICLOUD_SDK_PROJECT_ID=%s\n",
		s.URL, cfg.AccessKey, sk, cfg.ProjectID)
	if len(regions) > 1 {
		var others []string
		for _, r := range regions[1:] {
			rc, _ := s.Region(r.Name)
			others = append(others, rc.Name+"="+rc.ProjectID)
		}
		fmt.Fprintf(stdout, "  export IMS_REGION=%s IMS_REGIONS=%s IMS_REGION_ENDPOINT=%s\n", regions[0].Name, strings.Join(others, ","), s.RegionURL("{region}"))
	}
	fmt.Fprintf(stdout, "  controls: %s%s{stats,submissions,images,objects,faults,failures,fail-next}\n", s.URL, imsemu.AdminPrefix)
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(shutdown); err != nil {
		_ = s.Close()
	}
	fmt.Fprintln(stdout, "IMS emulator stopped")
	return exitOK
}
