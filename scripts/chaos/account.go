package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/pkg/events"
)

// imsflow's streams and buckets (internal/runner/topology.go; a test keeps
// them equal). The harness reads them only: it creates nothing, so that
// the functions' own start against a fresh cluster is part of the test.
const (
	streamIn    = "IMSFLOW_IN"
	streamJobs  = "IMSFLOW_JOBS"
	streamOut   = "IMSFLOW_OUT"
	streamDLQ   = "IMSFLOW_DLQ"
	bucketSlots = "imsflow_slots"
	bucketJobs  = "imsflow_jobs"
	kvImports   = "imsflow_imports"
	kvExports   = "imsflow_exports"
)

// finalStatuses end an input; stalled, progress and batch events do not.
var finalStatuses = map[string]bool{"succeeded": true, "failed": true, "timed_out": true, "rejected": true}

// outcome is one final output event, decoded.
type outcome struct {
	identity string // obj:bucket/key@etag or req:<request_id>; "" when the event names neither
	url      string // the job's bucket_url (exports), to name an export without request_id
	status   string // succeeded, failed, timed_out, rejected:<reason_code>
	jobID    string
}

// decodeOutcome reads an event of IMSFLOW_OUT; ok is false for events that
// are not final (stalled, progress, batch.completed).
func decodeOutcome(subject string, data []byte) (o outcome, ok bool, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != "imsflow" || parts[1] != "out" || (parts[2] != "import" && parts[2] != "export") || !finalStatuses[parts[3]] {
		return outcome{}, false, nil
	}
	o.status = parts[3]
	if o.status == "rejected" {
		var r events.Rejected
		if err := json.Unmarshal(data, &r); err != nil {
			return o, true, err
		}
		o.status += ":" + r.ReasonCode
		switch {
		case r.Source != nil:
			o.identity = objIdentity(r.Source.Bucket, r.Source.Key, r.Source.ETag)
		case r.Request != nil && r.Request.RequestID != "":
			o.identity = "req:" + r.Request.RequestID
		case r.Request != nil:
			o.url = r.Request.BucketURL
		}
		return o, true, nil
	}
	var f events.JobFinished
	if err := json.Unmarshal(data, &f); err != nil {
		return o, true, err
	}
	o.jobID = f.JobID
	switch {
	case f.Source != nil:
		o.identity = objIdentity(f.Source.Bucket, f.Source.Key, f.Source.ETag)
	case f.RequestID != "":
		o.identity = "req:" + f.RequestID
	default:
		o.url = f.BucketURL
	}
	return o, true, nil
}

// notFinalKey names an event of IMSFLOW_OUT that ends no input: by its
// status (waiting, stalled, progress, ...), the lifecycles' and their legs'
// by kind and status (lifecycle.succeeded, distribute.failed, ...).
func notFinalKey(subject string) string {
	parts := strings.Split(subject, ".")
	if len(parts) == 4 && (parts[2] == "lifecycle" || parts[2] == string(events.KindDistribute)) {
		return parts[2] + "." + parts[3]
	}
	return parts[len(parts)-1]
}

// itemIndex finds an input by what an event or a submission says of it.
type itemIndex struct {
	byIdentity map[string]int
	byURL      map[string]int // imsURL: image_url of imports, bucket_url of exports
	bySlot     map[string]int // the object version's hash a slot holds
}

func newItemIndex(items []*item) *itemIndex {
	x := &itemIndex{byIdentity: map[string]int{}, byURL: map[string]int{}, bySlot: map[string]int{}}
	for i, it := range items {
		x.byIdentity[it.identity()] = i
		x.byURL[it.imsURL()] = i
		if !it.isExport() {
			// A slot's value names its owner: the version's hash, or
			// (since the claim ledger) its record's key, v.<hash[:40]>.
			h := it.slotHash()
			x.bySlot[h], x.bySlot["v."+h[:40]] = i, i
		}
	}
	return x
}

func (x *itemIndex) find(o outcome) (int, bool) {
	if i, ok := x.byIdentity[o.identity]; ok && o.identity != "" {
		return i, true
	}
	if i, ok := x.byURL[o.url]; ok && o.url != "" {
		return i, true
	}
	return 0, false
}

// itemOutcomes is what IMSFLOW_OUT says of one input.
type itemOutcomes struct {
	ids    []string          // distinct Nats-Msg-Ids of its final events, in stream order
	status map[string]string // Nats-Msg-Id → outcome
	stored int               // final messages stored (the same ID twice counts twice)
	first  time.Time         // stream time of its first final event
}

// tally groups the final events of IMSFLOW_OUT by input.
type tally struct {
	mu           sync.Mutex
	index        *itemIndex
	byItem       map[int]*itemOutcomes
	unattributed []string       // final events naming no input of the run
	notFinal     map[string]int // other events of IMSFLOW_OUT by status (waiting, stalled, progress, ...)
	undecodable  int
	lastSeq      uint64
}

func newTally(index *itemIndex) *tally {
	return &tally{index: index, byItem: map[int]*itemOutcomes{}, notFinal: map[string]int{}}
}

// add counts one message of IMSFLOW_OUT.
func (t *tally) add(subject string, data []byte, msgID string, stored time.Time, seq uint64) {
	o, final, err := decodeOutcome(subject, data)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastSeq = max(t.lastSeq, seq)
	if !final {
		t.notFinal[notFinalKey(subject)]++
		return
	}
	if err != nil {
		t.undecodable++
		return
	}
	i, ok := t.index.find(o)
	if !ok {
		t.unattributed = append(t.unattributed, fmt.Sprintf("%s %s", subject, clip(string(data), 200)))
		return
	}
	r := t.byItem[i]
	if r == nil {
		r = &itemOutcomes{status: map[string]string{}, first: stored}
		t.byItem[i] = r
	}
	r.stored++
	if msgID == "" {
		msgID = fmt.Sprintf("seq:%d", seq) // an event without Nats-Msg-Id is distinct by definition
	}
	if _, seen := r.status[msgID]; !seen {
		r.ids = append(r.ids, msgID)
		r.status[msgID] = o.status
	}
	if stored.Before(r.first) {
		r.first = stored
	}
}

func (t *tally) addMsg(m jetstream.Msg) {
	md, err := m.Metadata()
	var seq uint64
	stored := time.Now()
	if err == nil {
		seq, stored = md.Sequence.Stream, md.Timestamp
	}
	t.add(m.Subject(), m.Data(), m.Headers().Get(jetstream.MsgIDHeader), stored, seq)
}

// pending returns the inputs of want that have no final event yet.
func (t *tally) pending(want []int) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, i := range want {
		if t.byItem[i] == nil {
			out = append(out, i)
		}
	}
	return out
}

func (t *tally) finals() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byItem)
}

// readStream hands every message of a stream, from its first to the last
// one stored when the read began, to fn, through an ordered consumer.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, fn func(jetstream.Msg)) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return 0, nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	n := 0
	for {
		m, err := it.Next()
		if err != nil {
			return n, fmt.Errorf("read %s: stopped after %d messages, before sequence %d: %w", stream, n, st.LastSeq, err)
		}
		n++
		fn(m)
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= st.LastSeq {
			return n, nil
		}
	}
}

// ---- the emulator's side ---------------------------------------------------

// submission is one job the emulator accepted (GET /_emulator/submissions).
type submission struct {
	Seq       int       `json:"seq"`
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"`
	JobID     string    `json:"job_id"`
	ImageID   string    `json:"image_id"`
	URL       string    `json:"url"`
	// Lifecycle legs: the region the job was sent to, the new image's
	// name (a copy) and the request's body (a copy's target region, a
	// member job's images).
	Region string          `json:"region,omitempty"`
	Name   string          `json:"name,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// emuStats is the part of GET /_emulator/stats the table shows.
type emuStats struct {
	Requests      map[string]int `json:"requests"`
	Statuses      map[string]int `json:"statuses"`
	Throttled     int            `json:"throttled"`
	Capped        int            `json:"capped"`
	Injected      int            `json:"injected"`
	Dropped       int            `json:"dropped"`
	JobsSubmitted int            `json:"jobs_submitted"`
	JobsSucceeded int            `json:"jobs_succeeded"`
	JobsFailed    int            `json:"jobs_failed"`
	MaxRunning    int            `json:"max_running"`
}

func (s emuStats) total() int {
	n := 0
	for _, v := range s.Requests {
		n += v
	}
	return n
}

func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func postJSON(ctx context.Context, url string, v any) error {
	return sendJSON(ctx, http.MethodPost, url, v)
}

// sendJSON sends v as JSON with method and wants 200 OK.
func sendJSON(ctx context.Context, method, url string, v any) error {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, body)
	}
	return nil
}

// ---- dead letters, slots, jobs ----------------------------------------------

// deadLetter is one message of IMSFLOW_DLQ and the input it belongs to.
type deadLetter struct {
	function, subject, reason string
	deliveries                uint64
	item                      int // -1: not known
}

// attributeDead finds the input of a dead letter from the message it
// carries: a notification, an export request, a hand-off or a poll timer
// (whose job the emulator's submissions name), an event the distribute
// function took, or a lifecycle retry (lcItem: lifecycle ID → input).
func attributeDead(d events.DeadLetter, x *itemIndex, jobURL map[string]string, lcItem map[string]int) int {
	switch {
	case strings.HasPrefix(d.Subject, "imsflow.out."):
		var f events.JobFinished
		if json.Unmarshal(d.Data, &f) == nil {
			if f.Leg != nil {
				if i, ok := lcItem[f.Leg.Lifecycle]; ok {
					return i
				}
			}
			if f.Source != nil {
				if i, ok := x.byIdentity[objIdentity(f.Source.Bucket, f.Source.Key, f.Source.ETag)]; ok {
					return i
				}
			}
		}
	case d.Subject == events.SubjectLifecycleRetry:
		var r events.LifecycleRetry
		if json.Unmarshal(d.Data, &r) == nil {
			if i, ok := lcItem[r.Lifecycle]; ok {
				return i
			}
		}
	case strings.HasPrefix(d.Subject, events.SubjectObjectsPrefix):
		created, _, err := events.DecodeObjectEvents(d.Data)
		if err == nil && len(created) > 0 {
			c := created[0]
			if i, ok := x.byIdentity[objIdentity(c.Bucket, c.Key, c.ETag)]; ok {
				return i
			}
			if strings.HasSuffix(c.Key, ".mf") { // a bitmap: its RAW file's
				for _, ext := range []string{".raw"} {
					if i, ok := x.byURL[c.Bucket+":"+strings.TrimSuffix(c.Key, ".mf")+ext]; ok {
						return i
					}
				}
			}
		}
	case d.Subject == events.SubjectExportRequests:
		if r, err := events.DecodeExportRequest(d.Data); err == nil {
			if i, ok := x.byIdentity["req:"+r.RequestID]; ok {
				return i
			}
		}
	case d.Subject == events.SubjectJobSubmitted:
		var h events.JobSubmitted
		if json.Unmarshal(d.Data, &h) == nil {
			if h.Leg != nil {
				if i, ok := lcItem[h.Leg.Lifecycle]; ok {
					return i
				}
			}
			if h.Source != nil {
				if i, ok := x.byIdentity[objIdentity(h.Source.Bucket, h.Source.Key, h.Source.ETag)]; ok {
					return i
				}
			}
			if i, ok := x.byIdentity["req:"+h.RequestID]; ok {
				return i
			}
		}
	case strings.HasPrefix(d.Subject, "imsflow.jobs.poll."):
		key := strings.TrimPrefix(d.Subject, "imsflow.jobs.poll.")
		if url, ok := jobURL[strings.TrimPrefix(key, "j.")]; ok {
			if i, ok := x.byURL[url]; ok {
				return i
			}
		}
	}
	return -1
}

// slotHeld is a key of imsflow_slots left at the end.
type slotHeld struct {
	key  string
	item int // the input whose object version holds it; -1 when unknown
}

// jobState is the part of a poller state the harness reads.
type jobState struct {
	Published bool            `json:"published"`
	Final     json.RawMessage `json:"final"`
	Status    string          `json:"status"`
	Polls     int             `json:"polls"`
}

// record is the part of an import's or export's record (its claim,
// internal/ledger) the harness reads.
type record struct {
	State string `json:"state"`
}

// recordKey is the key of an input's record: imsflow_imports v.<hash[:40]>
// of the object version, imsflow_exports r.<hash> of the request_id.
func (it *item) recordKey() (bucket, key string) {
	if it.isExport() {
		return kvExports, "r." + events.Hash("id\x00"+it.RequestID, 40)
	}
	return kvImports, "v." + it.slotHash()[:40]
}

// readRecord returns the state of an input's record, "" when it has none.
func readRecord(ctx context.Context, js jetstream.JetStream, it *item) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	bucket, key := it.recordKey()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return "unreadable", nil
	}
	return r.State, nil
}

// kvEntries returns every live key of a bucket and its value.
func kvEntries(ctx context.Context, js jetstream.JetStream, bucket string) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", bucket, err)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", bucket, k, err)
		}
		out[k] = e.Value()
	}
	return out, nil
}

// ---- the logs ----------------------------------------------------------------

// grepLogs returns, for each input, the last perFile lines of every
// function's log that contain one of its tokens (its ID, which names it in
// keys, image names and request IDs, or its IMSFLOW_IN sequence as the
// runner logs it).
func grepLogs(logDir string, tokens map[string]int, perFile int) map[int][]string {
	out := map[int][]string{}
	if len(tokens) == 0 {
		return out
	}
	files, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	sort.Strings(files)
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "nats-") || base == "emulator.log" {
			continue
		}
		last := map[int][]string{}
		scanLines(f, func(line string) {
			for tok, i := range tokens {
				if strings.Contains(line, tok) {
					l := append(last[i], line)
					if len(l) > perFile {
						l = l[1:]
					}
					last[i] = l
					return
				}
			}
		})
		for i, lines := range last {
			for _, l := range lines {
				out[i] = append(out[i], strings.TrimSuffix(base, ".log")+": "+clip(l, 400))
			}
		}
	}
	return out
}

// seqToken is how the runner's log line names a message of IMSFLOW_IN.
func seqToken(subject string, seq uint64) string {
	return fmt.Sprintf(`"subject":%q,"stream_seq":%d,`, subject, seq)
}

func scanLines(path string, fn func(string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
}

var (
	reUUID  = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	reHex   = regexp.MustCompile(`[0-9a-fA-F]{12,}`)
	reItem  = regexp.MustCompile(`\b(fail-)?[nx]\d{5}\b`)
	reNum   = regexp.MustCompile(`\d+(\.\d+)?`)
	reSpace = regexp.MustCompile(`\s+`)
)

// normalize makes log messages that differ only in IDs and numbers equal.
func normalize(s string) string {
	s = reUUID.ReplaceAllString(s, "<id>")
	s = reHex.ReplaceAllString(s, "<hex>")
	s = reItem.ReplaceAllString(s, "<item>")
	s = reNum.ReplaceAllString(s, "#")
	return reSpace.ReplaceAllString(s, " ")
}

// sweptSlot is the poller's log message for a slot its sweep frees
// (functions/poller/poller/sweep.go).
const sweptSlot = "freed an in-flight slot that no claim or job holds"

// warnCount is one kind of log line of the functions, counted.
type warnCount struct {
	text  string
	count int
}

// logSummary counts the functions' log lines that matter when a run
// fails: warnings and errors by their normalized message and reason (those
// caused by the emulator's injected faults in one line, as they are
// expected), and planned waits (outcome delay) by reason.
type logSummary struct {
	warnings []warnCount
	waits    []warnCount
	total    int // warn and error lines
	injected int // of which caused by an injected fault
	// swept is the in-flight slots the poller's sweep freed: held by no
	// claim or job a minute after they were taken, so leaked by a release
	// that did not happen, by poller.
	swept map[string]int
}

func summarizeLogs(logDir string) logSummary {
	warns, waits := map[string]int{}, map[string]int{}
	sum := logSummary{swept: map[string]int{}}
	files, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	for _, f := range files {
		base := filepath.Base(f)
		fn, _, _ := strings.Cut(base, "-")
		if !slices.Contains(functions, fn) {
			continue
		}
		scanLines(f, func(line string) {
			if !strings.HasPrefix(line, "{") {
				return
			}
			var l struct {
				Level, Message, Reason, Error, Outcome string
			}
			if json.Unmarshal([]byte(line), &l) != nil {
				return
			}
			if l.Message == sweptSlot {
				sum.swept[strings.TrimSuffix(base, ".log")]++
			}
			what := l.Reason
			if what == "" {
				what = l.Error
			}
			switch {
			case l.Outcome == "delay":
				waits[fmt.Sprintf("%s: %s", fn, clip(normalize(strings.Split(what, "; again in")[0]), 170))]++
			case l.Level == "warn" || l.Level == "error":
				sum.total++
				if strings.Contains(what, "injected fault") || strings.HasSuffix(what, ": EOF") || strings.Contains(what, ": EOF;") {
					sum.injected++
					return
				}
				key := fmt.Sprintf("%s %s %s", fn, l.Level, l.Message)
				if l.Outcome != "" {
					key += " (" + l.Outcome + ")"
				}
				if what != "" {
					key += ": " + clip(normalize(what), 170)
				}
				warns[key]++
			}
		})
	}
	sum.warnings, sum.waits = byCount(warns), byCount(waits)
	return sum
}

func byCount(m map[string]int) []warnCount {
	out := make([]warnCount, 0, len(m))
	for k, v := range m {
		out = append(out, warnCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].count != out[j].count {
			return out[i].count > out[j].count
		}
		return out[i].text < out[j].text
	})
	return out
}

// crashLine is what a crashed process said last: the error of its last
// JSON log line, or the line itself.
func crashLine(tail []string) string {
	for i := len(tail) - 1; i >= 0; i-- {
		l := tail[i]
		if strings.HasPrefix(l, "--- chaos:") {
			continue
		}
		var j struct{ Message, Error string }
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &j) == nil && j.Message != "" {
			if j.Error != "" {
				return j.Message + ": " + j.Error
			}
			return j.Message
		}
		return clip(l, 200)
	}
	return "(no output)"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
