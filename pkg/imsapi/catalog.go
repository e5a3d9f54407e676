package imsapi

import (
	"context"
	"net/http"
	"net/url"
)

// OSPlatform groups the OS versions of one platform (ListOsVersions).
type OSPlatform struct {
	Platform    string      `json:"platform"`
	VersionList []OSVersion `json:"version_list"`
}

// OSVersion is one OS that images can declare in os_version.
type OSVersion struct {
	Platform     string `json:"platform"`
	OSVersionKey string `json:"os_version_key"`
	// OSVersion is the exact string requests take, e.g. "CentOS 7.0 64bit".
	OSVersion string `json:"os_version"`
	OSBit     int    `json:"os_bit"`
	OSType    string `json:"os_type"`
}

// OSVersions is the catalogue [Client.ListOSVersions] returns.
type OSVersions []OSPlatform

// Find returns the entry whose os_version is exactly v.
func (l OSVersions) Find(v string) (OSVersion, bool) {
	for _, p := range l {
		for _, ver := range p.VersionList {
			if ver.OSVersion == v {
				return ver, true
			}
		}
	}
	return OSVersion{}, false
}

// OS version catalogue tags of [Client.ListOSVersions].
const (
	OSTagBMS  = "bms"
	OSTagUEFI = "uefi"
)

// ListOSVersions returns the OS versions IMS accepts in os_version
// (ListOsVersions); tag "bms" or "uefi" narrows the list, "" lists all. It
// returns an error wrapping [ErrInvalidArgument] for another tag, an
// [*APIError] or a [*TransportError].
//
//meta:operation GET /v1/cloudimages/os_version
func (c *Client) ListOSVersions(ctx context.Context, tag string) (OSVersions, error) {
	var v validator
	v.enum("tag", "IMG.0001", tag, OSTagBMS, OSTagUEFI)
	if err := v.err(); err != nil {
		return nil, err
	}
	var q url.Values
	if tag != "" {
		q = url.Values{"tag": {tag}}
	}
	var out OSVersions
	if err := c.do(ctx, OpOSVersions, http.MethodGet, "/v1/cloudimages/os_version", q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Quota resource types.
const (
	QuotaImage       = "image"
	QuotaImageShared = "image_shared"
	QuotaImageMember = "image_member"
)

// Quota is the image quota of the project.
type Quota struct {
	Resources []QuotaResource `json:"resources"`
}

// QuotaResource is the quota of one resource type.
type QuotaResource struct {
	Type  string `json:"type"`
	Used  int    `json:"used"`
	Quota int    `json:"quota"`
	Min   int    `json:"min"`
	Max   int    `json:"max"`
}

// Resource returns the quota of resource type typ, e.g. [QuotaImage].
func (q *Quota) Resource(typ string) (QuotaResource, bool) {
	for _, r := range q.Resources {
		if r.Type == typ {
			return r, true
		}
	}
	return QuotaResource{}, false
}

// Quota returns the project's image quota (ShowImageQuota). It returns an
// [*APIError] or a [*TransportError].
//
// https://support.huaweicloud.com/intl/en-us/api-ims/ims_03_0630.html
//
//meta:operation GET /v1/cloudimages/quota
func (c *Client) Quota(ctx context.Context) (*Quota, error) {
	var out struct {
		Quotas Quota `json:"quotas"`
	}
	if err := c.do(ctx, OpQuota, http.MethodGet, "/v1/cloudimages/quota", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out.Quotas, nil
}
