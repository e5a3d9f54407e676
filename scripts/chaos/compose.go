package main

// The compose backend (-compose DIR, make test-cluster): the same
// workload, feed and accounting as the process backend, run against
// imsflow's own compose deployment (deploy/compose) in real containers,
// with faults carried out by docker (scenarios.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The services a run starts: the compose file's own three NATS nodes, two
// replicas of each function and the emulator; not MinIO, its bucket set-up
// or the ingest, which the workload does not use.
var (
	natsServices     = []string{"nats-1", "nats-2", "nats-3"}
	functionServices = []string{"import-1", "import-2", "export-1", "export-2", "poller-1", "poller-2", "distribute-1", "distribute-2"}
	emulatorService  = "emulator"
)

// exitSkipped is what -preflight exits with when Docker is not usable
// and not required: the Makefile turns it into a pass.
const exitSkipped = 3

// composeRun is one compose project of the harness.
type composeRun struct {
	dir      string   // the compose directory (deploy/compose), absolute
	tool     []string // docker compose, or docker-compose
	version  string   // the compose tool's version line
	project  string   // imsflow-ct-<pid>
	runDir   string
	override string // <run>/override.yaml
	envFile  string // <run>/functions.env
	env      []string
	notes    func(format string, args ...any) // the timeline

	ports      map[string]int // IMSFLOW_*_PORT
	monPorts   []int          // the NATS nodes' monitoring ports (the override publishes them)
	images     []string       // the images the services run, with what else names them
	ids        map[string]string
	network    string
	adminReady bool // the functions serve /readyz on ADMIN_ADDR: wait for their healthchecks too

	events *exec.Cmd
	mu     sync.Mutex
	expect map[string]int // dies the harness causes, by container ID
	dies   map[string][]crash
	saved  bool // logs saved
	down   bool
}

// composeTool finds what runs compose here: "docker compose" (v2) or
// docker-compose (v1); problem says what is missing when neither can run.
func composeTool(ctx context.Context) (tool []string, version, problem string) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, "", "the docker command is not installed (not in PATH)"
	}
	vctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		return nil, "", fmt.Sprintf("the Docker daemon does not answer (docker version: %s)", firstLine(out, err))
	}
	if out, err := exec.CommandContext(vctx, "docker", "compose", "version").CombinedOutput(); err == nil {
		return []string{"docker", "compose"}, strings.TrimSpace(string(out)), ""
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		if out, err := exec.CommandContext(vctx, "docker-compose", "version", "--short").CombinedOutput(); err == nil {
			return []string{"docker-compose"}, "docker-compose " + strings.TrimSpace(string(out)), ""
		}
	}
	return nil, "", "no Compose: neither \"docker compose\" (the v2 plugin) nor docker-compose (v1.29) runs"
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		s = err.Error()
	}
	return clip(s, 200)
}

// dockerRequired is whether a machine without Docker fails the run
// instead of skipping it: CI=true and IMSFLOW_REQUIRE_DOCKER=1.
func dockerRequired() bool {
	return os.Getenv("CI") == "true" && os.Getenv("IMSFLOW_REQUIRE_DOCKER") == "1"
}

// skipMessage is the banner of a run that cannot happen here.
func skipMessage(problem string, required bool) string {
	bar := strings.Repeat("#", 78)
	verdict := "SKIPPED: the cross-container tests (make test-cluster) did NOT run."
	tail := "This is not a failure here; in CI, set CI=true IMSFLOW_REQUIRE_DOCKER=1 to make it one."
	if required {
		verdict = "FAILED: the cross-container tests (make test-cluster) could not run."
		tail = "CI=true and IMSFLOW_REQUIRE_DOCKER=1 are set: without Docker, that is a failure."
	}
	lines := []string{bar, "##", "##  " + verdict, "##", "##  Missing: " + problem + ".",
		"##  They need the docker CLI, a Docker Engine that answers it, and Compose",
		"##  (the \"docker compose\" v2 plugin, or docker-compose v1.29).", "##  " + tail, "##", bar}
	return strings.Join(lines, "\n") + "\n"
}

// preflight checks that Docker can run the compose backend: 0 when it
// can, exitSkipped (with the banner) when it cannot and need not, 1 when
// it cannot and must.
func preflight(ctx context.Context, stdout, stderr io.Writer) int {
	_, version, problem := composeTool(ctx)
	if problem == "" {
		fmt.Fprintf(stderr, "test-cluster: Docker answers; compose: %s\n", version)
		return 0
	}
	required := dockerRequired()
	fmt.Fprint(stderr, skipMessage(problem, required))
	if required {
		fmt.Fprintf(stdout, "test-cluster: FAIL no Docker (%s)\n", problem)
		return 1
	}
	fmt.Fprintf(stdout, "test-cluster: SKIPPED no Docker (%s)\n", problem)
	return exitSkipped
}

// imageNames are the images the deployment runs, as compose.yaml reads
// them.
func imageNames() []string {
	return []string{cmpEnv("IMSFLOW_IMAGE", "imsflow/imsflow:local"), cmpEnv("IMSFLOW_NATS_IMAGE", "imsflow/nats-server:local")}
}

func cmpEnv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// prepare finds the compose tool and the images (built by make image or
// go run ./scripts/image -only imsflow,nats-server; it builds nothing).
func (c *composeRun) prepare(ctx context.Context) error {
	var problem string
	c.tool, c.version, problem = composeTool(ctx)
	if problem != "" {
		return errors.New(problem)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "compose.yaml")); err != nil {
		return fmt.Errorf("-compose %s: %w", c.dir, err)
	}
	for _, img := range imageNames() {
		out, err := c.docker(ctx, 30*time.Second, "image", "inspect", "--format", `{"id":{{json .Id}},"tags":{{json .RepoTags}}}`, img)
		if err != nil {
			return fmt.Errorf("image %s is not in the Docker Engine (build it: go run ./scripts/image -only imsflow,nats-server): %s", img, firstLine([]byte(out), err))
		}
		var info struct {
			ID   string   `json:"id"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			return fmt.Errorf("docker image inspect %s: %v: %s", img, err, out)
		}
		id := strings.TrimPrefix(info.ID, "sha256:")
		desc := fmt.Sprintf("%s (%s", img, id[:min(12, len(id))])
		var aka []string
		for _, t := range info.Tags {
			if t != img {
				aka = append(aka, t[strings.LastIndexByte(t, ':'):])
			}
		}
		if len(aka) > 0 {
			desc += ", also " + strings.Join(aka, " ")
		}
		c.images = append(c.images, desc+")")
	}
	return nil
}

// command is the compose tool with the run's project and files.
func (c *composeRun) command(args ...string) []string {
	cmd := append([]string(nil), c.tool...)
	cmd = append(cmd, "-p", c.project, "-f", filepath.Join(c.dir, "compose.yaml"), "-f", c.override)
	return append(cmd, args...)
}

// exec runs one docker or compose command, bounded, in a process group of
// its own (a Ctrl-C reaches the harness, which cleans up, not the command),
// and returns its output.
func (c *composeRun) exec(ctx context.Context, bound time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if c.notes != nil {
		status := "ok"
		if err != nil {
			status = "error: " + firstLine(out, err)
		}
		c.notes("$ %s → %s", strings.Join(argv, " "), status)
	}
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%s: no answer after %s", strings.Join(argv[:min(len(argv), 3)], " "), bound)
	}
	return strings.TrimSpace(string(out)), err
}

func (c *composeRun) docker(ctx context.Context, bound time.Duration, args ...string) (string, error) {
	return c.exec(ctx, bound, append([]string{"docker"}, args...)...)
}

// writeFiles writes the functions' env file and the override file, and
// sets the compose tool's environment: the deployment's ports, free ones
// on loopback, and the env file.
func (c *composeRun) writeFiles(h *harness) error {
	ports, err := freePorts(9)
	if err != nil {
		return err
	}
	c.ports = map[string]int{"IMSFLOW_NATS_PORT_1": ports[0], "IMSFLOW_NATS_PORT_2": ports[1], "IMSFLOW_NATS_PORT_3": ports[2],
		"IMSFLOW_EMULATOR_PORT": ports[3], "IMSFLOW_INGEST_PORT": ports[4], "IMSFLOW_MINIO_PORT": ports[5]}
	c.monPorts = ports[6:9]
	c.envFile = filepath.Join(c.runDir, "functions.env")
	c.override = filepath.Join(c.runDir, "override.yaml")
	if err := os.WriteFile(c.envFile, []byte(h.composeEnvFile()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.override, []byte(h.composeOverride()), 0o644); err != nil {
		return err
	}
	// The rules file of import and distribute, and the emulator's other
	// account, mounted by compose.yaml from these paths.
	rules, accounts, err := h.lifecycleFiles()
	if err != nil {
		return err
	}
	c.env = append(os.Environ(), "IMSFLOW_ENV_FILE="+c.envFile, "IMSFLOW_RULES_FILE="+rules, "IMSFLOW_EMULATOR_ACCOUNTS="+accounts)
	keys := make([]string, 0, len(c.ports))
	for k := range c.ports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var exports []string
	for _, k := range keys {
		c.env = append(c.env, fmt.Sprintf("%s=%d", k, c.ports[k]))
		exports = append(exports, fmt.Sprintf("%s=%d", k, c.ports[k]))
	}
	// For a deployment kept with -keep, or left by a harness that was
	// killed: the commands that reach it.
	script := fmt.Sprintf("#!/bin/sh\n# The compose project of a make test-cluster run: %s\n# ./compose.sh ps | logs import-1 | down -v --remove-orphans\nexport IMSFLOW_ENV_FILE=%s IMSFLOW_RULES_FILE=%s IMSFLOW_EMULATOR_ACCOUNTS=%s %s\nexec %s \"$@\"\n",
		c.project, c.envFile, rules, accounts, strings.Join(exports, " "), strings.Join(c.command(), " "))
	return os.WriteFile(filepath.Join(c.runDir, "compose.sh"), []byte(script), 0o755)
}

// composeEnvFile is $IMSFLOW_ENV_FILE of the run: the emulator inside the
// project and its regions, its keys, no S3_* (the import function takes
// the notifications' sizes instead of looking in MinIO), and the process
// backend's settings (functionSettings); compose.yaml's own environment
// (NATS_URL, NATS_REPLICAS, ADMIN_ADDR, LOG_LEVEL, IMPORT_RULES_FILE)
// comes on top.
func (h *harness) composeEnvFile() string {
	lines := []string{"# written by scripts/chaos for the compose project " + h.cr.project,
		"IMS_ENDPOINT=http://" + emulatorService + ":8089", "IMS_REGION_ENDPOINT=http://" + emulatorService + ":8089/region/{region}"}
	lines = append(lines, h.functionSettings()...)
	return strings.Join(lines, "\n") + "\n"
}

// composeOverride is the run's override file: the emulator's faults, pace
// and regions (IMSEMU_*, as the process backend's flags; its accounts file
// is IMSFLOW_EMULATOR_ACCOUNTS, mounted by compose.yaml), without MinIO,
// and the NATS nodes' monitoring ports published on loopback for /healthz.
func (h *harness) composeOverride() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by scripts/chaos for the compose project %s\nservices:\n  %s:\n    environment:\n", h.cr.project, emulatorService)
	for _, kv := range [][2]string{
		{"IMSEMU_S3_ENDPOINT", ""},
		{"IMSEMU_ERROR_RATE", fmt.Sprint(h.o.errorRate)},
		{"IMSEMU_DROP_RATE", fmt.Sprint(h.o.dropRate)},
		{"IMSEMU_ACCEPT_BEFORE_DROP", fmt.Sprint(h.o.acceptBeforeDrop)},
		{"IMSEMU_RATE_LIMIT", fmt.Sprint(h.o.rateLimit)},
		{"IMSEMU_RATE_BURST", fmt.Sprint(h.o.rateBurst)},
		{"IMSEMU_MAX_JOBS", fmt.Sprint(h.o.maxJobs)},
		{"IMSEMU_QUOTA", "-1"},
		{"IMSEMU_TIME_SCALE", fmt.Sprint(h.o.timeScale)},
		{"IMSEMU_SEED", fmt.Sprint(h.o.seed)},
		{"IMSEMU_REGIONS", emulatorRegions()},
		{"IMSEMU_ACCOUNTS", "/etc/imsemu/accounts.json"},
	} {
		fmt.Fprintf(&b, "      %s: %q\n", kv[0], kv[1])
	}
	for i, s := range natsServices {
		fmt.Fprintf(&b, "  %s:\n    ports: [\"127.0.0.1:%d:8222\"]\n", s, h.cr.monPorts[i])
	}
	return b.String()
}

// startCompose brings the deployment up: the three NATS nodes, the
// emulator and the six function replicas (compose starts the functions
// once the nodes are healthy), then seeds the emulator and connects.
func (h *harness) startCompose(ctx context.Context) error {
	c := h.cr
	if err := c.writeFiles(h); err != nil {
		return err
	}
	if err := c.watchEvents(); err != nil {
		return err
	}
	h.say("compose project %s (%s): up -d %s %s %s", c.project, c.version, strings.Join(natsServices, " "), emulatorService, strings.Join(functionServices, " "))
	args := append([]string{"up", "-d", "--no-build"}, natsServices...)
	args = append(args, emulatorService)
	args = append(args, functionServices...)
	out, err := c.exec(ctx, 4*time.Minute, c.command(args...)...)
	_ = os.WriteFile(filepath.Join(h.logDir, "compose-up.log"), []byte(out+"\n"), 0o644)
	if err != nil {
		return fmt.Errorf("compose up: %v\n%s", err, clip(out, 2000))
	}
	if err := c.findContainers(ctx); err != nil {
		return err
	}
	for i, s := range natsServices {
		h.nodes = append(h.nodes, &natsNode{name: s, client: c.ports[fmt.Sprintf("IMSFLOW_NATS_PORT_%d", i+1)], mon: c.monPorts[i]})
	}
	h.emuURL = fmt.Sprintf("http://127.0.0.1:%d", c.ports["IMSFLOW_EMULATOR_PORT"])
	if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", c.ports["IMSFLOW_EMULATOR_PORT"]), 30*time.Second); err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	if err := h.seedEmulator(ctx, true); err != nil {
		return err
	}
	return h.connect()
}

// findContainers maps each service to its container, and finds the
// project's network.
func (c *composeRun) findContainers(ctx context.Context) error {
	out, err := c.docker(ctx, 30*time.Second, "ps", "-a", "--no-trunc", "--filter", "label=com.docker.compose.project="+c.project,
		"--format", `{{.ID}} {{.Label "com.docker.compose.service"}}`)
	if err != nil {
		return fmt.Errorf("docker ps: %v: %s", err, out)
	}
	c.ids = map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			c.ids[f[1]] = f[0]
		}
	}
	for _, s := range c.services() {
		if c.ids[s] == "" {
			return fmt.Errorf("compose up made no container for %s", s)
		}
	}
	nets, err := c.docker(ctx, 30*time.Second, "inspect", "--format", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`, c.ids["nats-1"])
	if err != nil {
		return fmt.Errorf("docker inspect nats-1: %v: %s", err, nets)
	}
	f := strings.Fields(nets)
	if len(f) != 1 {
		return fmt.Errorf("nats-1 is on networks %q; want the project's one", nets)
	}
	c.network = f[0]
	return nil
}

func (c *composeRun) services() []string {
	out := append([]string(nil), natsServices...)
	out = append(out, emulatorService)
	return append(out, functionServices...)
}

// watchEvents follows the project's container exits (docker events): an
// exit the harness did not cause is a crash, as the process backend's
// supervisor counts them (compose's restart policy starts it again).
func (c *composeRun) watchEvents() error {
	c.expect, c.dies = map[string]int{}, map[string][]crash{}
	cmd := exec.Command("docker", "events", "--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "type=container", "--filter", "event=die", "--format", "{{json .}}")
	cmd.Env = c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("docker events: %w", err)
	}
	c.events = cmd
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			var e struct {
				Actor struct {
					ID         string
					Attributes map[string]string
				}
			}
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			c.died(e.Actor.ID, e.Actor.Attributes["com.docker.compose.service"], e.Actor.Attributes["exitCode"])
		}
		_ = cmd.Wait()
	}()
	return nil
}

// expectDeath says that the harness is about to stop or kill these
// containers.
func (c *composeRun) expectDeath(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.expect[id]++
	}
}

func (c *composeRun) died(id, service, code string) {
	c.mu.Lock()
	if c.expect[id] > 0 || c.down {
		c.expect[id] = max(c.expect[id]-1, 0)
		c.mu.Unlock()
		c.notes("exit of %s (exit %s), caused by the harness", service, code)
		return
	}
	c.mu.Unlock()
	c.notes("UNEXPECTED EXIT of %s: exit %s", service, code)
	tail, _ := c.docker(context.Background(), 20*time.Second, "logs", "--tail", "4", id)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dies[service] = append(c.dies[service], crash{at: time.Now(), status: "exit " + code, tail: strings.Split(tail, "\n")})
}

func (c *composeRun) crashes() map[string][]crash {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]crash{}
	for k, v := range c.dies {
		out[k] = append([]crash(nil), v...)
	}
	return out
}

// state is a container's status and health ("" when it has no
// healthcheck), by service.
func (c *composeRun) state(ctx context.Context, services ...string) (map[string][2]string, error) {
	args := []string{"inspect", "--format", `{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}`}
	for _, s := range services {
		args = append(args, c.ids[s])
	}
	out, err := c.docker(ctx, 30*time.Second, args...)
	if err != nil {
		return nil, fmt.Errorf("docker inspect: %v: %s", err, out)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != len(services) {
		return nil, fmt.Errorf("docker inspect said %q", out)
	}
	st := map[string][2]string{}
	for i, s := range services {
		f := strings.Fields(lines[i])
		var v [2]string
		copy(v[:], f)
		st[s] = v
	}
	return st, nil
}

// waitUp waits until the services' containers run and, where their
// healthcheck means something (NATS always; the functions once they serve
// /readyz), are healthy; at most bound.
func (c *composeRun) waitUp(ctx context.Context, bound time.Duration, services ...string) error {
	deadline := time.Now().Add(bound)
	var last string
	for {
		st, err := c.state(ctx, services...)
		if err == nil {
			var bad []string
			for _, s := range services {
				v := st[s]
				// NATS nodes' health is asked of their /healthz directly
				// (natsNode.waitHealthy): quicker than the healthcheck's 5 s.
				needHealth := c.adminReady && slices.Contains(functionServices, s)
				if v[0] != "running" || needHealth && v[1] != "healthy" {
					bad = append(bad, s+" "+strings.TrimSpace(v[0]+" "+v[1]))
				}
			}
			if len(bad) == 0 {
				return nil
			}
			last = strings.Join(bad, ", ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", bound, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// probeAdmin finds whether the functions serve ADMIN_ADDR (their
// compose healthcheck asks /readyz there): then their health is waited
// for too. Without it, the topology in NATS is what says they run.
func (c *composeRun) probeAdmin(ctx context.Context) string {
	out, err := c.docker(ctx, 30*time.Second, "exec", c.ids["import-1"], "/imsflow", "healthcheck", "http://127.0.0.1:8081/healthz")
	c.adminReady = err == nil
	if c.adminReady {
		return "the functions serve /healthz and /readyz on ADMIN_ADDR: their compose healthchecks are waited for too"
	}
	return "the functions do not serve ADMIN_ADDR yet (" + firstLine([]byte(out), err) + "): their healthchecks are not waited for; the topology in NATS is"
}

// saveLogs writes each service's output (docker logs: what compose logs
// shows, without prefixes) to logs/<service>.log, as the process backend
// names them.
func (c *composeRun) saveLogs(ctx context.Context, logDir string) {
	c.mu.Lock()
	if c.saved || c.ids == nil {
		c.mu.Unlock()
		return
	}
	c.saved = true
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range c.services() {
		wg.Go(func() {
			f, err := os.Create(filepath.Join(logDir, s+".log"))
			if err != nil {
				return
			}
			defer f.Close()
			lctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			cmd := exec.CommandContext(lctx, "docker", "logs", c.ids[s])
			cmd.Env = c.env
			cmd.Stdout, cmd.Stderr = f, f
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(f, "--- test-cluster: docker logs %s: %v\n", s, err)
			}
		})
	}
	wg.Wait()
}

// upCalled is whether compose up was run: from then on there may be a
// project to remove.
func (c *composeRun) upCalled() bool { return c.override != "" }

// teardown removes every container, network and volume of the project
// (kill first: a NATS node's stop is a 30 s lame duck), and checks that
// nothing is left; it returns what is.
func (c *composeRun) teardown() error {
	c.mu.Lock()
	c.down = true
	c.mu.Unlock()
	ctx := context.Background()
	if c.events != nil && c.events.Process != nil {
		_ = c.events.Process.Kill()
	}
	if !c.upCalled() {
		return nil
	}
	_, _ = c.exec(ctx, 2*time.Minute, c.command("kill")...)
	out, err := c.exec(ctx, 3*time.Minute, c.command("down", "-v", "--remove-orphans", "-t", "0")...)
	if err != nil {
		return fmt.Errorf("compose down: %v: %s", err, clip(out, 500))
	}
	var left []string
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + c.project}
		if kind == "container" {
			args = []string{"ps", "-a", "-q", "--filter", "label=com.docker.compose.project=" + c.project}
		}
		out, err := c.docker(ctx, time.Minute, args...)
		if err != nil {
			left = append(left, fmt.Sprintf("%ss: docker %s: %v", kind, args[0], err))
		} else if out != "" {
			left = append(left, fmt.Sprintf("%d %s(s)", len(strings.Fields(out)), kind))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("compose down left %s of project %s", strings.Join(left, ", "), c.project)
	}
	return nil
}
