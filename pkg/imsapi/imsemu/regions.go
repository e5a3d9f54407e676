package imsemu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Regions, accounts and what a caller sees.
//
// Every region is a catalogue of its own: images, jobs and members live in
// the region they were made in, and a request sees only its region's. A
// request's region is the {region} of URL/region/{region}/..., or the first
// region at the root. Its caller is the account whose credentials signed
// it: the emulator's own (Config.Credentials, Tokens) or one of
// Config.Accounts. A caller sees its own images and, once it accepted them,
// images shared with its project or account; it can change its own images
// only.

// DefaultRegion is the name of the one region of an emulator configured
// without Regions.
const DefaultRegion = "default"

// Defaults of the distribution settings of [Config].
const (
	// DefaultCopySpeed is the bytes a copy handles per emulated second.
	DefaultCopySpeed = 128 << 20
	// DefaultMaxImageMembers is the most members an image can have: the
	// strictest documented figure (imsapi.MaxImageMembers).
	DefaultMaxImageMembers = imsapi.MaxImageMembers
)

// regionPrefix is where each region is served: URL + regionPrefix + name.
const regionPrefix = "/region/"

// Region is one region of the emulator (see [Config].Regions).
type Region struct {
	// Name is the region ID, e.g. "ap-southeast-3": lower-case letters,
	// digits and '-'.
	Name string `json:"name"`
	// ProjectID is the project of the emulator's own account in the region.
	// Empty: Config.ProjectID for the first region, and an ID derived from
	// the name for the others.
	ProjectID string `json:"project_id,omitempty"`
	// ProjectName is the IAM project name a cross-region copy into the
	// region must give (project_name). Empty: Name, as Huawei names a
	// region's default project.
	ProjectName string `json:"project_name,omitempty"`
	// ImageQuota caps the private images of each account in the region:
	// 0 means Config.ImageQuota, negative no cap.
	ImageQuota int `json:"image_quota,omitempty"`
}

// Account is another tenant (an account, "domain" in IMS's terms): images
// can be shared with its projects or with it, and it calls the API with
// its own credentials, for example to accept a share.
type Account struct {
	// DomainID is the account ID, as BatchAddMembers' domains name it.
	DomainID string `json:"domain_id"`
	// Credentials map the account's access keys to their secret keys.
	Credentials map[string]imsapi.Secret `json:"credentials,omitempty"`
	// Projects map region names to the account's project ID there. A
	// project unknown to a region (another region's, or nobody's) cannot
	// be shared with: the member job fails with IMG.0108.
	Projects map[string]string `json:"projects,omitempty"`
}

// KMSKey is a KMS key of the emulator's account (see [Config].KMSKeys).
type KMSKey struct {
	ID string `json:"id"`
	// Default marks a default key (the "ims/default" kind): images
	// encrypted with it cannot be shared (IMG.0098).
	Default bool `json:"default,omitempty"`
	// Disabled keys cannot encrypt (IMG.0097).
	Disabled bool `json:"disabled,omitempty"`
}

// region is a Region as the emulator runs it.
type region struct {
	name, projectID, projectName string
	quota                        int  // negative: no cap
	explicit                     bool // from Config.Regions: X-Project-Id is checked
	running                      int  // import jobs running here
}

// account is the emulator's own account or one of Config.Accounts.
type account struct {
	domainID string
	projects map[string]string // region name → project ID
}

// member is one member of a shared image.
type member struct {
	kind             string // imsapi.MemberType*
	id               string // project ID, account ID or organisation URN
	status           string // imsapi.Member*
	created, updated time.Time
}

// setupRegions resolves Config.Regions and Config.Accounts into the
// server's regions and accounts, and checks them.
func (s *Server) setupRegions() error {
	cfg := &s.cfg
	regions := cfg.Regions
	if len(regions) == 0 {
		regions = []Region{{Name: DefaultRegion, ProjectID: cfg.ProjectID}}
	}
	s.regionByName = map[string]*region{}
	s.owner = &account{domainID: cmpOr(cfg.DomainID, derivedID("domain", "")), projects: map[string]string{}}
	for i, rc := range regions {
		if !validRegionName(rc.Name) {
			return fmt.Errorf("imsemu: region name %q: want 1-64 lower-case letters, digits and '-'", rc.Name)
		}
		if s.regionByName[rc.Name] != nil {
			return fmt.Errorf("imsemu: region %q is configured twice", rc.Name)
		}
		rg := &region{name: rc.Name, projectID: rc.ProjectID, projectName: cmpOr(rc.ProjectName, rc.Name),
			quota: cmpOrInt(rc.ImageQuota, cfg.ImageQuota), explicit: len(cfg.Regions) > 0}
		if rg.projectID == "" && i == 0 {
			rg.projectID = cfg.ProjectID
		}
		if rg.projectID == "" && len(cfg.Regions) > 0 {
			rg.projectID = derivedID("project", rc.Name)
		}
		s.regions = append(s.regions, rg)
		s.regionByName[rg.name] = rg
		s.owner.projects[rg.name] = rg.projectID
	}
	s.secrets = maps.Clone(cfg.Credentials)
	if s.secrets == nil {
		s.secrets = map[string]imsapi.Secret{}
	}
	s.accounts = map[string]*account{}
	for k := range s.secrets {
		s.accounts[k] = s.owner
	}
	domains := map[string]bool{s.owner.domainID: true}
	cfg.Accounts = slices.Clone(cfg.Accounts)
	for i, ac := range cfg.Accounts {
		if ac.DomainID == "" || domains[ac.DomainID] {
			return fmt.Errorf("imsemu: account %d: domain ID %q is empty or taken", i, ac.DomainID)
		}
		domains[ac.DomainID] = true
		acct := &account{domainID: ac.DomainID, projects: maps.Clone(ac.Projects)}
		for name, p := range acct.projects {
			rg := s.regionByName[name]
			if rg == nil {
				return fmt.Errorf("imsemu: account %s: project in unknown region %q", ac.DomainID, name)
			}
			if p == "" || s.projectOwner(rg, p) != nil {
				return fmt.Errorf("imsemu: account %s: project ID %q in region %s is empty or taken", ac.DomainID, p, name)
			}
		}
		for ak, sk := range ac.Credentials {
			if _, taken := s.secrets[ak]; taken || ak == "" {
				return fmt.Errorf("imsemu: account %s: access key %q is empty or taken", ac.DomainID, ak)
			}
			s.secrets[ak] = sk
		}
		// Registered after the checks above, so that projectOwner sees
		// the accounts before this one only.
		for ak := range ac.Credentials {
			s.accounts[ak] = acct
		}
		cfg.Accounts[i].Credentials = maps.Clone(ac.Credentials)
		cfg.Accounts[i].Projects = acct.projects
		s.others = append(s.others, acct)
	}
	for i, k := range cfg.KMSKeys {
		if k.ID == "" || slices.ContainsFunc(cfg.KMSKeys[:i], func(o KMSKey) bool { return o.ID == k.ID }) {
			return fmt.Errorf("imsemu: KMS key %d: ID %q is empty or given twice", i, k.ID)
		}
	}
	return nil
}

// derivedID is a stable 32-hex ID for what has none configured.
func derivedID(kind, name string) string {
	sum := sha256.Sum256([]byte("imsemu " + kind + " " + name))
	return hex.EncodeToString(sum[:16])
}

func validRegionName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func cmpOrInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// regionFor returns the region of a request path's {region}, the first at
// the root, nil for an unknown name.
func (s *Server) regionFor(name string) *region {
	if name == "" {
		return s.regions[0]
	}
	return s.regionByName[name]
}

// projectOwner returns the account whose project in rg is project, or nil.
func (s *Server) projectOwner(rg *region, project string) *account {
	if project == "" {
		return nil
	}
	if s.owner.projects[rg.name] == project {
		return s.owner
	}
	for _, a := range s.others {
		if a.projects[rg.name] == project {
			return a
		}
	}
	return nil
}

// identify finds the caller's account and its project in the request's
// region. An account without a project in the region, or an X-Project-Id
// naming another project than the caller's there, is answered 400 IMG.0108
// ("the tenant ID was not found in the current region"; UNCONFIRMED: what
// the gateway answers then). X-Project-Id is checked only in regions
// declared in Config.Regions, so that an emulator without regions accepts
// any, as it always did.
func (s *Server) identify(r *request) *apiError {
	r.caller = s.accounts[r.accessKey]
	if r.caller == nil {
		r.caller = s.owner // a token
	}
	project, ok := r.caller.projects[r.region.name]
	if !ok {
		return imsError(imsapi.CodeTenantNotFound, "The tenant was not found in the current region %s.", r.region.name)
	}
	r.project = project
	if h := r.Header.Get(imsapi.HeaderProjectID); r.region.explicit && h != "" && h != project {
		return imsError(imsapi.CodeTenantNotFound, "The tenant ID %s was not found in the current region %s.", h, r.region.name)
	}
	return nil
}

// memberFor returns acct's membership of im: as a project of the image's
// region or as an account. Organisations are not modelled: no account is
// in one.
func (im *image) memberFor(acct *account) *member {
	project := acct.projects[im.region.name]
	for _, m := range im.members {
		if m.kind == imsapi.MemberTypeProject && project != "" && m.id == project ||
			m.kind == imsapi.MemberTypeDomain && m.id == acct.domainID {
			return m
		}
	}
	return nil
}

// canSee reports whether the request's caller may look at img: its own, or
// shared with it (in any member state), in the request's region.
func (s *Server) canSee(r *request, img *image) bool {
	return img.region == r.region && (img.owner == r.caller || img.memberFor(r.caller) != nil)
}

// viewFor is img as the caller sees it: a recipient sees a shared image.
func (s *Server) viewFor(r *request, img *image) imsapi.Image {
	v := img.view(r.now)
	if img.owner != r.caller {
		v.ImageType, v.Visibility = "shared", "shared"
	}
	return v
}

// visibleImages are the images ListImages lists for the request's caller,
// in creation order: its own, and those shared with it whose member state
// is memberStatus ("" for accepted, as Glance lists them; "all" for any).
func (s *Server) visibleImages(r *request, memberStatus string) []imsapi.Image {
	out := make([]imsapi.Image, 0, len(s.images))
	for _, im := range s.images {
		if im.deleted || im.region != r.region {
			continue
		}
		if im.owner == r.caller {
			out = append(out, im.view(r.now))
			continue
		}
		if m := im.memberFor(r.caller); m != nil && (memberStatus == "all" || m.status == cmpOr(memberStatus, imsapi.MemberAccepted)) {
			out = append(out, s.viewFor(r, im))
		}
	}
	return out
}

// ownedImage returns the caller's image id in the request's region: 400
// IMG.0027 when it sees no such image, IMG.0047 when it is another
// tenant's image shared with it.
func (s *Server) ownedImage(r *request, id string) (*image, *apiError) {
	img := s.imageByID[id]
	if img == nil || img.deleted || !s.canSee(r, img) {
		return nil, imsError(imsapi.CodeImageNotExist, "The image %s does not exist.", id)
	}
	if img.owner != r.caller {
		return nil, imsError(imsapi.CodeOwnerOnly, "This operation can be performed only by the image owner.")
	}
	return img, nil
}

// RegionURL returns the base URL of region name, URL/region/<name>, to
// give imsapi.New.
func (s *Server) RegionURL(name string) string { return s.URL + regionPrefix + name }

// Region returns the configuration region name runs with (project ID and
// project name filled in, quota resolved), and false for an unknown name.
func (s *Server) Region(name string) (Region, bool) {
	rg := s.regionByName[name]
	if rg == nil {
		return Region{}, false
	}
	return Region{Name: rg.name, ProjectID: rg.projectID, ProjectName: rg.projectName, ImageQuota: rg.quota}, true
}

// RegionClient is [Server.Client] for region name, at its RegionURL and
// with the emulator's own project there.
func (s *Server) RegionClient(name string, opts ...imsapi.Option) (*imsapi.Client, error) {
	rg := s.regionByName[name]
	if rg == nil {
		return nil, fmt.Errorf("imsemu: unknown region %q", name)
	}
	creds, err := s.ownCredentials()
	if err != nil {
		return nil, err
	}
	return newClient(s.RegionURL(name), creds, rg.projectID, opts)
}

// AccountClient returns a client of the account domainID (one of
// Config.Accounts) in region name: signed with one of its access keys, with
// its project there.
func (s *Server) AccountClient(domainID, name string, opts ...imsapi.Option) (*imsapi.Client, error) {
	i := slices.IndexFunc(s.cfg.Accounts, func(a Account) bool { return a.DomainID == domainID })
	if i < 0 {
		return nil, fmt.Errorf("imsemu: unknown account %q", domainID)
	}
	ac := s.cfg.Accounts[i]
	project, ok := ac.Projects[name]
	if !ok {
		return nil, fmt.Errorf("imsemu: account %s has no project in region %q", domainID, name)
	}
	for ak, sk := range ac.Credentials {
		return newClient(s.RegionURL(name), imsapi.AKSK{AccessKey: ak, SecretKey: sk}, project, opts)
	}
	return nil, errors.New("imsemu: account " + domainID + " has no credentials")
}

// RegionImages returns every image of region name, of every account, as
// IMS would list it now (finishing the jobs whose end has come); nil for an
// unknown region.
func (s *Server) RegionImages(name string) []imsapi.Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	rg := s.regionByName[name]
	if rg == nil {
		return nil
	}
	now := s.clock.Now()
	s.advance(now)
	out := make([]imsapi.Image, 0, len(s.images))
	for _, im := range s.images {
		if !im.deleted && im.region == rg {
			out = append(out, im.view(now))
		}
	}
	return out
}

// AddImageTo is [Server.AddImage] in region name; it returns an error for
// an unknown region.
func (s *Server) AddImageTo(name string, im imsapi.Image) (imsapi.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rg := s.regionByName[name]
	if rg == nil {
		return imsapi.Image{}, fmt.Errorf("imsemu: unknown region %q", name)
	}
	return s.addImageTo(rg, im), nil
}

// ImageMembers returns the members of image id, in any region, as the
// owner lists them now (finishing the jobs whose end has come); nil for an
// unknown image or one shared with nobody.
func (s *Server) ImageMembers(id string) []imsapi.ImageMember {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.clock.Now())
	img := s.imageByID[id]
	if img == nil || img.deleted {
		return nil
	}
	var out []imsapi.ImageMember
	for _, m := range img.members {
		out = append(out, m.view(img.info.ID))
	}
	return out
}

// view is m as the member list has it.
func (m *member) view(imageID string) imsapi.ImageMember {
	v := imsapi.ImageMember{
		Status: m.status, ImageID: imageID, MemberID: m.id, Schema: "/v2/schemas/member", MemberType: m.kind,
		CreatedAt: m.created.UTC().Format(time.RFC3339), UpdatedAt: m.updated.UTC().Format(time.RFC3339),
	}
	if m.kind == imsapi.MemberTypeOrganization {
		v.URN = m.id
	}
	return v
}

// notFound is Glance's 404 for an image the caller cannot see.
func notFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: imsapi.CodeImageNotExist, message: fmt.Sprintf("The image %s does not exist.", id)}
}
