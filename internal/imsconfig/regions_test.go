package imsconfig

import (
	"context"
	"strings"
	"testing"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

func TestRegionsConfig(t *testing.T) {
	rc := RegionsConfig{Region: "cn-north-4", Regions: " ap-southeast-3=p3, eu-west-101=p101 ", Endpoint: RegionEndpointDefault}
	got, err := rc.Projects()
	if err != nil || len(got) != 2 || got["ap-southeast-3"] != "p3" || got["eu-west-101"] != "p101" {
		t.Fatalf("projects = %v, %v", got, err)
	}
	for _, c := range []struct {
		rc   RegionsConfig
		want string
	}{
		{RegionsConfig{Region: "a-b", Regions: "x-y", Endpoint: RegionEndpointDefault}, "want region=project_id"},
		{RegionsConfig{Region: "a-b", Regions: "a-b=p", Endpoint: RegionEndpointDefault}, "is IMS_REGION"},
		{RegionsConfig{Region: "a-b", Regions: "x-y=p,x-y=q", Endpoint: RegionEndpointDefault}, "listed twice"},
		{RegionsConfig{Regions: "x-y=p", Endpoint: RegionEndpointDefault}, "without IMS_REGION"},
		{RegionsConfig{Region: "a-b", Regions: "x-y=p", Endpoint: "https://ims.example"}, "has no {region}"},
	} {
		if _, err := c.rc.Projects(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.rc, err, c.want)
		}
	}
}

func TestNewRegions(t *testing.T) {
	cfg := Config{Endpoint: "https://ims.cn-north-4.myhuaweicloud.com", AccessKey: "AK", SecretKey: "SK", ProjectID: "p4", RateLimit: 10, RateBurst: 10, Timeout: 1}
	home, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegions(cfg, RegionsConfig{Region: "cn-north-4", Regions: "ap-southeast-3=p3", Endpoint: RegionEndpointDefault}, home)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := r.Client(""); err != nil || c != home {
		t.Errorf("the home region's client: %v %v", c, err)
	}
	c, err := r.Client("ap-southeast-3")
	if err != nil || c.ProjectID() != "p3" {
		t.Fatalf("ap-southeast-3: %v %v", c, err)
	}
	if _, err := r.Client("eu-west-101"); err == nil || !strings.Contains(err.Error(), "IMS_REGIONS") {
		t.Errorf("an unknown region: %v", err)
	}
	tok := cfg
	tok.AccessKey, tok.SecretKey, tok.AuthToken = "", "", imsapi.Secret("token")
	if _, err := NewRegions(tok, RegionsConfig{Region: "cn-north-4", Regions: "ap-southeast-3=p3", Endpoint: RegionEndpointDefault}, home); err == nil {
		t.Error("an IAM token served several regions")
	}
	if FromContext(NewContext(context.Background(), r)) != r || FromContext(context.Background()) != nil {
		t.Error("context round trip")
	}
}
