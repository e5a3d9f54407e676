package imsapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Names and literals of Huawei Cloud's SDK-HMAC-SHA256 request signing.
const (
	SigningAlgorithm   = "SDK-HMAC-SHA256"
	HeaderSdkDate      = "X-Sdk-Date"
	HeaderContentHash  = "X-Sdk-Content-Sha256"
	HeaderSecToken     = "X-Security-Token"
	HeaderProjectID    = "X-Project-Id"
	HeaderAuthToken    = "X-Auth-Token"
	HeaderRequestID    = "X-Request-Id"
	UnsignedPayload    = "UNSIGNED-PAYLOAD"
	SdkDateFormat      = "20060102T150405Z"
	emptyBodySHA256Hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// DefaultSignedHeaders are the headers [Signer] signs when its Headers field
// is nil, besides X-Sdk-Date, which is always signed. A header that is not on
// the request is left out of the signature.
var DefaultSignedHeaders = []string{"host", "x-project-id", "x-security-token"}

// Signer signs HTTP requests with an access key pair using Huawei Cloud's
// SDK-HMAC-SHA256 algorithm (API Gateway "AK/SK authentication").
//
// Every input is explicit: the request, the exact body bytes that will be
// sent and the signing time. Sign has no other source of data, so the same
// inputs always give the same Authorization header.
//
// Algorithm: https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html
type Signer struct {
	// AccessKey is the AK, sent in clear in the Authorization header.
	AccessKey string
	// SecretKey is the SK, the HMAC key. It is never sent.
	SecretKey Secret
	// Headers lists, in any case and order, the headers to sign besides
	// X-Sdk-Date. Nil means [DefaultSignedHeaders]. "host" is taken from
	// req.Host, or else req.URL.Host.
	Headers []string
}

// ErrMissingCredentials is returned when an access key, secret key or token
// needed to authenticate a request is empty.
var ErrMissingCredentials = errors.New("imsapi: missing credentials")

// Sign sets the X-Sdk-Date header to t and the Authorization header to the
// signature of req with body. body must be exactly the bytes sent (nil for
// none); when req carries "X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD" the body is
// not hashed. Sign returns [ErrMissingCredentials] when the access or secret
// key is empty.
func (s Signer) Sign(req *http.Request, body []byte, t time.Time) error {
	if s.AccessKey == "" || s.SecretKey == "" {
		return ErrMissingCredentials
	}
	req.Header.Set(HeaderSdkDate, t.UTC().Format(SdkDateFormat))
	headers := s.signedHeaders(req)
	canonical := CanonicalRequest(req, headers, body)
	sts := StringToSign(req.Header.Get(HeaderSdkDate), canonical)
	req.Header.Set("Authorization", AuthorizationHeader(s.AccessKey, headers, Signature(s.SecretKey, sts)))
	return nil
}

// signedHeaders returns the sorted lower-case names of the headers to sign
// that are present on req.
func (s Signer) signedHeaders(req *http.Request) []string {
	want := s.Headers
	if want == nil {
		want = DefaultSignedHeaders
	}
	out := []string{"x-sdk-date"}
	for _, h := range want {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" || slices.Contains(out, h) {
			continue
		}
		if h == "host" || len(req.Header.Values(h)) > 0 {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

// CanonicalRequest returns the canonical form of req that SDK-HMAC-SHA256
// hashes: method, canonical URI, canonical query, canonical headers, signed
// header list and the hex SHA-256 of body, one per line. signedHeaders must be
// sorted lower-case header names.
func CanonicalRequest(req *http.Request, signedHeaders []string, body []byte) string {
	var b strings.Builder
	b.WriteString(req.Method)
	b.WriteByte('\n')
	b.WriteString(CanonicalURI(req.URL.Path))
	b.WriteByte('\n')
	b.WriteString(CanonicalQuery(req.URL.Query()))
	b.WriteByte('\n')
	for _, h := range signedHeaders {
		for _, v := range headerValues(req, h) {
			b.WriteString(h)
			b.WriteByte(':')
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash(req, body))
	return b.String()
}

// headerValues returns the trimmed values of a signed header, sorted: a
// header sent more than once is one canonical line per value, as Huawei's
// SDK and gateway write it.
func headerValues(req *http.Request, name string) []string {
	if name == "host" {
		host := req.Host
		if host == "" && req.URL != nil {
			host = req.URL.Host
		}
		return []string{strings.TrimSpace(host)}
	}
	values := slices.Clone(req.Header.Values(name))
	if len(values) == 0 {
		return []string{""}
	}
	for i, v := range values {
		values[i] = strings.TrimSpace(v)
	}
	slices.Sort(values)
	return values
}

func payloadHash(req *http.Request, body []byte) string {
	if req.Header.Get(HeaderContentHash) == UnsignedPayload {
		return UnsignedPayload
	}
	if len(body) == 0 {
		return emptyBodySHA256Hex
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// CanonicalURI escapes each segment of the unescaped path and ends it with
// "/", as SDK-HMAC-SHA256 requires; the request itself need not end in "/".
func CanonicalURI(path string) string {
	segments := strings.Split(path, "/")
	for i, s := range segments {
		segments[i] = escape(s)
	}
	uri := strings.Join(segments, "/")
	if !strings.HasSuffix(uri, "/") {
		uri += "/"
	}
	if !strings.HasPrefix(uri, "/") {
		uri = "/" + uri
	}
	return uri
}

// CanonicalQuery sorts the query by key, and each key's values, escapes keys
// and values alike and joins them as k=v pairs with "&".
func CanonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		values := slices.Clone(q[k])
		slices.Sort(values)
		for _, v := range values {
			parts = append(parts, escape(k)+"="+escape(v))
		}
	}
	return strings.Join(parts, "&")
}

// StringToSign returns the string whose HMAC is the signature:
// the algorithm, the X-Sdk-Date value and the hex SHA-256 of the canonical
// request.
func StringToSign(sdkDate, canonicalRequest string) string {
	sum := sha256.Sum256([]byte(canonicalRequest))
	return SigningAlgorithm + "\n" + sdkDate + "\n" + hex.EncodeToString(sum[:])
}

// Signature returns hex(HMAC-SHA256(secretKey, stringToSign)). There is no key
// derivation in SDK-HMAC-SHA256.
func Signature(secretKey Secret, stringToSign string) string {
	mac := hmac.New(sha256.New, []byte(secretKey.Reveal()))
	mac.Write([]byte(stringToSign))
	return hex.EncodeToString(mac.Sum(nil))
}

// AuthorizationHeader formats the Authorization header value.
func AuthorizationHeader(accessKey string, signedHeaders []string, signature string) string {
	return SigningAlgorithm + " Access=" + accessKey + ", SignedHeaders=" + strings.Join(signedHeaders, ";") + ", Signature=" + signature
}

// escape percent-encodes every byte outside A-Z a-z 0-9 - _ . ~ with upper-case hex.
func escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	out := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			out = append(out, c)
			continue
		}
		out = append(out, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(out)
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}

// Errors of [VerifySignature], as the API gateway reports them: a bad or
// missing signature is APIGW.0301 (HTTP 401), a stale X-Sdk-Date APIGW.0303.
var (
	ErrBadSignature     = errors.New("imsapi: incorrect request signature")
	ErrSignatureExpired = errors.New("imsapi: request signature expired")
)

// VerifySignature checks the SDK-HMAC-SHA256 signature of a received request,
// as Huawei's API gateway does, so that servers such as the IMS emulator can
// authenticate what [Signer] signs. secretFor returns the secret key of an
// access key. It returns an error wrapping [ErrBadSignature] when the
// Authorization header is missing, malformed, names an unknown access key or
// does not match, and [ErrSignatureExpired] when X-Sdk-Date is more than
// maxSkew away from now.
func VerifySignature(req *http.Request, body []byte, secretFor func(accessKey string) (Secret, bool), now time.Time, maxSkew time.Duration) error {
	ak, headers, sig, err := parseAuthorization(req.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	date := req.Header.Get(HeaderSdkDate)
	at, err := time.Parse(SdkDateFormat, date)
	if err != nil {
		return fmt.Errorf("%w: X-Sdk-Date %q is not in the form %s", ErrBadSignature, date, SdkDateFormat)
	}
	if d := now.Sub(at); d > maxSkew || d < -maxSkew {
		return fmt.Errorf("%w: X-Sdk-Date %s is %s away from the server's time", ErrSignatureExpired, date, d.Round(time.Second))
	}
	if !slices.Contains(headers, "x-sdk-date") {
		return fmt.Errorf("%w: x-sdk-date is not among the signed headers", ErrBadSignature)
	}
	sk, ok := secretFor(ak)
	if !ok {
		return fmt.Errorf("%w: unknown access key", ErrBadSignature)
	}
	want := Signature(sk, StringToSign(date, CanonicalRequest(req, headers, body)))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return fmt.Errorf("%w: signature does not match", ErrBadSignature)
	}
	return nil
}

// parseAuthorization splits "SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex".
func parseAuthorization(v string) (ak string, headers []string, sig string, err error) {
	rest, ok := strings.CutPrefix(v, SigningAlgorithm+" ")
	if !ok {
		return "", nil, "", fmt.Errorf("%w: Authorization is not %s", ErrBadSignature, SigningAlgorithm)
	}
	for _, part := range strings.Split(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Access":
			ak = val
		case "SignedHeaders":
			headers = strings.Split(val, ";")
		case "Signature":
			sig = val
		}
	}
	if ak == "" || len(headers) == 0 || sig == "" {
		return "", nil, "", fmt.Errorf("%w: Authorization lacks Access, SignedHeaders or Signature", ErrBadSignature)
	}
	if !slices.IsSorted(headers) {
		return "", nil, "", fmt.Errorf("%w: SignedHeaders are not sorted", ErrBadSignature)
	}
	return ak, headers, sig, nil
}
