// Package imsconfig reads the IMS client's settings from the environment,
// with the variable names Huawei Cloud's own SDKs use, and builds the
// client. Every command and function that talks to IMS shares it, so the
// names, defaults and checks are written once. ParseEnv, which reads any
// settings and names the variable of each wrong value, is every imsflow
// process's one way to read its environment.
package imsconfig

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Config is the IMS part of a process's configuration.
type Config struct {
	// Endpoint is the IMS endpoint, e.g. https://ims.cn-north-4.myhuaweicloud.com.
	Endpoint string `env:"IMS_ENDPOINT"`
	// AccessKey, SecretKey and SecurityToken are the AK/SK (and, for
	// temporary credentials, the token) that sign every request.
	AccessKey     string        `env:"HUAWEICLOUD_SDK_AK"`
	SecretKey     imsapi.Secret `env:"HUAWEICLOUD_SDK_SK"`
	SecurityToken imsapi.Secret `env:"HUAWEICLOUD_SDK_SECURITY_TOKEN"`
	// ProjectID is sent as X-Project-Id and used by the job status path.
	ProjectID string `env:"HUAWEICLOUD_SDK_PROJECT_ID"`
	// AuthToken is an IAM token, the alternative to AK/SK.
	AuthToken imsapi.Secret `env:"IMS_AUTH_TOKEN"`
	// RateLimit and RateBurst cap this process's IMS requests per second.
	RateLimit float64 `env:"IMS_RATE_LIMIT" envDefault:"10"`
	RateBurst int     `env:"IMS_RATE_BURST" envDefault:"10"`
	// Timeout bounds one IMS request.
	Timeout time.Duration `env:"IMS_TIMEOUT" envDefault:"30s"`
}

// Variables lists the environment variables of Config with their defaults,
// for help texts and the README.
var Variables = []struct{ Name, Default, Meaning string }{
	{"IMS_ENDPOINT", "", "IMS endpoint, https://ims.<region>.myhuaweicloud.com (required)"},
	{"HUAWEICLOUD_SDK_AK", "", "access key (AK/SK signing)"},
	{"HUAWEICLOUD_SDK_SK", "", "secret key (AK/SK signing)"},
	{"HUAWEICLOUD_SDK_SECURITY_TOKEN", "", "security token of temporary AK/SK"},
	{"HUAWEICLOUD_SDK_PROJECT_ID", "", "project ID: X-Project-Id header and the job status path"},
	{"IMS_AUTH_TOKEN", "", "IAM token (X-Auth-Token), instead of AK/SK"},
	{"IMS_RATE_LIMIT", "10", "IMS requests per second, shared by every imsflow process on one NATS"},
	{"IMS_RATE_BURST", "10", "requests allowed at once after a quiet spell, shared likewise"},
	{"IMS_TIMEOUT", "30s", "timeout of one IMS request"},
}

// Parse reads Config from environ (nil: the process environment) and
// checks it. The error names every variable that is missing or wrong.
func Parse(environ map[string]string) (Config, error) {
	var cfg Config
	if err := ParseEnv(&cfg, environ); err != nil {
		return cfg, fmt.Errorf("ims configuration: %w", err)
	}
	return cfg, cfg.Validate()
}

// Validate checks that exactly one way to authenticate is configured and
// that the numbers make sense.
func (c Config) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("IMS_ENDPOINT is not set (e.g. https://ims.cn-north-4.myhuaweicloud.com)"))
	} else if !strings.HasPrefix(c.Endpoint, "https://") && !strings.HasPrefix(c.Endpoint, "http://") {
		errs = append(errs, fmt.Errorf("IMS_ENDPOINT %q must start with https://", c.Endpoint))
	}
	aksk := c.AccessKey != "" || c.SecretKey != ""
	switch {
	case aksk && c.AuthToken != "":
		errs = append(errs, errors.New("both HUAWEICLOUD_SDK_AK/SK and IMS_AUTH_TOKEN are set; set one way to authenticate"))
	case aksk && (c.AccessKey == "" || c.SecretKey == ""):
		errs = append(errs, errors.New("HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK must be set together"))
	case !aksk && c.AuthToken == "":
		errs = append(errs, errors.New("no IMS credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (or IMS_AUTH_TOKEN)"))
	case !aksk && c.SecurityToken != "":
		errs = append(errs, errors.New("HUAWEICLOUD_SDK_SECURITY_TOKEN needs HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK"))
	}
	if !(c.RateLimit > 0) || c.RateBurst < 1 {
		errs = append(errs, fmt.Errorf("IMS_RATE_LIMIT (%v) and IMS_RATE_BURST (%d) must be positive", c.RateLimit, c.RateBurst))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("IMS_TIMEOUT (%s) must be positive", c.Timeout))
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = "\n  - " + e.Error()
	}
	return fmt.Errorf("ims configuration:%s", strings.Join(msgs, ""))
}

// Credentials returns the configured credentials.
func (c Config) Credentials() imsapi.Credentials {
	if c.AuthToken != "" {
		return imsapi.Token{Token: c.AuthToken}
	}
	return imsapi.AKSK{AccessKey: c.AccessKey, SecretKey: c.SecretKey, SecurityToken: c.SecurityToken}
}

// Client builds the IMS client; extra options come after the configured ones.
func (c Config) Client(extra ...imsapi.Option) (*imsapi.Client, error) {
	opts := []imsapi.Option{
		imsapi.WithRateLimit(c.RateLimit, c.RateBurst),
		imsapi.WithHTTPClient(&http.Client{Timeout: c.Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}),
	}
	if c.ProjectID != "" {
		opts = append(opts, imsapi.WithProjectID(c.ProjectID))
	}
	return imsapi.New(c.Endpoint, c.Credentials(), append(opts, extra...)...)
}
