package imsapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

const (
	testProject2 = "edc89b490d7d4392898e19b2deb34797"
	testDomain   = "3a2d95404f964a6aba78819bf8ddc1e3"
	testOrgURN   = "organizations::3a2d95404f964a6aba78819bf8ddc1e3:organization:o-wvntq58r3poyv180t5df1mdna4uwy9se"
)

func validCrossRegion() CopyImageCrossRegionRequest {
	return CopyImageCrossRegionRequest{Name: "web-01-copy", Region: "ap-southeast-3", ProjectName: "ap-southeast-3", AgencyName: "ims_admin_agency"}
}

func validInRegion() CopyImageInRegionRequest {
	return CopyImageInRegionRequest{Name: "web-01-plain"}
}

func validAddMembers() BatchAddMembersRequest {
	return BatchAddMembersRequest{Images: []string{testImageID}, Projects: []string{testProject2}}
}

func validUpdateMembers() BatchUpdateMembersRequest {
	return BatchUpdateMembersRequest{Images: []string{testImageID}, ProjectID: testProject2, Status: MemberAccepted}
}

func validTags() BatchAddOrDeleteTagsRequest {
	return BatchAddOrDeleteTagsRequest{Action: TagActionCreate, Tags: []ImageTag{{Key: "imsflow-src", Value: "abc"}}}
}

func imageTags(n int) []ImageTag {
	out := make([]ImageTag, n)
	for i := range out {
		out[i] = ImageTag{Key: "k" + strings.Repeat("x", i), Value: "v"}
	}
	return out
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Repeat("a", 31) + string(rune('a'+i%26))
	}
	return out
}

// TestDistributionValidationRules: one case per documented rule of the
// distribution requests, each naming the field, the rule and the IMS code.
func TestDistributionValidationRules(t *testing.T) {
	t.Parallel()
	cr := func(f func(*CopyImageCrossRegionRequest)) validatable { r := validCrossRegion(); f(&r); return &r }
	ir := func(f func(*CopyImageInRegionRequest)) validatable { r := validInRegion(); f(&r); return &r }
	am := func(f func(*BatchAddMembersRequest)) validatable { r := validAddMembers(); f(&r); return &r }
	um := func(f func(*BatchUpdateMembersRequest)) validatable { r := validUpdateMembers(); f(&r); return &r }
	tg := func(f func(*BatchAddOrDeleteTagsRequest)) validatable { r := validTags(); f(&r); return &r }
	tests := []struct {
		name  string
		req   validatable
		field string
		rule  string
		code  string
	}{
		// CopyImageCrossRegion
		{"cross name required", cr(func(r *CopyImageCrossRegionRequest) { r.Name = "" }), "name", "required", "IMG.0001"},
		{"cross name too long", cr(func(r *CopyImageCrossRegionRequest) { r.Name = strings.Repeat("n", 129) }), "name", "length", "IMG.0002"},
		{"cross name charset", cr(func(r *CopyImageCrossRegionRequest) { r.Name = "a/b" }), "name", "charset", "IMG.0003"},
		{"cross description too long", cr(func(r *CopyImageCrossRegionRequest) { r.Description = strings.Repeat("d", 1025) }), "description", "length", "IMG.0004"},
		{"cross description angle bracket", cr(func(r *CopyImageCrossRegionRequest) { r.Description = "<b>" }), "description", "charset", "IMG.0054"},
		{"region required", cr(func(r *CopyImageCrossRegionRequest) { r.Region = "" }), "region", "required", "IMG.0001"},
		{"region format", cr(func(r *CopyImageCrossRegionRequest) { r.Region = "AP_Southeast/3" }), "region", "format", "IMG.0001"},
		{"project_name required", cr(func(r *CopyImageCrossRegionRequest) { r.ProjectName = "" }), "project_name", "required", "IMG.0001"},
		{"project_name charset", cr(func(r *CopyImageCrossRegionRequest) { r.ProjectName = "ap southeast" }), "project_name", "charset", CodeProjectName},
		{"project_name too long", cr(func(r *CopyImageCrossRegionRequest) { r.ProjectName = strings.Repeat("p", 65) }), "project_name", "length", CodeProjectName},
		{"agency_name required", cr(func(r *CopyImageCrossRegionRequest) { r.AgencyName = "" }), "agency_name", "required", "IMG.0001"},
		{"agency_name too long", cr(func(r *CopyImageCrossRegionRequest) { r.AgencyName = strings.Repeat("a", 65) }), "agency_name", "length", CodeAgency},
		{"agency_name control character", cr(func(r *CopyImageCrossRegionRequest) { r.AgencyName = "a\nb" }), "agency_name", "charset", CodeAgency},
		{"agency_name trailing space", cr(func(r *CopyImageCrossRegionRequest) { r.AgencyName = "agency " }), "agency_name", "format", CodeAgency},
		{"vault_id format", cr(func(r *CopyImageCrossRegionRequest) { r.VaultID = "a/b" }), "vault_id", "format", "IMG.0001"},
		// CopyImageInRegion
		{"in-region name required", ir(func(r *CopyImageInRegionRequest) { r.Name = "" }), "name", "required", "IMG.0001"},
		{"in-region name leading space", ir(func(r *CopyImageInRegionRequest) { r.Name = " x" }), "name", "format", "IMG.0003"},
		{"in-region description line break", ir(func(r *CopyImageInRegionRequest) { r.Description = "a\rb" }), "description", "charset", "IMG.0054"},
		{"cmk_id format", ir(func(r *CopyImageInRegionRequest) { r.CMKID = "key id" }), "cmk_id", "format", CodeKeyNotFound},
		{"enterprise_project_id format", ir(func(r *CopyImageInRegionRequest) { r.EnterpriseProjectID = "a?b" }), "enterprise_project_id", "format", "IMG.0001"},
		// BatchAddMembers (and BatchDeleteMembers)
		{"images required", am(func(r *BatchAddMembersRequest) { r.Images = nil }), "images", "required", "IMG.0001"},
		{"image id format", am(func(r *BatchAddMembersRequest) { r.Images = []string{"../x"} }), "images[0]", "format", "IMG.0001"},
		{"a member required", am(func(r *BatchAddMembersRequest) { r.Projects = nil }), "projects", "required", "IMG.0001"},
		{"project id format", am(func(r *BatchAddMembersRequest) { r.Projects = []string{testProject2, "p q"} }), "projects[1]", "format", "IMG.0001"},
		{"domain id format", am(func(r *BatchAddMembersRequest) { r.Domains = []string{""} }), "domains[0]", "format", "IMG.0001"},
		{"organization with a space", am(func(r *BatchAddMembersRequest) { r.Organizations = []string{"o 1"} }), "organizations[0]", "format", "IMG.0001"},
		{"too many members", am(func(r *BatchAddMembersRequest) { r.Projects = ids(MaxImageMembers); r.Domains = []string{testDomain} }), "projects", "length", CodeMemberLimit},
		// BatchUpdateMembers
		{"update images required", um(func(r *BatchUpdateMembersRequest) { r.Images = []string{} }), "images", "required", "IMG.0001"},
		{"update project_id required", um(func(r *BatchUpdateMembersRequest) { r.ProjectID = "" }), "project_id", "required", "IMG.0001"},
		{"update status required", um(func(r *BatchUpdateMembersRequest) { r.Status = "" }), "status", "required", "IMG.0001"},
		{"update status enum", um(func(r *BatchUpdateMembersRequest) { r.Status = MemberPending }), "status", "enum", "IMG.0001"},
		{"update status case", um(func(r *BatchUpdateMembersRequest) { r.Status = "Accepted" }), "status", "enum", "IMG.0001"},
		{"update vault_id format", um(func(r *BatchUpdateMembersRequest) { r.VaultID = "v/1" }), "vault_id", "format", "IMG.0001"},
		// BatchAddOrDeleteTags
		{"action required", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Action = "" }), "action", "required", "IMG.0001"},
		{"action case-sensitive", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Action = "CREATE" }), "action", "enum", "IMG.0001"},
		{"tags required", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = nil }), "tags", "required", "IMG.0115"},
		{"more than 10 tags", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = imageTags(11) }), "tags", "length", "IMG.0116"},
		{"tag key empty", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = []ImageTag{{Value: "v"}} }), "tags[0].key", "required", "IMG.0115"},
		{"tag key longer than 36", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = []ImageTag{{Key: strings.Repeat("k", 37)}} }), "tags[0].key", "length", "IMG.0115"},
		{"tag key charset", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = []ImageTag{{Key: "a.b"}} }), "tags[0].key", "charset", "IMG.0115"},
		{"tag value longer than 43", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = []ImageTag{{Key: "k", Value: strings.Repeat("v", 44)}} }), "tags[0].value", "length", "IMG.0115"},
		{"tag value charset", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = []ImageTag{{Key: "k", Value: "a b"}} }), "tags[0].value", "charset", "IMG.0115"},
		{"tag keys unique", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Tags = []ImageTag{{Key: "k"}, {Key: "k", Value: "2"}} }), "tags[1].key", "format", "IMG.0115"},
		{"delete key blank", tg(func(r *BatchAddOrDeleteTagsRequest) { r.Action = TagActionDelete; r.Tags = []ImageTag{{Key: "  "}} }), "tags[0].key", "required", "IMG.0115"},
		{"delete key longer than 127", tg(func(r *BatchAddOrDeleteTagsRequest) {
			r.Action = TagActionDelete
			r.Tags = []ImageTag{{Key: strings.Repeat("k", 128)}}
		}), "tags[0].key", "length", "IMG.0115"},
		{"delete value longer than 255", tg(func(r *BatchAddOrDeleteTagsRequest) {
			r.Action = TagActionDelete
			r.Tags = []ImageTag{{Key: "k", Value: strings.Repeat("v", 256)}}
		}), "tags[0].value", "length", "IMG.0115"},
		{"delete keys unique", tg(func(r *BatchAddOrDeleteTagsRequest) {
			r.Action = TagActionDelete
			r.Tags = []ImageTag{{Key: "k"}, {Key: "k"}}
		}), "tags[1].key", "format", "IMG.0115"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.req.Validate()
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Validate() = %v, want ErrInvalidArgument", err)
			}
			all := ValidationErrors(err)
			if len(all) != 1 {
				t.Errorf("Validate() broke %d rules, want exactly 1: %v", len(all), err)
			}
			for _, ve := range all {
				if ve.Field == tt.field && ve.Rule == tt.rule && ve.Code == tt.code && ve.Message != "" {
					return
				}
			}
			t.Errorf("Validate() = %v; want field %q rule %q code %q", err, tt.field, tt.rule, tt.code)
		})
	}
}

func TestDistributionValidRequestsPass(t *testing.T) {
	t.Parallel()
	cr, ir, am, um, tg := validCrossRegion(), validInRegion(), validAddMembers(), validUpdateMembers(), validTags()
	crFull := CopyImageCrossRegionRequest{Name: "整机 copy_1", Description: strings.Repeat("d", 1024), Region: "cn-north-4",
		ProjectName: "cn-north-4_sub-1", AgencyName: "IMS Agency-1.b", VaultID: "d14r5tef-1bc3-4c4f-823e-3e471rg65e65"}
	irKey := CopyImageInRegionRequest{Name: "enc", CMKID: "bd66288c-9081-460a-8227-4cbd0c814cb4", EnterpriseProjectID: "0"}
	domainsOnly := BatchAddMembersRequest{Images: []string{testImageID}, Domains: []string{testDomain}, Organizations: []string{testOrgURN, "ou-x29s62b1e4w3xasa39w8sg1hkmujqxqc"}}
	maxMembers := BatchAddMembersRequest{Images: []string{testImageID}, Projects: ids(MaxImageMembers)}
	rejected := BatchUpdateMembersRequest{Images: []string{testImageID, testImageID}, ProjectID: testProject2, Status: MemberRejected}
	ten := BatchAddOrDeleteTagsRequest{Action: TagActionCreate, Tags: append(imageTags(9), ImageTag{Key: "标签", Value: "a.b-c_d"})}
	// A deletion checks lengths only: dots, spaces and 127-character keys pass.
	del := BatchAddOrDeleteTagsRequest{Action: TagActionDelete, Tags: []ImageTag{{Key: strings.Repeat("k", 127), Value: "any value. at all"}, {Key: "a.b"}}}
	for _, r := range []validatable{&cr, &ir, &am, &um, &tg, &crFull, &irKey, &domainsOnly, &maxMembers, &rejected, &ten, &del} {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: Validate() = %v, want nil", r, err)
		}
	}
	for _, r := range []validatable{(*CopyImageCrossRegionRequest)(nil), (*CopyImageInRegionRequest)(nil), (*BatchAddMembersRequest)(nil),
		(*BatchUpdateMembersRequest)(nil), (*BatchAddOrDeleteTagsRequest)(nil)} {
		if err := r.Validate(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%T(nil).Validate() = %v", r, err)
		}
	}
}

// TestDistributionOperations calls every distribution operation and checks
// method, path, signed headers and the exact body on the wire, and the
// decoded answer.
func TestDistributionOperations(t *testing.T) {
	t.Parallel()
	jobAnswer := `{"job_id":"` + testJobID + `"}`
	tests := []struct {
		name     string
		call     func(context.Context, *Client) (any, error)
		method   string
		path     string
		wantBody string
		status   int
		respond  string
		want     any
	}{
		{
			name: "copy cross region",
			call: func(ctx context.Context, c *Client) (any, error) {
				r := validCrossRegion()
				r.Description = "replica"
				return c.CopyImageCrossRegion(ctx, testImageID, &r)
			},
			method:   http.MethodPost,
			path:     "/v1/cloudimages/" + testImageID + "/cross_region_copy",
			wantBody: `{"name":"web-01-copy","description":"replica","region":"ap-southeast-3","project_name":"ap-southeast-3","agency_name":"ims_admin_agency"}`,
			respond:  jobAnswer,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "copy in region with a key",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CopyImageInRegion(ctx, testImageID, &CopyImageInRegionRequest{Name: "enc", CMKID: "bd66288c-9081-460a-8227-4cbd0c814cb4"})
			},
			method:   http.MethodPost,
			path:     "/v1/cloudimages/" + testImageID + "/copy",
			wantBody: `{"name":"enc","cmk_id":"bd66288c-9081-460a-8227-4cbd0c814cb4"}`,
			respond:  jobAnswer,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "add members",
			call: func(ctx context.Context, c *Client) (any, error) {
				r := validAddMembers()
				r.Domains = []string{testDomain}
				return c.BatchAddMembers(ctx, &r)
			},
			method:   http.MethodPost,
			path:     "/v1/cloudimages/members",
			wantBody: `{"images":["` + testImageID + `"],"projects":["` + testProject2 + `"],"domains":["` + testDomain + `"]}`,
			respond:  jobAnswer,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "add members to an organisation only sends projects as []",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.BatchAddMembers(ctx, &BatchAddMembersRequest{Images: []string{testImageID}, Organizations: []string{testOrgURN}})
			},
			method:   http.MethodPost,
			path:     "/v1/cloudimages/members",
			wantBody: `{"images":["` + testImageID + `"],"projects":[],"organizations":["` + testOrgURN + `"]}`,
			respond:  jobAnswer,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "update members",
			call: func(ctx context.Context, c *Client) (any, error) {
				r := validUpdateMembers()
				return c.BatchUpdateMembers(ctx, &r)
			},
			method:   http.MethodPut,
			path:     "/v1/cloudimages/members",
			wantBody: `{"images":["` + testImageID + `"],"project_id":"` + testProject2 + `","status":"accepted"}`,
			respond:  jobAnswer,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name: "delete members",
			call: func(ctx context.Context, c *Client) (any, error) {
				r := validAddMembers()
				return c.BatchDeleteMembers(ctx, &r)
			},
			method:   http.MethodDelete,
			path:     "/v1/cloudimages/members",
			wantBody: `{"images":["` + testImageID + `"],"projects":["` + testProject2 + `"]}`,
			respond:  jobAnswer,
			want:     &JobRef{JobID: testJobID},
		},
		{
			name:   "list members",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.ListImageMembers(ctx, testImageID) },
			method: http.MethodGet,
			path:   "/v2/images/" + testImageID + "/members",
			respond: `{"members":[{"status":"accepted","created_at":"2016-09-01T02:05:14Z","updated_at":"2016-09-01T02:37:11Z",
				"image_id":"` + testImageID + `","member_id":"` + testProject2 + `","schema":"/v2/schemas/member"},
				{"status":"pending","created_at":"2016-09-01T02:05:14Z","updated_at":"2016-09-01T02:05:14Z","image_id":"` + testImageID + `",
				"member_id":"` + testOrgURN + `","schema":"/v2/schemas/member","member_type":"organization","urn":"` + testOrgURN + `"}],
				"schema":"/v2/schemas/members","page_info":{"next_marker":"","current_count":2}}`,
			want: &ImageMembers{Schema: "/v2/schemas/members", Members: []ImageMember{
				{Status: MemberAccepted, CreatedAt: "2016-09-01T02:05:14Z", UpdatedAt: "2016-09-01T02:37:11Z", ImageID: testImageID,
					MemberID: testProject2, Schema: "/v2/schemas/member"},
				{Status: MemberPending, CreatedAt: "2016-09-01T02:05:14Z", UpdatedAt: "2016-09-01T02:05:14Z", ImageID: testImageID,
					MemberID: testOrgURN, Schema: "/v2/schemas/member", MemberType: MemberTypeOrganization, URN: testOrgURN},
			}},
		},
		{
			name: "tags",
			call: func(ctx context.Context, c *Client) (any, error) {
				return nil, c.BatchAddOrDeleteTags(ctx, testImageID, &BatchAddOrDeleteTagsRequest{Action: TagActionCreate,
					Tags: []ImageTag{{Key: "key1", Value: "value1"}, {Key: "key3", Value: ""}}})
			},
			method:   http.MethodPost,
			path:     "/v2/" + testProject + "/images/" + testImageID + "/tags/action",
			wantBody: `{"action":"create","tags":[{"key":"key1","value":"value1"},{"key":"key3","value":""}]}`,
			status:   http.StatusNoContent,
		},
		{
			name:   "delete image",
			call:   func(ctx context.Context, c *Client) (any, error) { return nil, c.GlanceDeleteImage(ctx, testImageID) },
			method: http.MethodDelete,
			path:   "/v2/images/" + testImageID,
			status: http.StatusNoContent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, slot := setup(t, testAKSK())
			slot.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				if r.Method != tt.method {
					t.Errorf("method = %s, want %s", r.Method, tt.method)
				}
				if r.URL.Path != tt.path {
					t.Errorf("path = %s, want %s", r.URL.Path, tt.path)
				}
				if string(body) != tt.wantBody {
					t.Errorf("body =\n%s\nwant\n%s", body, tt.wantBody)
				}
				wantCT := ""
				if tt.wantBody != "" {
					wantCT = "application/json;charset=UTF-8"
				}
				checkHeaders(t, r.Header, map[string]string{
					"Content-Type":  wantCT,
					"X-Project-Id":  testProject,
					"Authorization": "SDK-HMAC-SHA256 Access=" + testAK + ", SignedHeaders=host;x-project-id;x-sdk-date, Signature=",
				})
				if tt.status != 0 {
					w.WriteHeader(tt.status)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.respond)
			})
			got, err := tt.call(t.Context(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", deref(got), deref(tt.want))
			}
			if n := slot.calls.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
		})
	}
}

// TestDistributionValidationBeforeIO: invalid arguments never reach the
// server, and the tags API needs the project ID of its path.
func TestDistributionValidationBeforeIO(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		t.Errorf("request %s %s reached the server", r.Method, r.URL.Path)
	})
	ctx := t.Context()
	noProject, err := New("http://127.0.0.1:1", testAKSK())
	if err != nil {
		t.Fatal(err)
	}
	good := validCrossRegion()
	calls := map[string]func() error{
		"CopyImageCrossRegion bad id": func() error { _, err := c.CopyImageCrossRegion(ctx, "a/../b", &good); return err },
		"CopyImageCrossRegion bad body": func() error {
			_, err := c.CopyImageCrossRegion(ctx, testImageID, &CopyImageCrossRegionRequest{})
			return err
		},
		"CopyImageInRegion bad id":      func() error { _, err := c.CopyImageInRegion(ctx, "", &CopyImageInRegionRequest{Name: "x"}); return err },
		"CopyImageInRegion nil":         func() error { _, err := c.CopyImageInRegion(ctx, testImageID, nil); return err },
		"BatchAddMembers":               func() error { _, err := c.BatchAddMembers(ctx, &BatchAddMembersRequest{}); return err },
		"BatchUpdateMembers":            func() error { _, err := c.BatchUpdateMembers(ctx, &BatchUpdateMembersRequest{}); return err },
		"BatchDeleteMembers":            func() error { _, err := c.BatchDeleteMembers(ctx, nil); return err },
		"ListImageMembers":              func() error { _, err := c.ListImageMembers(ctx, "x?y"); return err },
		"BatchAddOrDeleteTags bad body": func() error { return c.BatchAddOrDeleteTags(ctx, testImageID, &BatchAddOrDeleteTagsRequest{}) },
		"BatchAddOrDeleteTags no project": func() error {
			r := validTags()
			return noProject.BatchAddOrDeleteTags(ctx, testImageID, &r)
		},
		"GlanceDeleteImage": func() error { return c.GlanceDeleteImage(ctx, "a b") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if n := slot.calls.Load(); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}

// TestDistributionErrors: refusals come back as *APIError with IMS's code,
// and the submissions that PUT or DELETE are as "maybe applied" as a POST
// when the answer is lost.
func TestDistributionErrors(t *testing.T) {
	t.Parallel()
	c, slot := setup(t, testAKSK())
	slot.set(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodGet:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":"IMG.0027","message":"The image does not exist."}}`)
		case http.MethodPost:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":"IMG.0060","message":"The number of tasks exceeds the flow control limit."}}`)
		default:
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	ctx := t.Context()
	r := validCrossRegion()
	_, err := c.CopyImageCrossRegion(ctx, testImageID, &r)
	if apiErr, ok := errors.AsType[*APIError](err); !ok || apiErr.Code != CodeFlowControl || !IsRetryable(err) || MaybeApplied(err) {
		t.Errorf("copy over the replication cap: %v, want a retryable IMG.0060 that did not apply", err)
	}
	if _, err := c.ListImageMembers(ctx, testImageID); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListImageMembers(unknown) = %v, want ErrNotFound", err)
	}
	u := validUpdateMembers()
	if _, err := c.BatchUpdateMembers(ctx, &u); !MaybeApplied(err) {
		t.Errorf("PUT answered 502: MaybeApplied(%v) = false", err)
	}
	if err := c.GlanceDeleteImage(ctx, testImageID); !MaybeApplied(err) {
		t.Errorf("DELETE answered 502: MaybeApplied(%v) = false", err)
	}
}

// TestSignsEndpointPathPrefix: a client of a region's endpoint with a path
// prefix sends and signs the full path, prefix included, so the gateway's
// canonical URI (and the emulator's) matches.
func TestSignsEndpointPathPrefix(t *testing.T) {
	t.Parallel()
	const prefix = "/region/ap-southeast-3"
	var seen atomic.Pointer[http.Request]
	var seenBody atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen.Store(r.Clone(r.Context()))
		seenBody.Store(&body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"job_id":"`+testJobID+`"}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+prefix, testAKSK(), WithProjectID(testProject),
		WithClock(func() time.Time { return testNow }), WithRateLimiter(rate.NewLimiter(rate.Inf, 0)))
	if err != nil {
		t.Fatal(err)
	}
	r := validCrossRegion()
	if _, err := c.CopyImageCrossRegion(t.Context(), testImageID, &r); err != nil {
		t.Fatal(err)
	}
	req := seen.Load()
	wantPath := prefix + "/v1/cloudimages/" + testImageID + "/cross_region_copy"
	if req.URL.Path != wantPath {
		t.Fatalf("path on the wire = %s, want %s", req.URL.Path, wantPath)
	}
	_, headers, _, err := parseAuthorization(req.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	canonical := CanonicalRequest(req, headers, *seenBody.Load())
	if line := strings.Split(canonical, "\n")[1]; line != wantPath+"/" {
		t.Errorf("canonical URI = %s, want %s/", line, wantPath)
	}
	lookup := func(ak string) (Secret, bool) { return testSK, ak == testAK }
	if err := VerifySignature(req, *seenBody.Load(), lookup, testNow, time.Minute); err != nil {
		t.Errorf("signature over the full path: %v", err)
	}
	// The same request without the prefix does not verify: the prefix is
	// signed, not dropped.
	bare := req.Clone(t.Context())
	bare.URL.Path = strings.TrimPrefix(req.URL.Path, prefix)
	if err := VerifySignature(bare, *seenBody.Load(), lookup, testNow, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signature without the prefix = %v, want ErrBadSignature", err)
	}
}

func TestImageMembersMember(t *testing.T) {
	t.Parallel()
	m := &ImageMembers{Members: []ImageMember{{MemberID: "a", Status: MemberPending}, {MemberID: "b", Status: MemberAccepted}}}
	if got, ok := m.Member("b"); !ok || got.Status != MemberAccepted {
		t.Errorf("Member(b) = %+v, %v", got, ok)
	}
	if _, ok := m.Member("c"); ok {
		t.Error("Member(c) found")
	}
}
