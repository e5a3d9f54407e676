package imsemu

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Operations, as counted in [Stats] and logged in [Submission].
const (
	OpQuickImport     = imsapi.OpQuickImport
	OpDataImageImport = imsapi.OpDataImageImport
	OpImageImport     = imsapi.OpImageImport
	OpExport          = imsapi.OpExport
	OpJobProgress     = imsapi.OpJobProgress
	OpJob             = imsapi.OpJob
	OpListImages      = imsapi.OpListImages
	OpShowImage       = "show_image" // not called by imsapi.Client
	OpOSVersions      = imsapi.OpOSVersions
	OpQuota           = imsapi.OpQuota
	OpCopyCrossRegion = imsapi.OpCopyCrossRegion
	OpCopyInRegion    = imsapi.OpCopyInRegion
	OpAddMembers      = imsapi.OpAddMembers
	OpUpdateMembers   = imsapi.OpUpdateMembers
	OpDeleteMembers   = imsapi.OpDeleteMembers
	OpListMembers     = imsapi.OpListMembers
	OpTags            = imsapi.OpTags
	OpDeleteImage     = imsapi.OpDeleteImage
)

// Object is a bucket object the emulator knows: what an import reads and
// an export writes.
type Object struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	// StorageClass is STANDARD when empty; IMS imports only from and exports
	// only to Standard storage.
	StorageClass string `json:"storage_class,omitempty"`
	// VirtualSize is the size of the disk inside the file, when known
	// (min_disk must cover it); 0 means unknown.
	VirtualSize int64 `json:"virtual_size,omitempty"`
}

type objectKey struct{ bucket, key string }

// PutObject adds or replaces an object (and so its bucket).
func (s *Server) PutObject(o Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putObject(o)
}

func (s *Server) putObject(o Object) {
	s.buckets[o.Bucket] = true
	s.objects[objectKey{o.Bucket, o.Key}] = o
}

// AddBucket makes an empty bucket known (an export target).
func (s *Server) AddBucket(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buckets[name] = true
}

// Object returns an object of the catalogue, for example one an export
// wrote. It first finishes the jobs whose end has come. With a Store, when
// the object is a finished export not yet in the Store, Object waits for
// its write (retrying a failed one), so that the Store has whatever Object
// reports; if that write fails, Object still reports the object, the
// failure is counted in [Stats].StoreErrors, and the next job answer
// reporting the export's SUCCESS tries again.
func (s *Server) Object(bucket, key string) (Object, bool) {
	s.mu.Lock()
	s.advance(s.clock.Now())
	w := s.unwritten[objectKey{bucket, key}]
	s.mu.Unlock()
	if w != nil {
		_ = s.awaitWrite(context.Background(), w)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[objectKey{bucket, key}]
	return o, ok
}

// FailureRule makes matching jobs end in FAIL with IMS's error code and
// reason. A rule matches a job when every criterion it sets does: the
// object key (glob, as path.Match) of an import's image_url or an export's
// bucket_url, the name of the image, the region, and the operation. Jobs
// that name no object (copies, member jobs) never match a rule with a
// KeyPattern. At least one of KeyPattern, NamePattern and Region is
// required.
type FailureRule struct {
	// KeyPattern is a path.Match pattern of the object key, e.g. "*broken*".
	KeyPattern string `json:"key_pattern"`
	// NamePattern is a path.Match pattern of the image's name: the new
	// image's of an import or a copy, the exported image's, any of the
	// images' of a member job.
	NamePattern string `json:"name_pattern,omitempty"`
	// Region is the region the job runs in; for a cross-region copy, its
	// target region.
	Region string `json:"region,omitempty"`
	// Operation limits the rule to one of the Op* operations ("" for all submissions).
	Operation string `json:"operation,omitempty"`
	// Times is how many jobs the rule fails before it stops matching, so
	// that a retry can succeed; 0 fails every matching job.
	Times int `json:"times,omitempty"`
	// ErrorCode and FailReason are what the job reports.
	ErrorCode  string `json:"error_code"`
	FailReason string `json:"fail_reason"`
	// AtPercent is the progress (0..1) at which the job fails (default 0.5).
	AtPercent float64 `json:"at_percent,omitempty"`
}

// AddFailureRule adds a rule; the first matching rule applies. It returns
// an error for a bad pattern, an unknown region, a negative Times, or a rule
// with no KeyPattern, NamePattern or Region.
func (s *Server) AddFailureRule(r FailureRule) error {
	for _, p := range []string{r.KeyPattern, r.NamePattern} {
		if _, err := path.Match(p, ""); err != nil {
			return errBadPattern(p)
		}
	}
	switch {
	case r.KeyPattern == "" && r.NamePattern == "" && r.Region == "":
		return errBadPattern("")
	case r.Region != "" && s.regionByName[r.Region] == nil:
		return fmt.Errorf("imsemu: failure rule for unknown region %q", r.Region)
	case r.Times < 0:
		return fmt.Errorf("imsemu: failure rule times %d is negative", r.Times)
	}
	if r.ErrorCode == "" {
		r.ErrorCode = "IMG.1075"
	}
	if r.FailReason == "" {
		r.FailReason = "registering the image file failed"
	}
	if r.AtPercent <= 0 || r.AtPercent >= 1 {
		r.AtPercent = 0.5
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &failureRule{FailureRule: r})
	return nil
}

type errBadPattern string

func (e errBadPattern) Error() string {
	if e == "" {
		return "imsemu: a failure rule needs a key pattern, a name pattern or a region"
	}
	return "imsemu: bad key pattern " + string(e)
}

// failureRule is a FailureRule and how many jobs it failed.
type failureRule struct {
	FailureRule
	used int
}

// failureFor returns the rule that fails a new job of op in region, on
// object key ("": none) and of image names, and counts the job against the
// rule's Times. It runs under s.mu, when the job is started.
func (s *Server) failureFor(op, region, key string, names ...string) *FailureRule {
	for _, r := range s.rules {
		switch {
		case r.Operation != "" && r.Operation != op,
			r.Times > 0 && r.used >= r.Times,
			r.Region != "" && r.Region != region,
			r.KeyPattern != "" && (key == "" || !match(r.KeyPattern, key)),
			r.NamePattern != "" && !slices.ContainsFunc(names, func(n string) bool { return match(r.NamePattern, n) }):
			continue
		}
		r.used++
		return &r.FailureRule
	}
	return nil
}

func match(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

// Submission is one accepted job submission.
type Submission struct {
	Seq       int             `json:"seq"`
	Time      time.Time       `json:"time"`
	Region    string          `json:"region,omitempty"` // the region it was sent to
	Operation string          `json:"operation"`
	AccessKey string          `json:"access_key"`
	JobID     string          `json:"job_id"`
	ImageID   string          `json:"image_id"`
	Name      string          `json:"name,omitempty"`
	URL       string          `json:"url"` // image_url of an import, bucket_url of an export
	Body      json.RawMessage `json:"body"`
}

// Submissions returns every accepted submission, oldest first.
func (s *Server) Submissions() []Submission {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Submission(nil), s.submissions...)
}

// Stats are the emulator's counters.
type Stats struct {
	// Requests counts API requests by operation; Statuses by HTTP status
	// sent (0: connection dropped).
	Requests map[string]int `json:"requests"`
	Statuses map[int]int    `json:"statuses"`
	// Throttled counts 429 APIGW.0308 answers of the rate limit; Capped the
	// IMG.0194 answers of the running-jobs cap; Injected the faults; Dropped
	// the connections closed without an answer.
	Throttled int `json:"throttled"`
	Capped    int `json:"capped"`
	Injected  int `json:"injected"`
	Dropped   int `json:"dropped"`
	// CopyCapped counts the IMG.0060 answers of the cap of running
	// cross-region copies.
	CopyCapped int `json:"copy_capped"`
	// StoreErrors counts failed writes of exports to the object store.
	StoreErrors int `json:"store_errors"`
	// Jobs by outcome, and running image-creation jobs now and at most.
	JobsSubmitted int `json:"jobs_submitted"`
	JobsSucceeded int `json:"jobs_succeeded"`
	JobsFailed    int `json:"jobs_failed"`
	RunningJobs   int `json:"running_jobs"`
	MaxRunning    int `json:"max_running"`
}

func (st *Stats) count(op string, status int) {
	if st.Requests == nil {
		st.Requests, st.Statuses = map[string]int{}, map[int]int{}
	}
	st.Requests[op]++
	st.Statuses[status]++
}

// Stats returns a copy of the counters, as of the emulator's clock: jobs
// whose end has come are finished first (and a finished export's write to
// the Store starts, without Stats waiting for it).
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.clock.Now())
	st := s.stats
	st.Requests, st.Statuses = map[string]int{}, map[int]int{}
	for k, v := range s.stats.Requests {
		st.Requests[k] = v
	}
	for k, v := range s.stats.Statuses {
		st.Statuses[k] = v
	}
	st.RunningJobs = s.running
	return st
}

// ---- images ------------------------------------------------------------

type image struct {
	info    imsapi.Image
	created time.Time
	job     *job // the import (or copy) job while it runs
	deleted bool
	region  *region
	owner   *account
	members []*member
}

// status follows the import job: queued while INIT, saving while RUNNING.
func (im *image) view(now time.Time) imsapi.Image {
	v := im.info
	if j := im.job; j != nil && !j.finished {
		if now.Before(j.runStart()) {
			v.Status = imsapi.ImageQueued
		} else {
			v.Status = imsapi.ImageSaving
		}
	}
	v.Tags = append([]string(nil), im.info.Tags...)
	return v
}

// AddImage puts an image into the store as if it existed already (a public
// image, a whole-ECS image, an encrypted one...), for export tests. Empty
// ID, status and image type become a new ID, active and private. The image
// is the emulator's own account's, in the first region (see
// [Server.AddImageTo]).
func (s *Server) AddImage(im imsapi.Image) imsapi.Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addImageTo(s.regions[0], im)
}

// addImageTo is AddImage in region rg. It runs under s.mu.
func (s *Server) addImageTo(rg *region, im imsapi.Image) imsapi.Image {
	if im.ID == "" {
		im.ID = s.uuid()
	}
	if im.Status == "" {
		im.Status = imsapi.ImageActive
	}
	if im.ImageType == "" {
		im.ImageType = "private"
	}
	if im.Visibility == "" {
		im.Visibility = "private"
	}
	now := s.clock.Now()
	if im.CreatedAt == "" {
		im.CreatedAt = now.UTC().Format(time.RFC3339)
		im.UpdatedAt = im.CreatedAt
	}
	if im.Status == imsapi.ImageActive && im.ActiveAt == "" {
		im.ActiveAt = cmpOr(im.UpdatedAt, im.CreatedAt)
	}
	im.Tags = canonicalTags(im.Tags)
	s.addImage(&image{info: im, created: now, region: rg, owner: s.owner})
	return im
}

func (s *Server) addImage(im *image) {
	s.images = append(s.images, im)
	s.imageByID[im.info.ID] = im
}

// Images returns every image of the first region (of every account) as
// IMS would list it now (finishing the jobs whose end has come, as
// [Server.Stats] does). [Server.RegionImages] lists another region's.
func (s *Server) Images() []imsapi.Image {
	return s.RegionImages(s.regions[0].name)
}

// Objects returns the objects of the emulator's own catalogue (PutObject,
// -objects, finished exports), by bucket and key. With a Store, the
// bucket's other objects are not listed: the emulator looks each one up
// when a submission names it.
func (s *Server) Objects() []Object {
	s.mu.Lock()
	out := make([]Object, 0, len(s.objects))
	for _, o := range s.objects {
		out = append(out, o)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Object) int {
		return cmp.Or(strings.Compare(a.Bucket, b.Bucket), strings.Compare(a.Key, b.Key))
	})
	return out
}

// canonicalTag is the one form an image's tag list holds: "key.value",
// split at the first "." as IMS documents, with an empty value written
// "key." — so tags ["k"], tags ["k."] and image_tags [{"key":"k"}] are
// all stored as "k.", and a tag filter of "k" or "k." matches them all.
func canonicalTag(t string) string {
	key, value, _ := strings.Cut(t, ".")
	return key + "." + value
}

func canonicalTags(tags []string) []string {
	if tags == nil {
		return nil
	}
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = canonicalTag(t)
	}
	return out
}

// privateImages counts acct's private images in rg, what the quota caps.
func (s *Server) privateImages(rg *region, acct *account) int {
	n := 0
	for _, im := range s.images {
		if !im.deleted && im.region == rg && im.owner == acct && im.info.ImageType == "private" && im.info.Status != imsapi.ImageKilled {
			n++
		}
	}
	return n
}

// ---- jobs ----------------------------------------------------------------

type job struct {
	id, jobType, subJobID string
	op                    string
	image                 *image // the imported image, or the exported one, or a copy
	imageID, imageName    string
	submitted             time.Time
	init, run             time.Duration
	fail                  *FailureRule
	finished              bool
	// export target, and its write to the Store once the export succeeded
	target Object
	write  *storeWrite
	index  int // in the heap
	// where it was submitted (and is queried) and who submitted it
	region  *region
	account *account
	// the image a copy copies; the images of a member job, and the change
	// it makes when it succeeds, at its end
	source  *image
	members []*image
	apply   func(at time.Time)
}

func (j *job) runStart() time.Time { return j.submitted.Add(j.init) }

// end is when the job reaches SUCCESS or FAIL.
func (j *job) end() time.Time {
	run := j.run
	if j.fail != nil {
		run = time.Duration(math.Ceil(float64(run) * progressTime(j.fail.AtPercent)))
	}
	return j.runStart().Add(run)
}

// isImport reports whether j imports an image file: it counts against
// MaxRunningJobs and has a sub-job.
func (j *job) isImport() bool {
	return j.op == OpQuickImport || j.op == OpDataImageImport || j.op == OpImageImport
}

// createsImage reports whether j makes a new image, which follows it:
// queued, saving, then active or killed.
func (j *job) createsImage() bool {
	return j.isImport() || j.op == OpCopyCrossRegion || j.op == OpCopyInRegion
}

// jobAnswer is a job as the job APIs report it. It mirrors [imsapi.Job]
// but always carries entities.current_task, "" once the job has ended, as
// IMS's SUCCESS example does (imsapi.JobEntities omits an empty one).
type jobAnswer struct {
	JobID      string            `json:"job_id"`
	JobType    string            `json:"job_type"`
	Status     imsapi.JobStatus  `json:"status"`
	BeginTime  imsapi.Timestamp  `json:"begin_time"`
	EndTime    imsapi.Timestamp  `json:"end_time"`
	ErrorCode  imsapi.FlexString `json:"error_code"`
	FailReason imsapi.FlexString `json:"fail_reason"`
	Entities   jobAnswerEntities `json:"entities"`
}

type jobAnswerEntities struct {
	ImageID        string  `json:"image_id,omitempty"`
	ImageName      string  `json:"image_name,omitempty"`
	ProcessPercent float64 `json:"process_percent"`
	CurrentTask    string  `json:"current_task"`
	SubJobID       string  `json:"subJobId,omitempty"`
}

// view is the job as the job APIs report it at now.
func (j *job) view(now time.Time, progressAPI bool) jobAnswer {
	v := jobAnswer{
		JobID: j.id, JobType: j.jobType,
		BeginTime: imsapi.Timestamp{Time: j.submitted.UTC()},
		Entities:  jobAnswerEntities{ImageID: j.imageID, ImageName: j.imageName},
	}
	percent := 0.0
	switch {
	case now.Before(j.runStart()):
		v.Status = imsapi.JobInit
		v.Entities.CurrentTask = j.initTask()
	case now.Before(j.end()):
		v.Status = imsapi.JobRunning
		percent = ProgressAt(float64(now.Sub(j.runStart())) / float64(j.run))
		v.Entities.CurrentTask = j.task()
	case j.fail != nil:
		v.Status = imsapi.JobFail
		percent = j.fail.AtPercent
		v.EndTime = imsapi.Timestamp{Time: j.end().UTC()}
		v.ErrorCode, v.FailReason = imsapi.FlexString(j.fail.ErrorCode), imsapi.FlexString(j.fail.FailReason)
	default:
		v.Status = imsapi.JobSuccess
		percent = 1
		v.EndTime = imsapi.Timestamp{Time: j.end().UTC()}
	}
	v.Entities.ProcessPercent = twoDecimals(percent)
	if v.Status == imsapi.JobRunning {
		v.Entities.ProcessPercent = min(v.Entities.ProcessPercent, 0.99) // 1 means done
	}
	if progressAPI && j.isImport() {
		v.Entities.SubJobID = j.subJobID
	}
	return v
}

// twoDecimals truncates a fraction to the two decimals IMS reports. The
// epsilon keeps a value such as 0.29, which is 28.999999999999996 once
// multiplied by 100, from falling to 0.28.
func twoDecimals(p float64) float64 {
	return math.Floor(p*100+1e-9) / 100
}

// initTask and task are entities.current_task while INIT and RUNNING. IMS
// documents the import's; the others are UNCONFIRMED names of that shape.
func (j *job) initTask() string {
	switch {
	case j.isImport():
		return "ImportImageTask:ObtainImageInfoTask"
	case j.op == OpExport:
		return "ExportImageTask:ObtainImageInfoTask"
	case j.createsImage():
		return "CopyImageTask:ObtainImageInfoTask"
	}
	return "ImageMembersTask:CheckMembersTask"
}

func (j *job) task() string {
	switch {
	case j.isImport():
		return "ImportImageTask:RegisterImageTask"
	case j.op == OpExport:
		return "ExportImageTask:UploadImageFileTask"
	case j.op == OpCopyCrossRegion:
		return "CrossRegionCopyImageTask:CopyImageFileTask"
	case j.op == OpCopyInRegion:
		return "CopyImageTask:CopyImageFileTask"
	}
	return "ImageMembersTask:UpdateMembersTask"
}

// advance finishes every job whose end has come: the imported image turns
// active (or killed), the exported object appears in the catalogue and its
// write to the Store starts. It runs under s.mu before every answer, so
// state is always as of the clock.
func (s *Server) advance(now time.Time) {
	for len(s.pending) > 0 && !s.pending[0].end().After(now) {
		j := heap.Pop(&s.pending).(*job)
		j.finished = true
		if j.isImport() {
			s.running--
			j.region.running--
		}
		ok := j.fail == nil
		if ok {
			s.stats.JobsSucceeded++
		} else {
			s.stats.JobsFailed++
		}
		stamp := j.end().UTC().Format(time.RFC3339)
		switch {
		case j.apply != nil:
			if ok {
				j.apply(j.end())
			}
		case j.createsImage() && ok:
			j.image.info.Status = imsapi.ImageActive
			j.image.info.UpdatedAt = stamp
			j.image.info.ActiveAt = stamp
			j.image.job = nil
		case j.createsImage():
			j.image.info.Status = imsapi.ImageKilled
			j.image.info.UpdatedAt = stamp
			j.image.job = nil
		case ok:
			s.finishExport(j)
		}
	}
}

// startJob records a new job and its submission. It runs under s.mu.
func (s *Server) startJob(r *request, j *job, op, name, url string) string {
	j.id = s.hexID()
	j.op = op
	j.region, j.account = r.region, r.caller
	j.submitted = r.now
	if s.cfg.InitDuration > 0 {
		j.init = scale(s.cfg.InitDuration, s.cfg.TimeScale)
	}
	if j.isImport() {
		j.subJobID = s.hexID()
		s.running++
		r.region.running++
		s.stats.MaxRunning = max(s.stats.MaxRunning, s.running)
	}
	s.jobs[j.id] = j
	heap.Push(&s.pending, j)
	s.stats.JobsSubmitted++
	s.submissions = append(s.submissions, Submission{
		Seq: len(s.submissions) + 1, Time: r.now, Region: r.region.name, Operation: op, AccessKey: r.accessKey,
		JobID: j.id, ImageID: j.imageID, Name: name, URL: url, Body: append(json.RawMessage(nil), r.body...),
	})
	return j.id
}

// duration is how long a job of size bytes runs at speed, scaled; at least
// one second of emulated time.
func duration(size, speed int64, timeScale float64) time.Duration {
	d := max(time.Duration(float64(size)/float64(speed)*float64(time.Second)), time.Second)
	return scale(d, timeScale)
}

func scale(d time.Duration, timeScale float64) time.Duration {
	return max(time.Duration(float64(d)/timeScale), time.Millisecond)
}

// jobHeap orders unfinished jobs by end time.
type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, k int) bool { return h[i].end().Before(h[k].end()) }
func (h jobHeap) Swap(i, k int)      { h[i], h[k] = h[k], h[i]; h[i].index = i; h[k].index = k }
func (h *jobHeap) Push(x any)        { j := x.(*job); j.index = len(*h); *h = append(*h, j) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	*h = old[:len(old)-1]
	return j
}
