// Package imsemu is a local IMS: an HTTP server that answers the IMS paths
// imsflow uses with the bodies, validation, error codes, signature checks,
// job lifecycle and throttling that Huawei Cloud documents. Tests, the demo
// and local runs use it in place of the real service.
//
// Start one in a test with [New] and point an [imsapi.Client] at its URL;
// drive its [Clock] to move jobs along; tell it about bucket objects with
// [Server.PutObject]; script failures with [Server.AddFailureRule] and
// faults with [Server.SetFaults]; read what it accepted with
// [Server.Submissions] and [Server.Stats]. The same controls are served as
// JSON under /_emulator/ for the standalone "imsflow emulator".
//
// Besides imports and exports it emulates the distribution of images
// (copies within and across regions, sharing, tags, deletion; see
// distribution.go): give [Config].Regions to have several regions, each a
// catalogue of its own served under [Server.RegionURL], and
// [Config].Accounts for the tenants images are shared with.
package imsemu

import (
	"bufio"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Defaults of [Config].
const (
	DefaultImportSpeed    = 256 << 20 // bytes per emulated second
	DefaultExportSpeed    = 512 << 20
	DefaultInitDuration   = 2 * time.Second
	DefaultMaxRunningJobs = 40 // IMS's documented limit of concurrent image-creation tasks
	DefaultImageQuota     = 50 // IMS's documented default private-image quota per region
	MaxSignatureSkew      = 15 * time.Minute
	maxBody               = 12 << 20 // the gateway refuses larger bodies (APIGW.0201)
)

// Config configures an emulator. The zero value works: no credentials are
// accepted until some are given, so give Credentials or Tokens.
type Config struct {
	// Credentials maps access keys to the secret keys they sign with.
	Credentials map[string]imsapi.Secret
	// Tokens are accepted in X-Auth-Token.
	Tokens []imsapi.Secret
	// ProjectID is the project of GET /v1/{project_id}/jobs/{job_id}; ""
	// accepts any. With Regions, it is the first region's project unless
	// that region names its own.
	ProjectID string
	// Clock drives jobs, image states and rate limits (default: real time).
	Clock Clock
	// ImportSpeed and ExportSpeed are the bytes a job handles per emulated
	// second; a job's RUNNING phase lasts size/speed.
	ImportSpeed, ExportSpeed int64
	// TimeScale divides every job duration: with 3600 an import that IMS
	// would run for an hour takes a second.
	TimeScale float64
	// InitDuration is the emulated time a job stays INIT: 0 means
	// DefaultInitDuration, negative none (a job is RUNNING from submission).
	InitDuration time.Duration
	// RateLimit is each AK's (or token's) allowed requests per second, with
	// bursts of RateBurst; above it the answer is 429 APIGW.0308. 0: no limit.
	RateLimit float64
	RateBurst int
	// MaxRunningJobs caps running image-creation (import) jobs, per
	// region; the next submission gets 400 IMG.0194. 0 means
	// DefaultMaxRunningJobs, negative no cap.
	MaxRunningJobs int
	// ImageQuota caps the private images of the project (400 IMG.0015),
	// in each region that sets no quota of its own.
	// 0 means DefaultImageQuota, negative no cap.
	ImageQuota int
	// Faults are injected into API requests from the start.
	Faults Faults
	// Seed makes request IDs, image IDs and injected faults repeatable.
	Seed uint64
	// OSVersions is the os_version catalogue (default: DefaultOSVersions).
	OSVersions []OSVersion
	// AssumeObjects takes any object an import names as existing (Standard,
	// with its bitmap, as large as the request's min_disk GB: the import
	// API carries no file size), for local runs whose notifications
	// describe objects no catalogue holds ("imsflow dev"). PutObject
	// still gives an object its exact size.
	AssumeObjects bool
	// DisableProgressAPI leaves GET /v1/cloudimages/job/{job_id} out (404
	// APIGW.0101, as a gateway without the API answers), so that clients'
	// fallback to the job status API can be tested.
	DisableProgressAPI bool
	// Store, when set, is the real bucket store imports are checked against
	// and exports written to (see [S3Store]).
	Store ObjectStore

	// Regions are the emulator's regions, each with its own images, jobs,
	// members and quota, served at URL/region/<name>; the first is also
	// served at the root. None (the zero value): one region, DefaultRegion,
	// of ProjectID and ImageQuota, as before regions existed.
	Regions []Region
	// DomainID is the account ID of the emulator's own account (the one of
	// Credentials and Tokens); "" derives one.
	DomainID string
	// Accounts are other tenants: images can be shared with their projects
	// and with them, and they call the API with their own credentials
	// (accepting shares with BatchUpdateMembers).
	Accounts []Account
	// Agencies are the IAM agencies a cross-region copy may name
	// (agency_name); nil accepts any.
	Agencies []string
	// KMSKeys are the KMS keys an in-region copy may encrypt with (cmk_id);
	// nil accepts any key ID, none of them a default key.
	KMSKeys []KMSKey
	// CopySpeed is the bytes a copy job handles per emulated second (both
	// kinds); 0 means DefaultCopySpeed.
	CopySpeed int64
	// MaxImageMembers caps the members of one image (400 IMG.0088). 0
	// means DefaultMaxImageMembers, negative no cap.
	MaxImageMembers int
	// MaxReplicationTasks caps the cross-region copies one account has
	// running at once; the next is answered 400 IMG.0060. 0 means
	// imsapi.MaxReplicationTasks (5), negative no cap.
	MaxReplicationTasks int
}

// Faults are failures injected into API requests (not into /_emulator/).
type Faults struct {
	// ErrorRate is the fraction of requests answered 500 or 503, at random.
	ErrorRate float64 `json:"error_rate"`
	// DropRate is the fraction of requests whose connection is closed
	// without an answer, after the request was read (and, for a
	// submission, after it was accepted when AcceptBeforeDrop is set).
	DropRate float64 `json:"drop_rate"`
	// AcceptBeforeDrop makes a dropped submission take effect first, the
	// case where IMS started a job but the caller never heard of it.
	AcceptBeforeDrop bool `json:"accept_before_drop"`
	// Latency is added before every answer.
	Latency Duration `json:"latency"`
}

// Duration is a time.Duration that reads and writes JSON as "1.5s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler; it takes "250ms" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(s)
		*d = Duration(v)
		return err
	}
	var n int64
	err := json.Unmarshal(b, &n)
	*d = Duration(n)
	return err
}

// Server is a running emulator.
type Server struct {
	// URL is the base URL to give imsapi.New, e.g. "http://127.0.0.1:41237".
	URL string

	cfg      Config
	clock    Clock
	listener net.Listener
	http     *http.Server
	handler  http.Handler

	// Regions and accounts: set up by newServer, never changed after.
	regions      []*region // Config.Regions, or the one DefaultRegion
	regionByName map[string]*region
	owner        *account            // the account of Credentials and Tokens
	others       []*account          // Config.Accounts
	accounts     map[string]*account // by access key (owner's too)
	secrets      map[string]imsapi.Secret

	mu          sync.Mutex
	rand        *rand.Rand
	faults      Faults
	failNext    []int
	objects     map[objectKey]Object
	buckets     map[string]bool
	images      []*image // in creation order, of every region
	imageByID   map[string]*image
	jobs        map[string]*job // of every region
	pending     jobHeap         // jobs not yet finished, by end time
	running     int             // import jobs in pending, of every region
	rules       []*failureRule
	limiters    map[string]*rate.Limiter
	submissions []Submission
	stats       Stats

	// Writes of finished exports to cfg.Store (see s3.go).
	unwritten  map[objectKey]*storeWrite // finished exports not yet in the Store
	exportSeq  uint64                    // counts finished exports
	exportedAt map[objectKey]uint64      // exportSeq when an export last finished onto the key
	closed     bool                      // no more writes start
	writers    sync.WaitGroup            // writes under way
	writeCtx   context.Context           // cancelled by Close
	stopWrites context.CancelFunc
}

// New starts an emulator on a loopback port; Close stops it.
func New(cfg Config) (*Server, error) {
	return Listen("127.0.0.1:0", cfg)
}

// Listen starts an emulator on addr ("host:port").
func Listen(addr string, cfg Config) (*Server, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("imsemu: listen on %s: %w", addr, err)
	}
	s.listener = ln
	s.URL = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

func newServer(cfg Config) (*Server, error) {
	if cfg.TimeScale < 0 || cfg.ImportSpeed < 0 || cfg.ExportSpeed < 0 || cfg.RateLimit < 0 {
		return nil, errors.New("imsemu: speeds, time scale and rate limit cannot be negative")
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	cfg.ImportSpeed = cmp.Or(cfg.ImportSpeed, DefaultImportSpeed)
	cfg.ExportSpeed = cmp.Or(cfg.ExportSpeed, DefaultExportSpeed)
	cfg.TimeScale = cmp.Or(cfg.TimeScale, 1)
	switch {
	case cfg.InitDuration == 0:
		cfg.InitDuration = DefaultInitDuration
	case cfg.InitDuration < 0:
		cfg.InitDuration = 0 // no INIT
	}
	cfg.MaxRunningJobs = cmp.Or(cfg.MaxRunningJobs, DefaultMaxRunningJobs)
	cfg.ImageQuota = cmp.Or(cfg.ImageQuota, DefaultImageQuota)
	if cfg.CopySpeed < 0 {
		return nil, errors.New("imsemu: copy speed cannot be negative")
	}
	cfg.CopySpeed = cmp.Or(cfg.CopySpeed, DefaultCopySpeed)
	cfg.MaxImageMembers = cmp.Or(cfg.MaxImageMembers, DefaultMaxImageMembers)
	cfg.MaxReplicationTasks = cmp.Or(cfg.MaxReplicationTasks, imsapi.MaxReplicationTasks)
	cfg.RateBurst = max(cfg.RateBurst, 1)
	if cfg.OSVersions == nil {
		cfg.OSVersions = DefaultOSVersions
	}
	// The caller (and DefaultOSVersions, a global) keeps its own.
	cfg.Credentials = maps.Clone(cfg.Credentials)
	cfg.Tokens = slices.Clone(cfg.Tokens)
	cfg.OSVersions = slices.Clone(cfg.OSVersions)
	cfg.Agencies = slices.Clone(cfg.Agencies)
	cfg.KMSKeys = slices.Clone(cfg.KMSKeys)
	writeCtx, stopWrites := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		clock:     cmp.Or[Clock](cfg.Clock, realClock{}),
		rand:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		faults:    cfg.Faults,
		objects:   map[objectKey]Object{},
		buckets:   map[string]bool{},
		imageByID: map[string]*image{},
		jobs:      map[string]*job{},
		limiters:  map[string]*rate.Limiter{},

		unwritten:  map[objectKey]*storeWrite{},
		exportedAt: map[objectKey]uint64{},
		writeCtx:   writeCtx,
		stopWrites: stopWrites,
	}
	if err := s.setupRegions(); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the emulator's HTTP handler, to serve it elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the server at once, closing every connection and cancelling
// the writes of exports to the Store under way.
func (s *Server) Close() error {
	var err error
	if s.http != nil {
		err = s.http.Close()
	}
	s.endWrites(nil)
	return err
}

// Shutdown stops the server gracefully: it stops accepting connections and
// waits for answers and writes to the Store under way, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.http != nil {
		err = s.http.Shutdown(ctx)
	}
	s.endWrites(ctx.Done())
	return err
}

// Client returns an imsapi client of this emulator (of its first region,
// at the root) signed with the first configured access key (or its first
// token), with no client-side rate limit unless opts set one.
func (s *Server) Client(opts ...imsapi.Option) (*imsapi.Client, error) {
	creds, err := s.ownCredentials()
	if err != nil {
		return nil, err
	}
	return newClient(s.URL, creds, s.regions[0].projectID, opts)
}

// ownCredentials are the first configured access key, or else the first
// token, of the emulator's own account.
func (s *Server) ownCredentials() (imsapi.Credentials, error) {
	for ak, sk := range s.cfg.Credentials {
		return imsapi.AKSK{AccessKey: ak, SecretKey: sk}, nil
	}
	if len(s.cfg.Tokens) > 0 {
		return imsapi.Token{Token: s.cfg.Tokens[0]}, nil
	}
	return nil, errors.New("imsemu: no credentials configured")
}

// newClient is a client of endpoint for project, without a client-side
// rate limit unless opts set one.
func newClient(endpoint string, creds imsapi.Credentials, projectID string, opts []imsapi.Option) (*imsapi.Client, error) {
	all := []imsapi.Option{imsapi.WithRateLimiter(rate.NewLimiter(rate.Inf, 0))}
	if projectID != "" {
		all = append(all, imsapi.WithProjectID(projectID))
	}
	return imsapi.New(endpoint, creds, append(all, opts...)...)
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	return nil
}

// FailNext makes the next len(statuses) API requests answer with these
// HTTP statuses (500, 503, 429, ...), in order, before anything else. Each
// status must be an error status, 400 to 599; otherwise FailNext returns an
// error and queues none of them.
func (s *Server) FailNext(statuses ...int) error {
	for _, st := range statuses {
		if st < 400 || st > 599 {
			return fmt.Errorf("imsemu: fail-next status %d is not an error status (400-599)", st)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, statuses...)
	return nil
}

func (f Faults) validate() error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 || f.DropRate < 0 || f.DropRate > 1 || f.Latency < 0 {
		return fmt.Errorf("imsemu: fault rates must be within 0..1 and latency not negative: %+v", f)
	}
	return nil
}

// ---- the request pipeline --------------------------------------------

// errorBody is IMS's error envelope.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// gatewayBody is the API gateway's error envelope.
type gatewayBody struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
	RequestID string `json:"request_id"`
}

// apiError is an answer other than 2xx, from a handler.
type apiError struct {
	status  int
	code    string
	message string
	gateway bool // gateway envelope instead of IMS's
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func imsError(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

type handlerFunc func(r *request) (any, *apiError)

// request is one authenticated API request as a handler sees it.
type request struct {
	*http.Request
	body      []byte
	accessKey string // or "token:<n>"
	// region is the region the request was sent to; caller the account
	// whose credentials signed it, and project that account's project in
	// the region.
	region  *region
	caller  *account
	project string
	now     time.Time
	// await is the export write the answer reports as done (a job's
	// SUCCESS): it goes out only once the object is in the Store.
	await *storeWrite
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// Each operation is served at the root (the first region) and under
	// /region/{region}/.
	api := func(pattern string, op string, h handlerFunc) {
		method, p, _ := strings.Cut(pattern, " ")
		mux.Handle(pattern, s.api(op, h))
		mux.Handle(method+" "+regionPrefix+"{region}"+p, s.api(op, h))
	}
	api("POST /v2/cloudimages/quickimport/action", OpQuickImport, s.quickImport)
	api("POST /v1/cloudimages/dataimages/action", OpDataImageImport, s.dataImageImport)
	api("POST /v2/cloudimages/action", OpImageImport, s.imageImport)
	api("POST /v1/cloudimages/{image_id}/file", OpExport, s.export)
	if !s.cfg.DisableProgressAPI {
		api("GET /v1/cloudimages/job/{job_id}", OpJobProgress, s.jobProgress)
	}
	api("GET /v1/{project_id}/jobs/{job_id}", OpJob, s.jobStatus)
	api("GET /v2/cloudimages", OpListImages, s.listImages)
	api("GET /v2/images/{image_id}", OpShowImage, s.showImage)
	api("GET /v1/cloudimages/os_version", OpOSVersions, s.osVersions)
	api("GET /v1/cloudimages/quota", OpQuota, s.quota)
	s.distributionRoutes(api)
	s.adminRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, s.newRequestID(), gatewayBody{
			ErrorCode: "APIGW.0101", ErrorMsg: "The API does not exist or has not been published in the environment",
		})
	})
	return mux
}

// api wraps a handler in what the gateway and IMS do around it: body
// limit, latency and dropped connections, authentication, the per-AK rate
// limit, injected errors, then the handler under the state lock.
func (s *Server) api(op string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqID := s.newRequestID()
		cw := &countingWriter{ResponseWriter: w, s: s, op: op}
		s.serveAPI(cw, r, op, h, reqID)
		cw.count(0) // no answer was written: dropped or abandoned
	})
}

// countingWriter counts a request's status in Stats before the answer
// goes out, so that a client never sees an answer its count lacks.
type countingWriter struct {
	http.ResponseWriter
	s       *Server
	op      string
	counted bool
}

func (cw *countingWriter) count(status int) {
	if cw.counted {
		return
	}
	cw.counted = true
	cw.s.mu.Lock()
	cw.s.stats.count(cw.op, status)
	cw.s.mu.Unlock()
}

func (cw *countingWriter) WriteHeader(status int) {
	cw.count(status)
	cw.ResponseWriter.WriteHeader(status)
}

func (cw *countingWriter) Write(b []byte) (int, error) {
	cw.count(http.StatusOK)
	return cw.ResponseWriter.Write(b)
}

// Hijack closes the connection for a drop, counted as status 0 first.
func (cw *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	cw.count(0)
	hj, ok := cw.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("imsemu: connection cannot be hijacked")
	}
	return hj.Hijack()
}

// serveAPI answers one request and returns the status sent.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, op string, h handlerFunc, reqID string) int {
	rg := s.regionFor(r.PathValue("region"))
	if rg == nil {
		return writeJSON(w, http.StatusNotFound, reqID, gatewayBody{
			ErrorCode: "APIGW.0101", ErrorMsg: "The API does not exist or has not been published in the environment", RequestID: reqID,
		})
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return 0
	}
	if len(body) > maxBody {
		return writeJSON(w, http.StatusRequestEntityTooLarge, reqID, gatewayBody{ErrorCode: "APIGW.0201", ErrorMsg: "Request entity too large", RequestID: reqID})
	}
	s.mu.Lock()
	faults := s.faults
	drop := faults.DropRate > 0 && s.rand.Float64() < faults.DropRate
	s.mu.Unlock()
	if faults.Latency > 0 {
		select {
		case <-time.After(time.Duration(faults.Latency)):
		case <-r.Context().Done():
			return 0
		}
	}
	// A submission (POST, or the PUT and DELETE of members and images)
	// may take effect before its connection drops.
	if drop && !(faults.AcceptBeforeDrop && r.Method != http.MethodGet) {
		return s.drop(w)
	}

	ak, aerr := s.authenticate(r, body)
	if aerr != nil {
		return writeAPIError(w, reqID, aerr)
	}
	s.mu.Lock()
	aerr = s.admit(ak, s.clock.Now())
	s.mu.Unlock()
	if aerr != nil {
		return writeAPIError(w, reqID, aerr)
	}
	req := &request{Request: r, body: body, accessKey: ak, region: rg}
	if aerr := s.identify(req); aerr != nil {
		return writeAPIError(w, reqID, aerr)
	}
	if r.Method == http.MethodPost {
		if aerr := s.syncFromStore(req, op); aerr != nil {
			return writeAPIError(w, reqID, aerr)
		}
	}
	s.mu.Lock()
	req.now = s.clock.Now()
	s.advance(req.now)
	out, aerr := h(req)
	s.mu.Unlock()
	if aerr == nil && req.await != nil {
		if werr := s.awaitWrite(r.Context(), req.await); werr != nil {
			out, aerr = nil, werr
		}
	}
	if drop {
		return s.drop(w)
	}
	if aerr != nil {
		return writeAPIError(w, reqID, aerr)
	}
	if _, ok := out.(noContent); ok {
		w.Header().Set(imsapi.HeaderRequestID, reqID)
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	}
	return writeJSON(w, http.StatusOK, reqID, out)
}

// noContent is a handler's answer of 204 without a body.
type noContent struct{}

// drop closes the connection without an answer (counted as status 0 by
// the countingWriter's Hijack before the connection closes).
func (s *Server) drop(w http.ResponseWriter) int {
	s.mu.Lock()
	s.stats.Dropped++
	s.mu.Unlock()
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return 0
		}
	}
	panic(http.ErrAbortHandler)
}

// authenticate checks the AK/SK signature or the token, as the gateway does.
func (s *Server) authenticate(r *http.Request, body []byte) (string, *apiError) {
	if tok := r.Header.Get(imsapi.HeaderAuthToken); tok != "" {
		for i, t := range s.cfg.Tokens {
			if t.Reveal() == tok {
				return fmt.Sprintf("token:%d", i), nil
			}
		}
		return "", &apiError{status: http.StatusUnauthorized, code: "APIGW.0301", gateway: true,
			message: "Incorrect IAM authentication information: decrypt token fail"}
	}
	var ak string
	lookup := func(a string) (imsapi.Secret, bool) {
		ak = a
		sk, ok := s.secrets[a]
		return sk, ok
	}
	err := imsapi.VerifySignature(r, body, lookup, time.Now(), MaxSignatureSkew)
	switch {
	case errors.Is(err, imsapi.ErrSignatureExpired):
		return "", &apiError{status: http.StatusUnauthorized, code: "APIGW.0303", gateway: true,
			message: "Incorrect app authentication information: " + err.Error()}
	case err != nil:
		return "", &apiError{status: http.StatusUnauthorized, code: "APIGW.0301", gateway: true,
			message: "Incorrect IAM authentication information: " + strings.TrimPrefix(err.Error(), "imsapi: ")}
	}
	return ak, nil
}

// admit applies FailNext, the per-AK rate limit and injected errors.
// It runs under s.mu.
func (s *Server) admit(ak string, now time.Time) *apiError {
	if len(s.failNext) > 0 {
		status := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.stats.Injected++
		return injected(status)
	}
	if s.cfg.RateLimit > 0 {
		l := s.limiters[ak]
		if l == nil {
			l = rate.NewLimiter(rate.Limit(s.cfg.RateLimit), s.cfg.RateBurst)
			s.limiters[ak] = l
		}
		if !l.AllowN(now, 1) {
			s.stats.Throttled++
			return &apiError{status: http.StatusTooManyRequests, code: "APIGW.0308", gateway: true,
				message: fmt.Sprintf("The throttling threshold has been reached: policy user over ratelimit,limit:%g,time:1 second", s.cfg.RateLimit)}
		}
	}
	if s.faults.ErrorRate > 0 && s.rand.Float64() < s.faults.ErrorRate {
		s.stats.Injected++
		return injected([]int{http.StatusInternalServerError, http.StatusServiceUnavailable}[s.rand.IntN(2)])
	}
	return nil
}

func injected(status int) *apiError {
	switch status {
	case http.StatusTooManyRequests:
		return &apiError{status: status, code: "APIGW.0308", gateway: true, message: "The throttling threshold has been reached: policy user over ratelimit"}
	case http.StatusServiceUnavailable:
		return &apiError{status: status, code: "APIGW.0503", gateway: true, message: "Service unavailable (injected fault)"}
	default:
		return &apiError{status: status, code: "IMG.0061", message: "An unknown error occurred (injected fault)."}
	}
}

func writeAPIError(w http.ResponseWriter, reqID string, e *apiError) int {
	if e.gateway {
		return writeJSON(w, e.status, reqID, gatewayBody{ErrorCode: e.code, ErrorMsg: e.message, RequestID: reqID})
	}
	var b errorBody
	b.Error.Code, b.Error.Message = e.code, e.message
	return writeJSON(w, e.status, reqID, b)
}

func writeJSON(w http.ResponseWriter, status int, reqID string, v any) int {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	if reqID != "" {
		w.Header().Set(imsapi.HeaderRequestID, reqID)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
	return status
}

// newRequestID returns 32 hex digits, like IMS's request and job IDs.
func (s *Server) newRequestID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hexID()
}

// hexID runs under s.mu.
func (s *Server) hexID() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(s.rand.UintN(256))
	}
	return hex.EncodeToString(b[:])
}

// uuid runs under s.mu.
func (s *Server) uuid() string {
	h := s.hexID()
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}
