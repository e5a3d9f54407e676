package imsconfig

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

const sk = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"

func TestParse(t *testing.T) {
	t.Parallel()
	base := func(kv ...string) map[string]string {
		m := map[string]string{"IMS_ENDPOINT": "https://ims.cn-north-4.myhuaweicloud.com"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring; "" for success
	}{
		{"aksk", base("HUAWEICLOUD_SDK_AK", "AK", "HUAWEICLOUD_SDK_SK", sk), ""},
		{"temporary aksk", base("HUAWEICLOUD_SDK_AK", "AK", "HUAWEICLOUD_SDK_SK", sk, "HUAWEICLOUD_SDK_SECURITY_TOKEN", "tok"), ""},
		{"token", base("IMS_AUTH_TOKEN", "tok"), ""},
		{"no endpoint", map[string]string{"IMS_AUTH_TOKEN": "tok"}, "IMS_ENDPOINT is not set"},
		{"endpoint without scheme", base("IMS_ENDPOINT", "ims.example.com", "IMS_AUTH_TOKEN", "t"), "must start with https://"},
		{"no credentials", base(), "no IMS credentials"},
		{"ak without sk", base("HUAWEICLOUD_SDK_AK", "AK"), "must be set together"},
		{"sk without ak", base("HUAWEICLOUD_SDK_SK", sk), "must be set together"},
		{"both ways", base("HUAWEICLOUD_SDK_AK", "AK", "HUAWEICLOUD_SDK_SK", sk, "IMS_AUTH_TOKEN", "t"), "set one way"},
		{"security token alone", base("IMS_AUTH_TOKEN", "t", "HUAWEICLOUD_SDK_SECURITY_TOKEN", "x"), "needs HUAWEICLOUD_SDK_AK"},
		{"zero rate", base("IMS_AUTH_TOKEN", "t", "IMS_RATE_LIMIT", "0"), "IMS_RATE_LIMIT"},
		{"bad rate", base("IMS_AUTH_TOKEN", "t", "IMS_RATE_LIMIT", "fast"), `IMS_RATE_LIMIT: "fast" is not a number`},
		{"bad timeout", base("IMS_AUTH_TOKEN", "t", "IMS_TIMEOUT", "-1s"), "IMS_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse(tt.env)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse = %v", err)
				}
				if _, err := cfg.Client(); err != nil {
					t.Fatalf("Client = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), sk) {
				t.Errorf("error reveals the secret key: %v", err)
			}
		})
	}
}

func TestDefaultsAndCredentials(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(map[string]string{"IMS_ENDPOINT": "https://ims.example.com", "HUAWEICLOUD_SDK_AK": "AK", "HUAWEICLOUD_SDK_SK": sk, "HUAWEICLOUD_SDK_PROJECT_ID": "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimit != 10 || cfg.RateBurst != 10 || cfg.Timeout != 30*time.Second {
		t.Errorf("defaults = %v/%d/%s", cfg.RateLimit, cfg.RateBurst, cfg.Timeout)
	}
	if _, ok := cfg.Credentials().(imsapi.AKSK); !ok {
		t.Errorf("Credentials = %T, want AKSK", cfg.Credentials())
	}
	if out := fmt.Sprintf("%+v %#v", cfg, cfg); strings.Contains(out, sk) {
		t.Errorf("printing the config reveals the secret key: %s", out)
	}
	c, err := cfg.Client()
	if err != nil || c.ProjectID() != "p1" {
		t.Errorf("Client = %v, %v", c, err)
	}
}

// TestVariablesMatchTags keeps the documented variable list in step with
// the struct tags: same names, same defaults.
func TestVariablesMatchTags(t *testing.T) {
	t.Parallel()
	tags := map[string]string{}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		tags[name] = f.Tag.Get("envDefault")
	}
	documented := map[string]string{}
	for _, v := range Variables {
		documented[v.Name] = v.Default
	}
	if !reflect.DeepEqual(tags, documented) {
		t.Errorf("struct tags %v\ndocumented  %v", tags, documented)
	}
}
