package main

// The faults of the compose backend (make test-cluster): one scenario
// after the other while the feed runs, each followed by checks that the
// pipeline recovered.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/imsflow/imsflow/pkg/events"
)

// scenarioNames are the scenarios, in the order they run by default.
var scenarioNames = []string{"nats-kill", "fn-kill", "partition", "restart-all"}

// canariesPerScenario: an import and an export after each fault.
const canariesPerScenario = 2

// scenario is one fault across containers and what the checks after it
// found.
type scenario struct {
	Name    string
	Victims []string      // fn-kill: drawn from the seed; the others: chosen when it runs
	Down    time.Duration // how long the victims stay down (restart-all: as long as their stop takes)
	// Filled in when it runs.
	What     string
	At       time.Duration // after the feed's start
	Back     time.Duration // from the restore to the victims running and healthy again
	Canary   time.Duration // from the canaries' publication to their last final outcome
	InFlight int           // IMS jobs running when the fault began (emulator)
	Notes    []string
	Err      string // the first check that failed; "" when it recovered
	Ran      bool
	canaries []int
	// The fault's wall-clock span (from the fault to the restore), to
	// read the functions' logs by.
	began, restored time.Time
}

// canaryBound bounds the wait for a scenario's canaries: the profile's
// drain bound. They usually end within seconds, but an injected 5xx on a
// canary's submission holds it for a claim TTL (15 s), two in a row are
// not rare, and on a loaded machine 75 s was seen; a pipeline that does
// not recover never ends them at all.
func (h *harness) canaryBound() time.Duration { return h.o.prof.Drain }

func (s *scenario) ok() bool { return s.Ran && s.Err == "" }

// describe is the plan of a scenario, before it runs.
func (s *scenario) describe() string {
	switch s.Name {
	case "nats-kill":
		return fmt.Sprintf("docker kill the NATS node leading %s; docker start it after %s", streamJobs, s.Down)
	case "fn-kill":
		return fmt.Sprintf("docker kill -s KILL %s; docker start them after %s", strings.Join(s.Victims, ", "), s.Down)
	case "partition":
		return fmt.Sprintf("docker network disconnect the NATS node leading %s for %s, then connect it again", streamJobs, s.Down)
	case "restart-all":
		return fmt.Sprintf("docker stop (SIGTERM: each function drains) all %d function containers at once, then docker start them", len(functionServices))
	}
	return s.Name
}

// newScenarios makes the named scenarios; the function replicas that
// fn-kill kills (one of each function) come from seed; the partition
// lasts cut.
func newScenarios(names []string, seed uint64, cut time.Duration) ([]*scenario, error) {
	r := rand.New(rand.NewPCG(seed^0xc1a5, seed+3))
	var out []*scenario
	for _, n := range names {
		s := &scenario{Name: n}
		switch n {
		case "nats-kill":
			s.Down = 8 * time.Second
		case "fn-kill":
			s.Down = 4 * time.Second
			for _, fn := range functions {
				s.Victims = append(s.Victims, fmt.Sprintf("%s-%d", fn, 1+r.IntN(replicas)))
			}
		case "partition":
			// Above a JetStream election timeout (4-9 s) with room (the
			// default, 14 s): the rest of the cluster elects new leaders
			// while it is away.
			s.Down = cut
		case "restart-all":
		default:
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want some of %s)", n, strings.Join(scenarioNames, ","))
		}
		out = append(out, s)
	}
	return out, nil
}

// runScenarios runs the scenarios one after the other, the i-th no
// earlier than its share of the fault window, so that they spread over
// the feed.
func (h *harness) runScenarios(ctx context.Context) {
	h.mu.Lock()
	t0 := h.feedStart
	h.mu.Unlock()
	p := h.o.prof
	for i, s := range h.scen {
		at := p.FaultStart + (p.FaultEnd-p.FaultStart)*time.Duration(i)/time.Duration(len(h.scen))
		if d := time.Until(t0.Add(at)); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			return
		}
		h.runScenario(ctx, s)
		h.mu.Lock()
		h.faultsDone++
		h.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return
		case s.Err != "":
			h.logFault("%s: NOT RECOVERED: %s", s.Name, s.Err)
		default:
			h.logFault("%s: recovered; victims back in %.1fs, canaries ended %.1fs after their publication", s.Name, s.Back.Seconds(), s.Canary.Seconds())
		}
	}
}

// hold keeps a fault in place for d (the fault's length, not a wait for
// a condition).
func hold(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (h *harness) runScenario(ctx context.Context, s *scenario) {
	c := h.cr
	s.Ran = true
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if ctx.Err() != nil {
			msg = "interrupted"
		}
		if s.Err == "" {
			s.Err = msg
			h.logFault("%s: %s", s.Name, msg)
		}
	}
	// One fault at a time: the cluster whole and every function running.
	if err := h.steady(ctx, 90*time.Second); err != nil {
		fail("not steady before the fault: %v", err)
		return
	}
	h.mu.Lock()
	s.At = time.Since(h.feedStart)
	h.mu.Unlock()
	s.InFlight = h.imsRunning(ctx)
	var restored time.Time
	s.began = time.Now()
	switch s.Name {
	case "nats-kill":
		node := h.jobsLeader(ctx)
		s.Victims = []string{node}
		s.What = fmt.Sprintf("docker kill %s (leader of %s), docker start after %s", node, streamJobs, s.Down)
		before := leaders(ctx, h.js)
		c.expectDeath(c.ids[node])
		if out, err := c.docker(ctx, time.Minute, "kill", c.ids[node]); err != nil {
			fail("docker kill %s: %v: %s", node, err, out)
			return
		}
		h.setDown(node, true)
		h.logFault("docker kill %s (SIGKILL), leader of %s (leaders: %s); %d IMS jobs running; start in %s%s", node, streamJobs, before, s.InFlight, s.Down, h.lcHit(s.Name))
		hold(ctx, s.Down)
		if out, err := c.docker(ctx, time.Minute, "start", c.ids[node]); err != nil {
			fail("docker start %s: %v: %s", node, err, out)
		}
		restored = time.Now()
		if err := h.node(node).waitHealthy(ctx, 2*time.Minute); err != nil {
			fail("%v", err)
		}
	case "fn-kill":
		s.What = fmt.Sprintf("docker kill -s KILL %s, docker start after %s", strings.Join(s.Victims, " "), s.Down)
		ids := c.idsOf(s.Victims)
		c.expectDeath(ids...)
		if out, err := c.docker(ctx, time.Minute, append([]string{"kill", "-s", "KILL"}, ids...)...); err != nil {
			fail("docker kill: %v: %s", err, out)
			return
		}
		for _, v := range s.Victims {
			h.setDown(v, true)
		}
		h.logFault("docker kill -s KILL %s; %d IMS jobs running; start in %s%s", strings.Join(s.Victims, " "), s.InFlight, s.Down, h.lcHit(s.Name))
		hold(ctx, s.Down)
		if out, err := c.docker(ctx, time.Minute, append([]string{"start"}, ids...)...); err != nil {
			fail("docker start: %v: %s", err, out)
		}
		restored = time.Now()
		if err := c.waitUp(ctx, 2*time.Minute, s.Victims...); err != nil {
			fail("victims not back: %v", err)
		}
	case "partition":
		node := h.jobsLeader(ctx)
		s.Victims = []string{node}
		s.What = fmt.Sprintf("docker network disconnect %s (leader of %s) for %s, then connect", node, streamJobs, s.Down)
		aliases, err := c.aliases(ctx, node)
		if err != nil {
			fail("%v", err)
			return
		}
		before := leaders(ctx, h.js)
		if cl, err := c.clientsOf(ctx, h.node(node)); err == nil {
			// They learn of the cut only by their pings (nats.go's default:
			// every 2 minutes, 2 unanswered): until then they wait on it.
			s.Notes = append(s.Notes, fmt.Sprintf("function containers connected to %s when it was cut off: %s", node, cmp.Or(strings.Join(cl, " "), "none")))
		}
		if out, err := c.docker(ctx, time.Minute, "network", "disconnect", c.network, c.ids[node]); err != nil {
			fail("docker network disconnect %s: %v: %s", node, err, out)
			return
		}
		h.setDown(node, true)
		h.logFault("docker network disconnect %s %s, leader of %s (leaders: %s); %d IMS jobs running; connect in %s%s", c.network, node, streamJobs, before, s.InFlight, s.Down, h.lcHit(s.Name))
		hold(ctx, s.Down)
		// Who leads now, as the rest of the cluster says (the harness's
		// connection has failed over to it).
		if l, err := streamLeader(ctx, h.js, streamJobs); err == nil {
			s.Notes = append(s.Notes, fmt.Sprintf("while %s was cut off, %s was led by %s", node, streamJobs, l))
		} else {
			s.Notes = append(s.Notes, fmt.Sprintf("while %s was cut off, %s's leader could not be read: %v", node, streamJobs, err))
		}
		args := []string{"network", "connect"}
		for _, a := range aliases {
			args = append(args, "--alias", a)
		}
		if out, err := c.docker(ctx, time.Minute, append(args, c.network, c.ids[node])...); err != nil {
			fail("docker network connect %s: %v: %s", node, err, out)
		}
		restored = time.Now()
		n := h.node(node)
		if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", n.client), 30*time.Second); err != nil {
			fail("the published client port of %s did not come back: %v", node, err)
		} else {
			s.Notes = append(s.Notes, fmt.Sprintf("%s's published client port 127.0.0.1:%d answered again %.1fs after the reconnection", node, n.client, time.Since(restored).Seconds()))
		}
		if err := n.waitHealthy(ctx, 2*time.Minute); err != nil {
			fail("%v", err)
		}
	case "restart-all":
		s.Victims = functionServices
		s.What = fmt.Sprintf("docker stop (SIGTERM) + docker start of all %d function containers", len(functionServices))
		ids := c.idsOf(functionServices)
		c.expectDeath(ids...)
		for _, v := range s.Victims {
			h.setDown(v, true)
		}
		h.logFault("docker stop -t 45 of all %d functions (SIGTERM: they drain); %d IMS jobs running%s", len(functionServices), s.InFlight, h.lcHit(s.Name))
		began := time.Now()
		if out, err := c.docker(ctx, 2*time.Minute, append([]string{"stop", "-t", "45"}, ids...)...); err != nil {
			fail("docker stop: %v: %s", err, out)
		}
		s.Notes = append(s.Notes, fmt.Sprintf("the %d stopped (drained) in %.1fs", len(functionServices), time.Since(began).Seconds()))
		if s.InFlight == 0 {
			s.Notes = append(s.Notes, "no IMS job was running when they stopped")
		}
		if out, err := c.docker(ctx, time.Minute, append([]string{"start"}, ids...)...); err != nil {
			fail("docker start: %v: %s", err, out)
		}
		restored = time.Now()
		if err := c.waitUp(ctx, 2*time.Minute, functionServices...); err != nil {
			fail("functions not back: %v", err)
		}
	}
	s.Back, s.restored = time.Since(restored), restored
	for _, v := range s.Victims {
		h.setDown(v, false)
	}
	h.faultEnded()
	if ctx.Err() != nil {
		return
	}
	h.logFault("%s: victims back %.1fs after the restore; leaders: %s", s.Name, s.Back.Seconds(), leaders(ctx, h.js))

	// The checks: the cluster whole, the streams led, and new work taken
	// and ended: an import and an export published now reach their
	// final outcomes.
	if err := h.steady(ctx, 90*time.Second); err != nil {
		fail("not whole again: %v", err)
	}
	for _, st := range []string{streamIn, streamJobs, streamOut} {
		if err := waitLeader(ctx, h, st, time.Minute); err != nil {
			fail("%v", err)
		}
	}
	began := time.Now()
	for _, i := range s.canaries {
		h.publish(ctx, h.canaryPub(i))
	}
	deadline := began.Add(h.canaryBound())
	for len(h.live.pending(s.canaries)) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	s.Canary = time.Since(began)
	if p := h.live.pending(s.canaries); len(p) > 0 {
		var ids []string
		for _, i := range p {
			ids = append(ids, h.w.Items[i].ID)
		}
		fail("canaries %s had no final outcome %s after their publication", strings.Join(ids, " "), s.Canary.Round(time.Second))
	}
}

// steady waits until every NATS node answers /healthz and every function
// container runs (healthy too, once they serve /readyz).
func (h *harness) steady(ctx context.Context, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for _, n := range h.nodes {
		if err := n.waitHealthy(ctx, time.Until(deadline)); err != nil {
			return err
		}
	}
	return h.cr.waitUp(ctx, max(time.Until(deadline), time.Second), functionServices...)
}

// jobsLeader is the NATS node leading IMSFLOW_JOBS (asked for 10 s; else
// nats-1).
func (h *harness) jobsLeader(ctx context.Context) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := streamLeader(ctx, h.js, streamJobs)
		if err == nil && h.node(l) != nil {
			return l
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			h.logFault("the leader of %s could not be found (%q, %v); taking %s", streamJobs, l, err, natsServices[0])
			return natsServices[0]
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func waitLeader(ctx context.Context, h *harness, stream string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		_, err := streamLeader(ctx, h.js, stream)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s has no leader after %s: %v", stream, bound, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (h *harness) node(name string) *natsNode {
	for _, n := range h.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// imsRunning is the number of IMS jobs under way in the emulator.
func (h *harness) imsRunning(ctx context.Context) int {
	var st emuStats
	if err := getJSON(ctx, h.emuURL+"/_emulator/stats", &st); err != nil {
		return -1
	}
	return st.JobsSubmitted - st.JobsSucceeded - st.JobsFailed
}

// canaryPub is the publication of a canary.
func (h *harness) canaryPub(i int) publication {
	it := h.w.Items[i]
	subject := events.SubjectObjectsPrefix + sourceName
	if it.isExport() {
		subject = events.SubjectExportRequests
	}
	return publication{Item: i, Role: "input", Subject: subject, MsgID: "chaos:" + it.ID + ":1"}
}

func (c *composeRun) idsOf(services []string) []string {
	var ids []string
	for _, s := range services {
		ids = append(ids, c.ids[s])
	}
	return ids
}

// aliases are the names a container has on the project's network (its
// service name), to give back when it is connected again; docker adds
// the short container ID itself.
func (c *composeRun) aliases(ctx context.Context, service string) ([]string, error) {
	out, err := c.docker(ctx, 30*time.Second, "inspect", "--format", "{{json .NetworkSettings.Networks}}", c.ids[service])
	if err != nil {
		return nil, fmt.Errorf("docker inspect %s: %v: %s", service, err, out)
	}
	var nets map[string]struct{ Aliases []string }
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		return nil, fmt.Errorf("docker inspect %s: %v", service, err)
	}
	var as []string
	for _, a := range nets[c.network].Aliases {
		if !strings.HasPrefix(c.ids[service], a) {
			as = append(as, a)
		}
	}
	if !slices.Contains(as, service) {
		as = append(as, service)
	}
	return as, nil
}

// clientsOf names the function containers connected to a NATS node (its
// /connz, by the containers' addresses on the project's network).
func (c *composeRun) clientsOf(ctx context.Context, n *natsNode) ([]string, error) {
	var connz struct {
		Connections []struct {
			IP string `json:"ip"`
		} `json:"connections"`
	}
	if err := getJSON(ctx, fmt.Sprintf("http://127.0.0.1:%d/connz?limit=4096", n.mon), &connz); err != nil {
		return nil, err
	}
	args := []string{"inspect", "--format", `{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}`}
	args = append(args, c.idsOf(functionServices)...)
	out, err := c.docker(ctx, 30*time.Second, args...)
	if err != nil {
		return nil, fmt.Errorf("docker inspect: %v: %s", err, out)
	}
	byIP := map[string]string{}
	for i, l := range strings.Split(out, "\n") {
		for _, ip := range strings.Fields(l) {
			if i < len(functionServices) {
				byIP[ip] = functionServices[i]
			}
		}
	}
	var names []string
	for _, cn := range connz.Connections {
		if s, ok := byIP[cn.IP]; ok && !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	slices.Sort(names)
	return names, nil
}

// noteSilences adds to each partition the longest time each function
// replica settled no delivery from the cut to 20 s after the
// reconnection, from the saved logs (whose times are to the second). A
// replica connected to the node that was cut off waits on it.
func (h *harness) noteSilences() {
	for _, s := range h.scen {
		if s.Name != "partition" || s.began.IsZero() || s.restored.IsZero() {
			continue
		}
		var parts []string
		for _, f := range functionServices {
			gap := longestSilence(filepath.Join(h.logDir, f+".log"), s.began, s.restored.Add(20*time.Second))
			parts = append(parts, fmt.Sprintf("%s %ds", f, int(gap.Seconds())))
		}
		s.Notes = append(s.Notes, fmt.Sprintf("longest time each function settled no message, from the cut (%ds) to 20 s after the reconnection: %s",
			int(s.restored.Sub(s.began).Seconds()), strings.Join(parts, ", ")))
	}
}

// longestSilence is the longest span between from and to without a
// settled delivery in a function's JSON log: a line with an "outcome" (the
// runner's), by its "time".
func longestSilence(path string, from, to time.Time) time.Duration {
	last, gap := from, time.Duration(0)
	scanLines(path, func(line string) {
		var l struct {
			Time    time.Time `json:"time"`
			Outcome string    `json:"outcome"`
		}
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &l) != nil || l.Outcome == "" || l.Time.Before(from) || l.Time.After(to) {
			return
		}
		gap = max(gap, l.Time.Sub(last))
		if l.Time.After(last) {
			last = l.Time
		}
	})
	return max(gap, to.Sub(last))
}
