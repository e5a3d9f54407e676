package imsemu

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// OSVersion is one entry of the emulator's os_version catalogue.
type OSVersion struct {
	Platform string
	Version  string // the exact os_version string
	Bit      int
	Type     string // Linux or Windows
	BMS      bool   // listed under ?tag=bms
	UEFI     bool   // listed under ?tag=uefi
}

// DefaultOSVersions is a small catalogue in IMS's own spelling.
var DefaultOSVersions = []OSVersion{
	{"CentOS", "CentOS 7.0 64bit", 64, imsapi.OSLinux, true, false},
	{"CentOS", "CentOS 7.9 64bit", 64, imsapi.OSLinux, true, true},
	{"Ubuntu", "Ubuntu 20.04 server 64bit", 64, imsapi.OSLinux, true, true},
	{"Ubuntu", "Ubuntu 22.04 server 64bit", 64, imsapi.OSLinux, true, true},
	{"Debian", "Debian GNU/Linux 11.0.0 64bit", 64, imsapi.OSLinux, false, true},
	{"EulerOS", "EulerOS 2.5 64bit", 64, imsapi.OSLinux, true, true},
	{"Other", "Huawei Cloud EulerOS 2.0 64bit", 64, imsapi.OSLinux, true, true},
	{"Oracle Linux", "Oracle Linux Server release 7.6 64bit", 64, imsapi.OSLinux, false, false},
	{"SUSE", "SUSE Linux Enterprise Server 15 SP1 64bit", 64, imsapi.OSLinux, false, true},
	{"Windows", "Windows Server 2016 Standard 64bit", 64, imsapi.OSWindows, false, true},
	{"Windows", "Windows Server 2019 Standard 64bit", 64, imsapi.OSWindows, true, true},
	{"Other", "Other Linux(64 bit)", 64, imsapi.OSLinux, false, false},
}

func (s *Server) osVersion(v string) (OSVersion, bool) {
	for _, o := range s.cfg.OSVersions {
		if o.Version == v {
			return o, true
		}
	}
	return OSVersion{}, false
}

// assumedSize is the size of an object AssumeObjects takes for granted
// when the import gives no min_disk.
const assumedSize = imsapi.GiB

// assumeSize is the size AssumeObjects gives an object no catalogue holds.
// IMS's import requests carry no file size, and the notification that
// named the object never reaches the emulator; min_disk, the size of the
// disk in the file as the caller states it, is what the request does
// carry, so the file is taken to be that large (at most limit). A job then
// runs as long as the file's size makes it run, which is what a person
// watching "imsflow dev" expects: a 100 GB upload takes 100 times as long
// as a 1 GB one, not the same. For a compressed format the real file is
// smaller than its disk, so this errs long, never short.
func assumeSize(minDisk int, limit int64) int64 {
	if minDisk <= 0 {
		return assumedSize
	}
	return min(int64(minDisk)*imsapi.GiB, limit)
}

// Formats IMS imports, by file extension.
var (
	normalFormats = []string{"vmdk", "vhd", "qcow2", "raw", "vhdx", "qed", "vdi", "qcow", "zvhd2", "zvhd"}
	quickFormats  = []string{"raw", "zvhd2"}
)

// decode reads the JSON body into v, as IMS does: malformed JSON or a
// field of the wrong type is IMG.0001.
func decode(r *request, v any) *apiError {
	if err := json.Unmarshal(r.body, v); err != nil {
		return imsError("IMG.0001", "The request body is invalid: %v.", err)
	}
	return nil
}

// validationError turns the first broken documented rule into IMS's answer.
func validationError(err error) *apiError {
	if err == nil {
		return nil
	}
	if all := imsapi.ValidationErrors(err); len(all) > 0 {
		return imsError(all[0].Code, "Invalid parameter %s: %s.", all[0].Field, all[0].Message)
	}
	return imsError("IMG.0001", "%v", err)
}

// source is the object an import reads, checked as IMS checks it.
type source struct {
	obj    Object
	format string
}

func (s *Server) importSource(imageURL string, allowed []string, limit int64, minDisk int, iso bool) (source, *apiError) {
	bucket, key, _ := strings.Cut(imageURL, ":")
	if s.cfg.AssumeObjects {
		if _, ok := s.objects[objectKey{bucket, key}]; !ok {
			s.putObject(Object{Bucket: bucket, Key: key, Size: assumeSize(minDisk, limit)})
		}
	}
	if !s.buckets[bucket] {
		return source{}, imsError("IMG.0069", "The OBS bucket %s does not exist or cannot be accessed.", bucket)
	}
	obj, ok := s.objects[objectKey{bucket, key}]
	if !ok {
		return source{}, imsError("IMG.0057", "The image file %s does not exist or cannot be accessed.", imageURL)
	}
	if c := strings.ToUpper(obj.StorageClass); c != "" && c != "STANDARD" {
		return source{}, imsError("IMG.0057", "The image file %s is in storage class %s; only Standard storage can be imported.", imageURL, obj.StorageClass)
	}
	if obj.Size == 0 {
		return source{}, imsError("IMG.0057", "The image file %s is empty.", imageURL)
	}
	format := strings.TrimPrefix(strings.ToLower(path.Ext(key)), ".")
	if iso {
		if format != "iso" {
			return source{}, imsError("IMG.0057", "The file %s is not an ISO file, which type IsoImage needs.", imageURL)
		}
	} else if !slices.Contains(allowed, format) {
		return source{}, imsError("IMG.0057", "The format of %s is not supported here; use one of %s.", imageURL, strings.Join(allowed, ", "))
	}
	if obj.Size > limit {
		return source{}, imsError("IMG.0059", "The image file is %d bytes; at most %d (%d GB) can be imported this way.", obj.Size, limit, limit/imsapi.GiB)
	}
	disk := obj.VirtualSize
	if disk == 0 && format == "raw" {
		disk = obj.Size
	}
	if need := int((disk + imsapi.GiB - 1) / imsapi.GiB); disk > 0 && minDisk < need {
		return source{}, imsError("IMG.0055", "min_disk %d GB is smaller than the %d GB disk in the file.", minDisk, need)
	}
	return source{obj: obj, format: format}, nil
}

// admitImport applies the image quota and the running-jobs cap of the
// request's region.
func (s *Server) admitImport(r *request) *apiError {
	if e := s.admitImage(r.region, r.caller); e != nil {
		return e
	}
	if m := s.cfg.MaxRunningJobs; m > 0 && r.region.running >= m {
		s.stats.Capped++
		return imsError(imsapi.CodeTooManyImports, "Too many image import tasks are running (%d); try again later.", r.region.running)
	}
	return nil
}

// admitImage applies acct's image quota in rg to a new image.
func (s *Server) admitImage(rg *region, acct *account) *apiError {
	if q := rg.quota; q > 0 && s.privateImages(rg, acct) >= q {
		return imsError("IMG.0015", "The image quota (%d) has been reached.", q)
	}
	return nil
}

// newImport creates the image record (queued) and its job.
func (s *Server) newImport(r *request, op, jobType string, src source, im imsapi.Image, tags []string, imageTags []imsapi.ImageTag) (any, *apiError) {
	im.ID = s.uuid()
	im.Status = imsapi.ImageQueued
	im.Visibility, im.ImageType, im.RootOrigin, im.ContainerFormat = "private", "private", "file", "bare"
	im.Owner = r.project
	im.ImageSize = strconv.FormatInt(src.obj.Size, 10)
	im.DiskFormat = diskFormat(src.format)
	for _, t := range tags {
		im.Tags = append(im.Tags, canonicalTag(t))
	}
	for _, t := range imageTags {
		im.Tags = append(im.Tags, canonicalTag(t.Key+"."+t.Value))
	}
	stamp := r.now.UTC().Format("2006-01-02T15:04:05Z")
	im.CreatedAt, im.UpdatedAt = stamp, stamp
	img := &image{info: im, created: r.now}
	j := &job{jobType: jobType, image: img, imageID: im.ID, imageName: im.Name,
		run:  duration(src.obj.Size, s.cfg.ImportSpeed, s.cfg.TimeScale),
		fail: s.failureFor(op, r.region.name, src.obj.Key, im.Name)}
	img.job = j
	img.region, img.owner = r.region, r.caller
	s.addImage(img)
	url := src.obj.Bucket + ":" + src.obj.Key
	return imsapi.JobRef{JobID: s.startJob(r, j, op, im.Name, url)}, nil
}

// diskFormat is the disk_format an imported image reports: the file's own
// when IMS lists it as a disk format, else zvhd2 (IMS converts).
func diskFormat(f string) string {
	if slices.Contains([]string{"vhd", "zvhd", "zvhd2", "raw", "qcow2"}, f) {
		return f
	}
	return "zvhd2"
}

func (s *Server) withOS(im *imsapi.Image, version string) *apiError {
	if version == "" {
		return nil
	}
	o, ok := s.osVersion(version)
	if !ok {
		return imsError("IMG.0056", "The os_version %q is invalid; see GET /v1/cloudimages/os_version.", version)
	}
	im.OSVersion, im.OSType, im.Platform, im.OSBit = o.Version, o.Type, o.Platform, strconv.Itoa(o.Bit)
	return nil
}

func platform(im *imsapi.Image, arch, firmware string) {
	im.Architecture = cmpOr(arch, imsapi.ArchX86)
	im.HWFirmwareType = cmpOr(firmware, imsapi.FirmwareBIOS)
	if im.Architecture == imsapi.ArchARM {
		im.HWFirmwareType = imsapi.FirmwareUEFI
		im.SupportARM = true
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s *Server) quickImport(r *request) (any, *apiError) {
	var req imsapi.QuickImportRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	im := imsapi.Image{Name: req.Name, Description: req.Description, MinDisk: req.MinDisk, LazyLoading: true,
		EnterpriseProjectID: req.EnterpriseProjectID}
	jobType := imsapi.JobTypeImportImage
	if req.Type == imsapi.TypeDataImage {
		jobType = imsapi.JobTypeImportDataImage
		im.VirtualEnvType, im.OSType = imsapi.TypeDataImage, cmpOr(req.OSType, imsapi.OSLinux)
	} else {
		im.VirtualEnvType = envType(req.Type)
		if e := s.withOS(&im, req.OSVersion); e != nil {
			return nil, e
		}
	}
	platform(&im, req.Architecture, req.HWFirmwareType)
	if s.cfg.AssumeObjects {
		// An assumed RAW file, whose size is its disk, is the largest disk
		// min_disk exceeds, one byte under min_disk GB, not min_disk GB as
		// importSource assumes: this call wants min_disk above the disk
		// (below). An assumed ZVHD2 has no known disk and keeps its size.
		bucket, key, _ := strings.Cut(req.ImageURL, ":")
		if _, ok := s.objects[objectKey{bucket, key}]; !ok && strings.EqualFold(path.Ext(key), ".raw") {
			s.putObject(Object{Bucket: bucket, Key: key, Size: assumeSize(req.MinDisk, imsapi.MaxQuickImportSize) - 1})
		}
	}
	src, e := s.importSource(req.ImageURL, quickFormats, imsapi.MaxQuickImportSize, req.MinDisk, false)
	if e != nil {
		return nil, e
	}
	// ImportImageQuick's min_disk "must exceed the disk size in the file"
	// (CreateImage's, with is_quick_import too, need only be at least it;
	// importSource checks that): min_disk GB strictly above the disk's
	// bytes, so a disk of exactly N GB needs N+1, and one of 1024 GB or
	// more has no min_disk at all.
	disk := src.obj.VirtualSize
	if disk == 0 && src.format == "raw" {
		disk = src.obj.Size
	}
	if disk > 0 && int64(req.MinDisk)*imsapi.GiB <= disk {
		return nil, imsError("IMG.0055", "min_disk %d GB does not exceed the disk in the file (%d bytes); quick import needs at least %d GB.",
			req.MinDisk, disk, disk/imsapi.GiB+1)
	}
	if e := s.checkBitmap(src); e != nil {
		return nil, e
	}
	if e := s.admitImport(r); e != nil {
		return nil, e
	}
	return s.newImport(r, OpQuickImport, jobType, src, im, req.Tags, req.ImageTags)
}

// checkBitmap refuses a quick import of a RAW file without its bitmap, the
// <name>.mf next to it.
func (s *Server) checkBitmap(src source) *apiError {
	if src.format != "raw" {
		return nil
	}
	bitmap := strings.TrimSuffix(src.obj.Key, path.Ext(src.obj.Key)) + ".mf"
	if _, ok := s.objects[objectKey{src.obj.Bucket, bitmap}]; !ok && !s.cfg.AssumeObjects {
		return imsError("IMG.0057", "The bitmap file %s:%s of the RAW file is missing; quick import of RAW needs it.", src.obj.Bucket, bitmap)
	}
	return nil
}

func envType(t string) string {
	switch t {
	case imsapi.TypeBMS, imsapi.TypeIronic:
		return "Ironic"
	case imsapi.TypeIsoImage:
		return imsapi.TypeIsoImage
	}
	return "FusionCompute"
}

func (s *Server) dataImageImport(r *request) (any, *apiError) {
	var req imsapi.DataImageRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	im := imsapi.Image{Name: req.Name, Description: req.Description, MinDisk: req.MinDisk, VirtualEnvType: imsapi.TypeDataImage,
		OSType: cmpOr(req.OSType, imsapi.OSLinux), SystemCMKID: req.CMKID, EnterpriseProjectID: req.EnterpriseProjectID}
	src, e := s.importSource(req.ImageURL, normalFormats, imsapi.MaxNormalImportSize, req.MinDisk, false)
	if e != nil {
		return nil, e
	}
	if e := s.admitImport(r); e != nil {
		return nil, e
	}
	return s.newImport(r, OpDataImageImport, imsapi.JobTypeImportDataImage, src, im, req.Tags, req.ImageTags)
}

func (s *Server) imageImport(r *request) (any, *apiError) {
	var req imsapi.ImageRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	im := imsapi.Image{Name: req.Name, Description: req.Description, MinDisk: req.MinDisk, MinRAM: req.MinRAM,
		VirtualEnvType: envType(req.Type), OSType: req.OSType, SystemCMKID: req.CMKID,
		EnterpriseProjectID: req.EnterpriseProjectID, IsConfigInit: imsapi.FlexBool(req.IsConfig)}
	if e := s.withOS(&im, req.OSVersion); e != nil {
		return nil, e
	}
	platform(&im, req.Architecture, req.HWFirmwareType)
	// is_quick_import takes CreateImage down the quick path: RAW (with its
	// bitmap) or ZVHD2 only, up to 1 TB, lazily loaded.
	formats, limit, iso := normalFormats, imsapi.MaxNormalImportSize, req.Type == imsapi.TypeIsoImage
	if req.IsQuickImport {
		formats, limit, iso = quickFormats, imsapi.MaxQuickImportSize, false
		im.LazyLoading = true
	}
	src, e := s.importSource(req.ImageURL, formats, limit, req.MinDisk, iso)
	if e != nil {
		return nil, e
	}
	if req.IsQuickImport {
		if e := s.checkBitmap(src); e != nil {
			return nil, e
		}
	}
	if e := s.admitImport(r); e != nil {
		return nil, e
	}
	return s.newImport(r, OpImageImport, imsapi.JobTypeImportImage, src, im, req.Tags, req.ImageTags)
}

func (s *Server) export(r *request) (any, *apiError) {
	id := r.PathValue("image_id")
	img, e := s.ownedImage(r, id)
	if e != nil {
		return nil, e
	}
	var req imsapi.ExportRequest
	if e := decode(r, &req); e != nil {
		return nil, e
	}
	if e := validationError(req.Validate()); e != nil {
		return nil, e
	}
	im := img.view(r.now)
	size, _ := im.SizeBytes()
	switch {
	case im.Status != imsapi.ImageActive:
		return nil, imsError("IMG.0071", "The image is %s; only active images can be exported.", im.Status)
	case im.ImageType == "gold":
		return nil, imsError("IMG.0077", "Public images cannot be exported.")
	case im.ImageType == "market" || im.ProductCode != "" || im.AccountCode != "":
		return nil, imsError("IMG.0079", "KooGallery and charged images cannot be exported.")
	case im.ImageType != "private":
		return nil, imsError("IMG.0071", "Only private images can be exported; this one is %s.", im.ImageType)
	case bool(im.WholeImage):
		return nil, imsError("IMG.0128", "Full-ECS images cannot be exported.")
	case im.VirtualEnvType == imsapi.TypeIsoImage:
		return nil, imsError("IMG.0071", "ISO images cannot be exported.")
	case size >= imsapi.MaxExportSize:
		return nil, imsError("IMG.0160", "The image is %d bytes; only images under 1 TB can be exported.", size)
	case size > imsapi.MaxNormalExportSize && !req.IsQuickExport:
		return nil, imsError("IMG.0160", "Only images under 128 GB can be exported without quick export; this one is %d bytes.", size)
	case req.IsQuickExport && im.Encrypted():
		return nil, imsError("IMG.0071", "Encrypted images cannot be quick exported; decrypt the image or use a normal export.")
	}
	for _, j := range s.pending {
		if j.op == OpExport && j.imageID == id {
			return nil, imsError("IMG.0148", "The image is already being exported (job %s).", j.id)
		}
	}
	bucket, key, _ := strings.Cut(req.BucketURL, ":")
	if !s.buckets[bucket] {
		return nil, imsError("IMG.0069", "The OBS bucket %s does not exist or cannot be accessed.", bucket)
	}
	if _, exists := s.objects[objectKey{bucket, key}]; exists {
		return nil, imsError("IMG.0070", "The object %s already exists in the bucket.", req.BucketURL)
	}
	j := &job{jobType: imsapi.JobTypeExportImage, image: img, imageID: id, imageName: im.Name,
		run:    duration(size, s.cfg.ExportSpeed, s.cfg.TimeScale),
		fail:   s.failureFor(OpExport, r.region.name, key, im.Name),
		target: Object{Bucket: bucket, Key: key, Size: size, StorageClass: "STANDARD"}}
	return imsapi.JobRef{JobID: s.startJob(r, j, OpExport, im.Name, req.BucketURL)}, nil
}

func (s *Server) jobProgress(r *request) (any, *apiError) {
	return s.jobView(r, true)
}

func (s *Server) jobStatus(r *request) (any, *apiError) {
	if p := r.PathValue("project_id"); r.project != "" && p != r.project {
		return nil, imsError("IMG.0001", "The project %s in the path is not the credentials' project.", p)
	}
	return s.jobView(r, false)
}

func (s *Server) jobView(r *request, progressAPI bool) (any, *apiError) {
	id := r.PathValue("job_id")
	j := s.jobs[id]
	if j == nil || j.region != r.region || j.account != r.caller {
		return nil, &apiError{status: http.StatusNotFound, code: "IMG.0001", message: fmt.Sprintf("The job %s does not exist.", id)}
	}
	v := j.view(r.now, progressAPI)
	if v.Status == imsapi.JobSuccess && j.write != nil && !j.write.written {
		// The answer goes out once the exported object is in the Store.
		r.await = j.write
	}
	return v, nil
}

// listParams are the query parameters IMS documents for ListImages
// (GET /v2/cloudimages); any other is refused with IMG.0001. The emulator
// filters on all of them except those in ignoredListParams.
var listParams = []string{
	"__imagetype", "__isregistered", "__os_bit", "__os_type", "__platform", "__system__cmkid", "__whole_image",
	"__support_diskintensive", "__support_highperformance", "__support_kvm", "__support_kvm_gpu_type",
	"__support_kvm_infiniband", "__support_largememory", "__support_xen", "__support_xen_gpu_type", "__support_xen_hana",
	"architecture", "container_format", "created_at", "disk_format", "enterprise_project_id", "flavor_id", "id",
	"limit", "marker", "member_status", "min_disk", "min_ram", "name", "owner", "protected", "sort_dir", "sort_key",
	"status", "tag", "updated_at", "virtual_env_type", "visibility",
}

// ignoredListParams are documented filters on what the emulator does not
// model (registration, member status of shared images, flavors, hypervisor
// features): they are accepted and match every image.
var ignoredListParams = []string{
	"__isregistered", "member_status", "flavor_id",
	"__support_diskintensive", "__support_highperformance", "__support_kvm", "__support_kvm_gpu_type",
	"__support_kvm_infiniband", "__support_largememory", "__support_xen", "__support_xen_gpu_type", "__support_xen_hana",
}

// imageMatch is one filter of ListImages.
type imageMatch func(imsapi.Image) bool

// listFilters turns the query's filters into matches; a malformed value
// is IMG.0001. Empty values filter nothing.
func listFilters(q url.Values) ([]imageMatch, *apiError) {
	exact := map[string]func(imsapi.Image) string{
		"id": func(i imsapi.Image) string { return i.ID }, "name": func(i imsapi.Image) string { return i.Name },
		"status":           func(i imsapi.Image) string { return i.Status },
		"owner":            func(i imsapi.Image) string { return i.Owner },
		"visibility":       func(i imsapi.Image) string { return i.Visibility },
		"__imagetype":      func(i imsapi.Image) string { return i.ImageType },
		"__os_type":        func(i imsapi.Image) string { return i.OSType },
		"__os_bit":         func(i imsapi.Image) string { return i.OSBit },
		"__platform":       func(i imsapi.Image) string { return i.Platform },
		"__system__cmkid":  func(i imsapi.Image) string { return i.SystemCMKID },
		"disk_format":      func(i imsapi.Image) string { return i.DiskFormat },
		"container_format": func(i imsapi.Image) string { return i.ContainerFormat },
		"virtual_env_type": func(i imsapi.Image) string { return i.VirtualEnvType },
		"architecture":     func(i imsapi.Image) string { return i.Architecture },
	}
	flags := map[string]func(imsapi.Image) bool{
		"protected":     func(i imsapi.Image) bool { return bool(i.Protected) },
		"__whole_image": func(i imsapi.Image) bool { return bool(i.WholeImage) },
	}
	// min_disk and min_ram match the image's value exactly, as every other
	// attribute filter does.
	numbers := map[string]func(imsapi.Image) int{
		"min_disk": func(i imsapi.Image) int { return i.MinDisk },
		"min_ram":  func(i imsapi.Image) int { return i.MinRAM },
	}
	times := map[string]func(imsapi.Image) string{
		"created_at": func(i imsapi.Image) string { return i.CreatedAt },
		"updated_at": func(i imsapi.Image) string { return i.UpdatedAt },
	}
	var out []imageMatch
	for k := range q {
		want := q.Get(k)
		if want == "" || slices.Contains(ignoredListParams, k) {
			continue
		}
		if get, ok := exact[k]; ok {
			out = append(out, func(i imsapi.Image) bool { return get(i) == want })
		}
		if get, ok := flags[k]; ok {
			b, err := strconv.ParseBool(strings.ToLower(want))
			if err != nil {
				return nil, imsError("IMG.0001", "%s %q must be true or false.", k, want)
			}
			out = append(out, func(i imsapi.Image) bool { return get(i) == b })
		}
		if get, ok := numbers[k]; ok {
			n, err := strconv.Atoi(want)
			if err != nil || n < 0 {
				return nil, imsError("IMG.0001", "%s %q must be a whole number.", k, want)
			}
			out = append(out, func(i imsapi.Image) bool { return get(i) == n })
		}
		if get, ok := times[k]; ok {
			m, e := timeFilter(k, want, get)
			if e != nil {
				return nil, e
			}
			out = append(out, m)
		}
		switch k {
		case "enterprise_project_id":
			// "all_granted_eps" lists every project; an image without one
			// is in the default project, "0".
			if want != "all_granted_eps" {
				out = append(out, func(i imsapi.Image) bool { return cmpOr(i.EnterpriseProjectID, "0") == want })
			}
		case "tag":
			tag := canonicalTag(want)
			out = append(out, func(i imsapi.Image) bool { return slices.Contains(i.Tags, tag) })
		}
	}
	return out, nil
}

// timeFilter is a created_at/updated_at filter as IMS documents it:
// "<op>:<UTC time>" with op one of gt, gte, lt, lte, eq, neq and the time
// RFC 3339 (2026-01-02T15:04:05Z) or "2026-01-02 15:04:05".
func timeFilter(k, v string, get func(imsapi.Image) string) (imageMatch, *apiError) {
	op, stamp, _ := strings.Cut(v, ":")
	cmps := map[string]func(c int) bool{
		"gt": func(c int) bool { return c > 0 }, "gte": func(c int) bool { return c >= 0 },
		"lt": func(c int) bool { return c < 0 }, "lte": func(c int) bool { return c <= 0 },
		"eq": func(c int) bool { return c == 0 }, "neq": func(c int) bool { return c != 0 },
	}
	cmpOK, okOp := cmps[op]
	at, okTime := parseStamp(stamp)
	if !okOp || !okTime {
		return nil, imsError("IMG.0001", "%s %q must be <gt|gte|lt|lte|eq|neq>:<UTC time>, e.g. gt:2026-01-02T15:04:05Z.", k, v)
	}
	return func(i imsapi.Image) bool {
		t, ok := parseStamp(get(i))
		return ok && cmpOK(t.Compare(at))
	}, nil
}

func parseStamp(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// listOrder sorts images for ListImages: by sort_key (created_at, the
// default, name, id, status, disk_format, container_format or size) in
// sort_dir (desc, the default, or asc). Images that tie keep the order of
// creation, reversed for desc, so the default lists newest first.
func listOrder(q url.Values) (func(all []imsapi.Image), *apiError) {
	keys := map[string]func(a, b imsapi.Image) int{
		"created_at": func(a, b imsapi.Image) int {
			ta, _ := parseStamp(a.CreatedAt)
			tb, _ := parseStamp(b.CreatedAt)
			return ta.Compare(tb)
		},
		"name":             func(a, b imsapi.Image) int { return strings.Compare(a.Name, b.Name) },
		"id":               func(a, b imsapi.Image) int { return strings.Compare(a.ID, b.ID) },
		"status":           func(a, b imsapi.Image) int { return strings.Compare(a.Status, b.Status) },
		"disk_format":      func(a, b imsapi.Image) int { return strings.Compare(a.DiskFormat, b.DiskFormat) },
		"container_format": func(a, b imsapi.Image) int { return strings.Compare(a.ContainerFormat, b.ContainerFormat) },
		"size": func(a, b imsapi.Image) int {
			sa, _ := a.SizeBytes()
			sb, _ := b.SizeBytes()
			return cmp.Compare(sa, sb)
		},
	}
	key := cmpOr(q.Get("sort_key"), "created_at")
	compare, ok := keys[key]
	if !ok {
		return nil, imsError("IMG.0001", "sort_key %q must be one of created_at, name, id, status, disk_format, container_format, size.", key)
	}
	switch dir := cmpOr(q.Get("sort_dir"), "desc"); dir {
	case "asc":
		return func(all []imsapi.Image) { slices.SortStableFunc(all, compare) }, nil
	case "desc":
		return func(all []imsapi.Image) {
			slices.Reverse(all)
			slices.SortStableFunc(all, func(a, b imsapi.Image) int { return compare(b, a) })
		}, nil
	default:
		return nil, imsError("IMG.0001", "sort_dir %q must be asc or desc.", dir)
	}
}

func (s *Server) listImages(r *request) (any, *apiError) {
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains(listParams, k) {
			return nil, imsError("IMG.0001", "The query parameter %s is not supported.", k)
		}
	}
	limit := imsapi.DefaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, imsError("IMG.0001", "limit %q must be a number from 1 to 1000.", v)
		}
		limit = n
	}
	filters, e := listFilters(q)
	if e != nil {
		return nil, e
	}
	order, e := listOrder(q)
	if e != nil {
		return nil, e
	}
	all := s.visibleImages(r, q.Get("member_status"))
	order(all)
	// The marker is looked up among all images, not the filtered ones: it
	// stays a valid position when its image no longer matches the filter
	// (an image that was saving when the last page was read is active now).
	if m := q.Get("marker"); m != "" {
		i := slices.IndexFunc(all, func(im imsapi.Image) bool { return im.ID == m })
		if i < 0 {
			return nil, imsError("IMG.0001", "The marker %s is not an image of this list.", m)
		}
		all = all[i+1:]
	}
	matched := []imsapi.Image{}
	for _, v := range all {
		if len(matched) == limit {
			break
		}
		if !slices.ContainsFunc(filters, func(m imageMatch) bool { return !m(v) }) {
			matched = append(matched, v)
		}
	}
	return map[string][]imageAnswer{"images": answers(matched)}, nil
}

// showImage is GlanceShowImage (GET /v2/images/{image_id}): the image as
// ListImages has it, as a flat object. An unknown or deleted image is 404.
func (s *Server) showImage(r *request) (any, *apiError) {
	id := r.PathValue("image_id")
	img := s.imageByID[id]
	if img == nil || img.deleted || !s.canSee(r, img) {
		return nil, &apiError{status: http.StatusNotFound, code: imsapi.CodeImageNotExist, message: fmt.Sprintf("The image %s does not exist.", id)}
	}
	return answer(s.viewFor(r, img)), nil
}

func cmpOrEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) osVersions(r *request) (any, *apiError) {
	tag := r.URL.Query().Get("tag")
	if tag != "" && tag != imsapi.OSTagBMS && tag != imsapi.OSTagUEFI {
		return nil, imsError("IMG.0001", "tag %q must be bms or uefi.", tag)
	}
	var out imsapi.OSVersions
	for _, o := range s.cfg.OSVersions {
		if (tag == imsapi.OSTagBMS && !o.BMS) || (tag == imsapi.OSTagUEFI && !o.UEFI) {
			continue
		}
		v := imsapi.OSVersion{Platform: o.Platform, OSVersionKey: o.Version, OSVersion: o.Version, OSBit: o.Bit, OSType: o.Type}
		i := slices.IndexFunc(out, func(p imsapi.OSPlatform) bool { return p.Platform == o.Platform })
		if i < 0 {
			out = append(out, imsapi.OSPlatform{Platform: o.Platform})
			i = len(out) - 1
		}
		out[i].VersionList = append(out[i].VersionList, v)
	}
	return cmpOrEmpty(out), nil
}

// quota is the caller's quota in the request's region: its private images;
// image_shared, its images shared with anyone (UNCONFIRMED: what IMS
// counts there, and its limit, which the emulator takes from the image
// quota); image_member, the most members one of its images has, against
// MaxImageMembers.
func (s *Server) quota(r *request) (any, *apiError) {
	q := r.region.quota
	if q < 0 {
		q = 1 << 30
	}
	shared, members, maxMembers := 0, 0, s.cfg.MaxImageMembers
	if maxMembers < 0 {
		maxMembers = 1 << 30
	}
	for _, im := range s.images {
		if !im.deleted && im.region == r.region && im.owner == r.caller && len(im.members) > 0 {
			shared++
			members = max(members, len(im.members))
		}
	}
	return map[string]imsapi.Quota{"quotas": {Resources: []imsapi.QuotaResource{
		{Type: imsapi.QuotaImage, Used: s.privateImages(r.region, r.caller), Quota: q, Min: 1, Max: max(q, 1000)},
		{Type: imsapi.QuotaImageShared, Used: shared, Quota: q, Min: 1, Max: max(q, 1000)},
		{Type: imsapi.QuotaImageMember, Used: members, Quota: maxMembers, Min: 1, Max: maxMembers},
	}}}, nil
}
