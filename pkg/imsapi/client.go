package imsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of [New].
const (
	// DefaultRateLimit is the default request rate of one Client, in requests
	// per second, shared by all its callers. IMS publishes no per-API limit;
	// the gateway answers 429 APIGW.0308 above the account's own.
	DefaultRateLimit = 10
	// DefaultRateBurst is the default number of requests that may go at once
	// after a quiet spell.
	DefaultRateBurst = 10
	// DefaultTimeout bounds one request of the default HTTP client.
	DefaultTimeout = 30 * time.Second

	maxResponseBody = 64 << 20
	userAgent       = "imsflow-imsapi/1"
	contentTypeJSON = "application/json;charset=UTF-8"
)

// Credentials authenticate the requests of a [Client]: [AKSK] (request
// signing, the usual way) or [Token] (an IAM token).
type Credentials interface {
	authenticate(req *http.Request, body []byte, now time.Time) error
}

// AKSK are permanent or temporary access keys. Requests are signed with
// SDK-HMAC-SHA256 (see [Signer]); with temporary keys the security token is
// sent in X-Security-Token and signed too.
type AKSK struct {
	AccessKey     string
	SecretKey     Secret
	SecurityToken Secret // only for temporary access keys
}

func (c AKSK) authenticate(req *http.Request, body []byte, now time.Time) error {
	if c.SecurityToken != "" {
		req.Header.Set(HeaderSecToken, c.SecurityToken.Reveal())
	}
	return Signer{AccessKey: c.AccessKey, SecretKey: c.SecretKey}.Sign(req, body, now)
}

// String shows the first four characters of the access key and nothing of
// the secrets.
func (c AKSK) String() string {
	ak := c.AccessKey
	if len(ak) > 4 {
		ak = ak[:4] + "..."
	}
	return fmt.Sprintf("AKSK{AccessKey: %s, SecretKey: %s, SecurityToken: %s}", ak, c.SecretKey, c.SecurityToken)
}

// Format prints what String does, for every verb.
func (c AKSK) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// Token authenticates with an IAM token in X-Auth-Token (the X-Subject-Token
// of POST /v3/auth/tokens, valid for 24 hours). Nothing is signed.
type Token struct {
	Token Secret
}

func (t Token) authenticate(req *http.Request, _ []byte, _ time.Time) error {
	if t.Token == "" {
		return ErrMissingCredentials
	}
	req.Header.Set(HeaderAuthToken, t.Token.Reveal())
	return nil
}

// Client calls the Huawei Cloud IMS API. It is safe for concurrent use; all
// its callers share its request-rate limiter. It never retries: a caller
// decides with [IsRetryable] and [RetryAfter].
type Client struct {
	base      *url.URL
	creds     Credentials
	projectID string
	hc        *http.Client
	limiter   *rate.Limiter
	userAgent string
	now       func() time.Time
	observe   func(Observation) // nil: none
}

// Option configures a [Client]. An option that gets a bad value makes [New]
// fail with an error wrapping [ErrInvalidArgument].
type Option func(*Client) error

// WithHTTPClient sends requests through a copy of hc.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return fmt.Errorf("%w: nil HTTP client", ErrInvalidArgument)
		}
		cp := *hc
		cp.CheckRedirect = noRedirects
		c.hc = &cp
		return nil
	}
}

// WithProjectID sends X-Project-Id on every request and fills the project
// ID in the paths that have one ([Client.Job]).
func WithProjectID(id string) Option {
	return func(c *Client) error {
		if id == "" || strings.ContainsAny(id, "/?#") {
			return fmt.Errorf("%w: project ID %q", ErrInvalidArgument, id)
		}
		c.projectID = id
		return nil
	}
}

// WithRateLimit holds the client's requests to perSecond, with bursts of
// up to burst requests. Every caller of the client shares the limit.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(c *Client) error {
		if !(perSecond > 0) || burst < 1 {
			return fmt.Errorf("%w: rate limit %v/s with burst %d: both must be positive", ErrInvalidArgument, perSecond, burst)
		}
		c.limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
		return nil
	}
}

// WithRateLimiter makes the client wait on l before each request, so that
// several clients (for example of different projects of one account) can
// share one limit. rate.NewLimiter(rate.Inf, 0) removes the limit.
func WithRateLimiter(l *rate.Limiter) Option {
	return func(c *Client) error {
		if l == nil {
			return fmt.Errorf("%w: nil rate limiter", ErrInvalidArgument)
		}
		c.limiter = l
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = ua
		return nil
	}
}

// WithClock sets the clock used to sign requests (for tests).
func WithClock(now func() time.Time) Option {
	return func(c *Client) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidArgument)
		}
		c.now = now
		return nil
	}
}

// New returns a client of the IMS endpoint, for example
// "https://ims.cn-north-4.myhuaweicloud.com". The endpoint may carry a path
// prefix; it must not carry a query. New returns an error wrapping
// [ErrInvalidArgument] for a bad endpoint, nil credentials or a bad option.
func New(endpoint string, creds Credentials, opts ...Option) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: endpoint %q: want http(s)://host[:port][/prefix]", ErrInvalidArgument, endpoint)
	}
	if creds == nil {
		return nil, fmt.Errorf("%w: nil credentials", ErrInvalidArgument)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		base:  u,
		creds: creds,
		// A transport of its own: its connections are not closed by whoever
		// else calls http.DefaultTransport.CloseIdleConnections.
		hc:        &http.Client{Timeout: DefaultTimeout, CheckRedirect: noRedirects, Transport: transport()},
		limiter:   rate.NewLimiter(DefaultRateLimit, DefaultRateBurst),
		userAgent: userAgent,
		now:       time.Now,
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// noRedirects stops the client at a redirect, which then comes back as an
// *APIError: following one would send the signature, X-Auth-Token and
// X-Security-Token to another host, and IMS does not redirect.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ProjectID returns the project ID given with [WithProjectID], or "".
func (c *Client) ProjectID() string { return c.projectID }

// do sends one request of operation op (an Op constant): wait for the
// rate limiter, marshal in, authenticate, send, turn a non-2xx answer into
// *APIError and decode a 2xx one into out, then tell the observer. path is
// unescaped and must not carry untrusted "/" (callers check IDs).
func (c *Client) do(ctx context.Context, op, method, path string, query url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("imsapi: %s %s: encoding request: %w", method, path, err)
		}
	}
	u := *c.base
	u.Path += path
	// Spaces go as %20, as the canonical query signs them (and as Huawei's
	// SDK sends them), not as Encode's "+".
	u.RawQuery = strings.ReplaceAll(query.Encode(), "+", "%20")
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("imsapi: %s %s: %w", method, path, err)
	}
	if body == nil {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	} else {
		req.Header.Set("Content-Type", contentTypeJSON)
	}
	req.Header.Set("Accept", "application/json")
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if c.projectID != "" {
		req.Header.Set(HeaderProjectID, c.projectID)
	}
	waitStart := time.Now()
	if err := c.limiter.Wait(ctx); err != nil {
		err = &TransportError{Method: method, Path: path, Err: fmt.Errorf("waiting for the request rate limit: %w", err)}
		c.report(Observation{Operation: op, Wait: time.Since(waitStart), Err: err})
		return err
	}
	o := Observation{Operation: op, Sent: true}
	o.Wait = time.Since(waitStart)
	// Sign after waiting, so that the X-Sdk-Date is the time of sending.
	if err := c.creds.authenticate(req, body, c.now()); err != nil {
		return fmt.Errorf("imsapi: %s %s: %w", method, path, err)
	}
	sent := time.Now()
	o.StatusCode, o.Err = c.send(req, method, path, out)
	o.Duration = time.Since(sent)
	c.report(o)
	return o.Err
}

// send sends an authenticated request and reads its answer into out; it
// returns the answer's status (0: none arrived) and the call's error.
func (c *Client) send(req *http.Request, method, path string, out any) (int, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, &TransportError{Method: method, Path: path, Err: unwrapURLError(err), MaybeApplied: !neverSent(err)}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, newAPIError(method, path, resp, c.now())
	}
	if out == nil {
		return resp.StatusCode, nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBody))
	if err := dec.Decode(out); err != nil {
		if isTransportRead(err) {
			return resp.StatusCode, &TransportError{Method: method, Path: path, Err: fmt.Errorf("reading response: %w", err), MaybeApplied: true}
		}
		return resp.StatusCode, fmt.Errorf("imsapi: %s %s: %w %d response: %w", method, path, errUndecodable, resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}

// report tells the observer, if there is one.
func (c *Client) report(o Observation) {
	if c.observe != nil {
		c.observe(o)
	}
}

// errUndecodable marks a 2xx answer whose body could not be decoded.
var errUndecodable = errors.New("undecodable")

// unwrapURLError drops *url.Error's "Post \"https://...\":" prefix: the
// idleConns is how many idle connections to IMS a client keeps: as many
// as requests it may have in flight (a function's workers, the poller's
// queries), where http.DefaultTransport keeps 2 per host and so dials a
// new connection, TLS handshake and all, for most requests of a busy
// process.
const idleConns = 64

// transport is DefaultTransport with idleConns idle connections per host.
func transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(t.MaxIdleConns, idleConns)
	t.MaxIdleConnsPerHost = idleConns
	return t
}

// TransportError names method and path itself.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// isTransportRead reports whether a body decoding error came from the
// connection rather than from the JSON.
func isTransportRead(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return !errors.As(err, &syn) && !errors.As(err, &typ) && !errors.Is(err, io.EOF)
}
