package imsapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func mustDate(t testing.TB, s string) time.Time {
	t.Helper()
	d, err := time.Parse(SdkDateFormat, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSignerKnownAnswers checks the signer byte for byte against the three
// published vectors: Huawei's worked example in the API signing guide and the
// two cases of the Go SDK's core/auth/signer/signer_test.go.
func TestSignerKnownAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		method, url   string
		headers       map[string]string
		body          []byte
		ak            string
		sk            Secret
		sign          []string // Signer.Headers
		date          string
		wantCanonical string // "" to skip
		wantCRHash    string // "" to skip
		wantAuth      string
	}{
		{
			name:   "huawei official example",
			method: http.MethodGet,
			url:    "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
			headers: map[string]string{
				"Content-Type": "application/json",
			},
			ak:         "QTWAOYTTINDUT2QVKYUC",
			sk:         "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
			sign:       []string{"content-type", "host"},
			date:       "20191115T033655Z",
			wantCRHash: "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a",
			wantAuth: "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, " +
				"Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe",
		},
		{
			name:    "sdk test1 get with query",
			method:  http.MethodGet,
			url:     "https://example.huaweicloud.com/path?limit=1",
			headers: map[string]string{"TEST_UNDERSCORE": "TEST_VALUE"},
			ak:      "AccessKey",
			sk:      "SecretKey",
			sign:    []string{},
			date:    "20060102T150405Z",
			wantCanonical: "GET\n/path/\nlimit=1\nx-sdk-date:20060102T150405Z\n\nx-sdk-date\n" +
				"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			wantAuth: "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, " +
				"Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624",
		},
		{
			name:    "sdk test2 post with json body",
			method:  http.MethodPost,
			url:     "https://example.huaweicloud.com/path?key=value",
			headers: map[string]string{"TEST_UNDERSCORE": "TEST_VALUE", "Content-Type": "application/json"},
			body:    []byte("{\"Name\":\"test\",\"Id\":1}\n"),
			ak:      "AccessKey",
			sk:      "SecretKey",
			sign:    []string{},
			date:    "20060102T150405Z",
			wantAuth: "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, " +
				"Signature=cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.headers {
				req.Header[k] = []string{v} // keep TEST_UNDERSCORE as written
			}
			s := Signer{AccessKey: tt.ak, SecretKey: tt.sk, Headers: tt.sign}
			if err := s.Sign(req, tt.body, mustDate(t, tt.date)); err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if got := req.Header.Get(HeaderSdkDate); got != tt.date {
				t.Errorf("X-Sdk-Date = %q, want %q", got, tt.date)
			}
			canonical := CanonicalRequest(req, s.signedHeaders(req), tt.body)
			if tt.wantCanonical != "" && canonical != tt.wantCanonical {
				t.Errorf("canonical request =\n%q\nwant\n%q", canonical, tt.wantCanonical)
			}
			if tt.wantCRHash != "" {
				sum := sha256.Sum256([]byte(canonical))
				if got := hex.EncodeToString(sum[:]); got != tt.wantCRHash {
					t.Errorf("canonical request hash = %s, want %s\ncanonical:\n%s", got, tt.wantCRHash, canonical)
				}
			}
			if got := req.Header.Get("Authorization"); got != tt.wantAuth {
				t.Errorf("Authorization =\n%s\nwant\n%s", got, tt.wantAuth)
			}
		})
	}
}

func TestSignerDefaultHeaders(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest(http.MethodGet, "https://ims.example.com/v1/cloudimages/quota", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderProjectID, "p1")
	req.Header.Set(HeaderSecToken, "tok")
	if err := (Signer{AccessKey: "ak", SecretKey: "sk"}).Sign(req, nil, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	auth := req.Header.Get("Authorization")
	if want := "SignedHeaders=host;x-project-id;x-sdk-date;x-security-token,"; !strings.Contains(auth, want) {
		t.Errorf("Authorization = %q, want it to contain %q", auth, want)
	}
	if got := req.Header.Get(HeaderSdkDate); got != "19700101T000000Z" {
		t.Errorf("X-Sdk-Date = %q, want 19700101T000000Z", got)
	}
}

func TestSignerMissingCredentials(t *testing.T) {
	t.Parallel()
	for _, s := range []Signer{{AccessKey: "ak"}, {SecretKey: "sk"}} {
		req, _ := http.NewRequest(http.MethodGet, "https://ims.example.com/", nil)
		if err := s.Sign(req, nil, time.Unix(0, 0)); err != ErrMissingCredentials {
			t.Errorf("Sign with %+v = %v, want ErrMissingCredentials", s, err)
		}
		if req.Header.Get("Authorization") != "" {
			t.Errorf("Sign with %+v set Authorization", s)
		}
	}
}

func TestCanonicalQuery(t *testing.T) {
	t.Parallel()
	// The SDK's own canonicalQueryString test.
	q := url.Values{}
	q.Add("limit", "1")
	q.Add("enable", "true")
	q.Add("test", "一 (&=?!#%.*)")
	q.Add("path", "/tmp/123")
	q.Add("multi", "3")
	q.Add("multi", "1")
	q.Add("multi", "2")
	q.Add("empty", "")
	want := "empty=&enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29"
	if got := CanonicalQuery(q); got != want {
		t.Errorf("CanonicalQuery = %q, want %q", got, want)
	}
}

func TestCanonicalURI(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                            "/",
		"/":                           "/",
		"/v2/cloudimages":             "/v2/cloudimages/",
		"/v2/cloudimages/":            "/v2/cloudimages/",
		"/v1/p/jobs/a b":              "/v1/p/jobs/a%20b/",
		"/v1/cloudimages/é~x_y.z-1/f": "/v1/cloudimages/%C3%A9~x_y.z-1/f/",
	}
	for in, want := range tests {
		if got := CanonicalURI(in); got != want {
			t.Errorf("CanonicalURI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSignerUnsignedPayload(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest(http.MethodPut, "https://ims.example.com/x", nil)
	req.Header.Set(HeaderContentHash, UnsignedPayload)
	got := CanonicalRequest(req, []string{"x-sdk-date"}, []byte("whatever"))
	if !strings.HasSuffix(got, "\n"+UnsignedPayload) {
		t.Errorf("canonical request ends %q, want UNSIGNED-PAYLOAD", got[strings.LastIndexByte(got, '\n'):])
	}
}

// FuzzSign checks that signing never panics on any method, URL, header or
// body, and that a signed request verifies with the same key and fails with
// another.
func FuzzSign(f *testing.F) {
	f.Add("GET", "https://service.region.example.com/v1/77b6/vpcs?limit=2&marker=1", "application/json", []byte(nil), int64(1573788215))
	f.Add("POST", "https://example.huaweicloud.com/path?key=value", "", []byte("{\"Name\":\"test\",\"Id\":1}\n"), int64(0))
	f.Add("POST", "http://127.0.0.1:1/v1/cloudimages/%2F/file?a=%ZZ&b", "x\x00y", []byte{0xff}, int64(-1))
	f.Fuzz(func(t *testing.T, method, rawURL, project string, body []byte, unix int64) {
		req, err := http.NewRequest(method, rawURL, nil)
		if err != nil {
			return
		}
		req.Header.Set(HeaderProjectID, project)
		at := time.Unix(unix%(1<<35), 0) // within years 0..9999, which X-Sdk-Date can write
		s := Signer{AccessKey: "ak", SecretKey: "sk"}
		if err := s.Sign(req, body, at); err != nil {
			t.Fatalf("Sign: %v", err)
		}
		lookup := func(ak string) (Secret, bool) { return "sk", ak == "ak" }
		if err := VerifySignature(req, body, lookup, at, 15*time.Minute); err != nil {
			t.Fatalf("VerifySignature of a request just signed: %v", err)
		}
		wrong := func(ak string) (Secret, bool) { return "other", ak == "ak" }
		if err := VerifySignature(req, body, wrong, at, 15*time.Minute); err == nil {
			t.Fatal("VerifySignature with another secret key succeeded")
		}
	})
}

// TestRepeatedHeaderCanonical: a header sent twice is one canonical line per
// value, values sorted and trimmed.
func TestRepeatedHeaderCanonical(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest(http.MethodGet, "https://ims.example.com/x", nil)
	req.Header.Add("X-Project-Id", " b ")
	req.Header.Add("X-Project-Id", "a")
	got := CanonicalRequest(req, []string{"x-project-id"}, nil)
	want := "GET\n/x/\n\nx-project-id:a\nx-project-id:b\n\nx-project-id\n" + emptyBodySHA256Hex
	if got != want {
		t.Errorf("canonical =\n%q\nwant\n%q", got, want)
	}
}
