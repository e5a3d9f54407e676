package imsconfig

import (
	"context"
	"fmt"
	"strings"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// RegionEndpointDefault is IMS_REGION_ENDPOINT's default: Huawei Cloud's
// IMS endpoint of a region, {region} standing for its name.
const RegionEndpointDefault = "https://ims.{region}.myhuaweicloud.com"

// RegionsConfig is IMS in the regions other than IMS_ENDPOINT's, which
// image lifecycles copy to and share in: the same credentials (AK/SK; an
// IAM token is scoped to one project and does not serve other regions),
// each region with its own project ID.
type RegionsConfig struct {
	// Region is the name of IMS_ENDPOINT's region, where imports land.
	Region string `env:"IMS_REGION"`
	// Regions lists the other regions as region=project_id, comma-separated.
	Regions string `env:"IMS_REGIONS"`
	// Endpoint is a region's endpoint, {region} standing for its name.
	Endpoint string `env:"IMS_REGION_ENDPOINT" envDefault:"https://ims.{region}.myhuaweicloud.com"`
}

// Projects returns the configured regions and their project IDs.
func (c RegionsConfig) Projects() (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(c.Regions, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		region, project, ok := strings.Cut(part, "=")
		region, project = strings.TrimSpace(region), strings.TrimSpace(project)
		switch {
		case !ok || region == "" || project == "":
			return nil, fmt.Errorf("IMS_REGIONS: %q: want region=project_id", part)
		case region == c.Region:
			return nil, fmt.Errorf("IMS_REGIONS: %s is IMS_REGION, IMS_ENDPOINT's own region", region)
		case out[region] != "":
			return nil, fmt.Errorf("IMS_REGIONS: %s is listed twice", region)
		}
		out[region] = project
	}
	if len(out) > 0 && c.Region == "" {
		return nil, fmt.Errorf("IMS_REGIONS is set without IMS_REGION, the name of IMS_ENDPOINT's region")
	}
	if len(out) > 0 && !strings.Contains(c.Endpoint, "{region}") {
		return nil, fmt.Errorf("IMS_REGION_ENDPOINT %q has no {region}", c.Endpoint)
	}
	return out, nil
}

// Regions are IMS clients by region name: the home region's (IMS_REGION,
// the client every function has) and each of IMS_REGIONS'.
type Regions struct {
	Home    string
	clients map[string]*imsapi.Client
}

// Client returns region's client ("" is the home region's).
func (r *Regions) Client(region string) (*imsapi.Client, error) {
	if region == "" {
		region = r.Home
	}
	if c, ok := r.clients[region]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("region %s is not configured: add %s=<project id> to IMS_REGIONS", region, region)
}

// NewRegions returns the region clients of c: home as the home region's
// and, for each of rc's regions, a client like home's (credentials, rate
// limiter, observer: extra) at that region's endpoint with its project ID.
func NewRegions(c Config, rc RegionsConfig, home *imsapi.Client, extra ...imsapi.Option) (*Regions, error) {
	projects, err := rc.Projects()
	if err != nil {
		return nil, err
	}
	r := &Regions{Home: rc.Region, clients: map[string]*imsapi.Client{rc.Region: home}}
	if len(projects) > 0 && c.AuthToken != "" {
		return nil, fmt.Errorf("IMS_REGIONS needs AK/SK credentials: an IAM token (IMS_AUTH_TOKEN) serves one project only")
	}
	for region, project := range projects {
		rcfg := c
		rcfg.Endpoint, rcfg.ProjectID = strings.ReplaceAll(rc.Endpoint, "{region}", region), project
		client, err := rcfg.Client(extra...)
		if err != nil {
			return nil, fmt.Errorf("IMS client of region %s: %w", region, err)
		}
		r.clients[region] = client
	}
	return r, nil
}

// RegionsFor builds Regions from given clients (tests, the emulator).
func RegionsFor(home string, clients map[string]*imsapi.Client) *Regions {
	r := &Regions{Home: home, clients: map[string]*imsapi.Client{}}
	for k, v := range clients {
		r.clients[k] = v
	}
	return r
}

type regionsKey struct{}

// NewContext returns ctx carrying r.
func NewContext(ctx context.Context, r *Regions) context.Context {
	return context.WithValue(ctx, regionsKey{}, r)
}

// FromContext returns the Regions ctx carries, or nil.
func FromContext(ctx context.Context) *Regions {
	r, _ := ctx.Value(regionsKey{}).(*Regions)
	return r
}
