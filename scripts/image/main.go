// Command image builds imsflow's container images offline, FROM scratch,
// out of binaries built here (make image).
//
//	go run ./scripts/image [-arch amd64] [-out bin/images.tar] [-load=true] [-only imsflow,nats-server,minio]
//
// Three images, each one layer of static binaries, a passwd and group
// naming the non-root user 65532, and the directories it writes:
//
//   - imsflow/imsflow: bin/imsflow, entry point "imsflow"; a function is
//     "imsflow run import|export|poller|ingest", the emulator "imsflow
//     emulator", the probe "imsflow healthcheck URL". One image rather
//     than one per function: the functions share all but a few hundred
//     kilobytes of code, so one binary is a quarter of four, every host
//     pulls and caches one layer, and one tag names one tested version.
//   - imsflow/nats-server: nats-server built from the Go module go.mod
//     pins, with "healthcheck" (cmd/healthcheck) for its HEALTHCHECK.
//   - imsflow/minio: MinIO built from the module the Makefile pins (local
//     trials and the cross-container tests only; AGPL, a separate program),
//     with "healthcheck" too.
//
// The images are reproducible: binaries built with -trimpath and no build
// ID, every file's time the commit's (SOURCE_DATE_EPOCH overrides it),
// owner root, sorted, so the same commit and Go give the same image IDs.
// CA roots and zone data are compiled into imsflow (cmd/imsflow/main.go).
// The images are written as one docker-archive tarball and, with -load,
// loaded into the local Docker Engine (no registry is involved); each is
// tagged :local and :<commit>. It prints each image's ID and size.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonroot is the user every image runs as (the distroless convention).
const nonroot = 65532

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	arch, out, only, minio string
	load                   bool
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the images")
	fs.StringVar(&o.out, "out", "bin/images.tar", "docker-archive tarball written")
	fs.StringVar(&o.only, "only", "imsflow,nats-server,minio", "images to build, comma-separated")
	fs.StringVar(&o.minio, "minio", os.Getenv("MINIO_MODULE"), "module@version of MinIO (the Makefile passes its pin)")
	fs.BoolVar(&o.load, "load", true, "docker load the tarball")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err := sourceInfo(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "imsflow-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	refs := map[name.Reference]v1.Image{}
	var built []builtImage
	for _, which := range strings.Split(o.only, ",") {
		spec, err := specFor(ctx, strings.TrimSpace(which), src, o)
		if err != nil {
			return err
		}
		img, err := spec.build(ctx, work, src, o.arch)
		if err != nil {
			return fmt.Errorf("%s: %w", spec.repo, err)
		}
		for _, tag := range []string{"local", src.short} {
			ref, err := name.NewTag(spec.repo + ":" + tag)
			if err != nil {
				return err
			}
			refs[ref] = img
		}
		built = append(built, builtImage{spec.repo, img})
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := tarball.MultiRefWriteToFile(o.out, refs); err != nil {
		return err
	}
	if o.load {
		cmd := exec.CommandContext(ctx, "docker", "load", "-q", "-i", o.out)
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("docker load -i %s: %w (is the Docker Engine running?)", o.out, err)
		}
	}
	for _, b := range built {
		id, _ := b.img.ConfigName()
		size, compressed, err := imageSize(b.img)
		if err != nil {
			return err
		}
		fmt.Printf("%-20s :local :%s  id %s  %s (%s compressed)\n", b.repo, src.short, id.String()[:19], mib(size), mib(compressed))
	}
	if !o.load {
		fmt.Printf("written to %s (docker load -i %s)\n", o.out, o.out)
	}
	return nil
}

type builtImage struct {
	repo string
	img  v1.Image
}

// source is the commit the images are built from.
type source struct {
	rev, short string
	dirty      bool
	date       time.Time // the commit's time, or SOURCE_DATE_EPOCH
}

func (s source) version() string {
	if s.dirty {
		return s.rev + "+modified"
	}
	return s.rev
}

func sourceInfo(ctx context.Context) (source, error) {
	var s source
	rev, err := output(ctx, "git", "rev-parse", "HEAD")
	if err != nil {
		return s, fmt.Errorf("the images are labelled with the commit: %w", err)
	}
	s.rev, s.short = rev, rev[:12]
	status, err := output(ctx, "git", "status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return s, err
	}
	s.dirty = status != ""
	if s.dirty {
		s.short += "-modified"
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = output(ctx, "git", "log", "-1", "--format=%ct"); err != nil {
			return s, err
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return s, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
	}
	s.date = time.Unix(sec, 0).UTC()
	return s, nil
}

// spec is one image: what to build into it and how it runs.
type spec struct {
	repo       string
	binaries   []binary
	writable   []string // directories owned by nonroot (volumes mounted there inherit it)
	entrypoint []string
	cmd        []string
	ports      []string
	volumes    []string
	labels     map[string]string
}

// binary is a Go main package (or module@version) built into /<name>.
type binary struct {
	name, pkg, ldflags string
}

func specFor(ctx context.Context, which string, src source, o options) (spec, error) {
	labels := func(title, desc, version, revision, source, licenses string) map[string]string {
		l := map[string]string{
			"org.opencontainers.image.title":       title,
			"org.opencontainers.image.description": desc,
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.revision":    revision,
			"org.opencontainers.image.source":      source,
			"org.opencontainers.image.licenses":    licenses,
			"org.opencontainers.image.created":     src.date.Format(time.RFC3339),
			"org.opencontainers.image.vendor":      "imsflow",
			"org.opencontainers.image.base.name":   "scratch",
		}
		for k, v := range l {
			if v == "" {
				delete(l, k)
			}
		}
		return l
	}
	switch which {
	case "imsflow":
		return spec{
			repo: "imsflow/imsflow",
			binaries: []binary{{name: "imsflow", pkg: "./cmd/imsflow",
				ldflags: "-X main.version=" + src.version()}},
			writable:   []string{"tmp", "data"},
			entrypoint: []string{"/imsflow"},
			cmd:        []string{"help"},
			ports:      []string{"8080/tcp", "8081/tcp"},
			labels: labels("imsflow", "imsflow's functions (imsflow run import|export|poller|ingest), CLI and IMS emulator",
				src.version(), src.rev, "https://github.com/imsflow/imsflow", ""),
		}, nil
	case "nats-server":
		mod := "github.com/nats-io/nats-server/v2"
		version, err := output(ctx, "go", "list", "-m", "-f", "{{.Version}}", mod)
		if err != nil {
			return spec{}, err
		}
		return spec{
			repo: "imsflow/nats-server",
			binaries: []binary{{name: "nats-server", pkg: mod},
				{name: "healthcheck", pkg: "./cmd/healthcheck"}},
			writable:   []string{"data"},
			entrypoint: []string{"/nats-server"},
			ports:      []string{"4222/tcp", "6222/tcp", "8222/tcp"},
			volumes:    []string{"/data"},
			labels: labels("nats-server", "NATS server "+version+" built from its Go module for imsflow",
				version, src.rev, "https://github.com/nats-io/nats-server", "Apache-2.0"),
		}, nil
	case "minio":
		if o.minio == "" {
			return spec{}, errors.New("minio: -minio module@version is not set (make image passes the Makefile's pin)")
		}
		_, version, _ := strings.Cut(o.minio, "@")
		return spec{
			repo:       "imsflow/minio",
			binaries:   []binary{{name: "minio", pkg: o.minio}, {name: "healthcheck", pkg: "./cmd/healthcheck"}},
			writable:   []string{"data", "tmp"},
			entrypoint: []string{"/minio"},
			cmd:        []string{"server", "/data"},
			ports:      []string{"9000/tcp"},
			volumes:    []string{"/data"},
			labels: labels("minio", "MinIO "+version+" built from its Go module, for imsflow's local trials and tests",
				version, src.rev, "https://github.com/minio/minio", "AGPL-3.0-or-later"),
		}, nil
	}
	return spec{}, fmt.Errorf("unknown image %q: want imsflow, nats-server or minio", which)
}

// build compiles the spec's binaries for linux/arch and makes the image.
func (s spec) build(ctx context.Context, work string, src source, arch string) (v1.Image, error) {
	files := map[string][]byte{
		"etc/passwd": []byte(fmt.Sprintf("root:x:0:0:root:/:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/data:/sbin/nologin\n", nonroot, nonroot)),
		"etc/group":  []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonroot)),
	}
	for _, b := range s.binaries {
		out := filepath.Join(work, s.repo, b.name)
		if err := goBuild(ctx, b, out, arch); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		files[b.name] = data
	}
	layer, err := layerOf(files, s.writable, src.date)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: src.date},
			CreatedBy: "go run ./scripts/image (" + strings.Join(binaryNames(s.binaries), ", ") + ")",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: src.date}
	cf.OS, cf.Architecture = "linux", arch
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", nonroot, nonroot),
		Entrypoint:   s.entrypoint,
		Cmd:          s.cmd,
		WorkingDir:   "/",
		Env:          []string{"PATH=/", "TMPDIR=/tmp"},
		Labels:       s.labels,
		ExposedPorts: set(s.ports),
		Volumes:      set(s.volumes),
	}
	return mutate.ConfigFile(img, cf)
}

func binaryNames(bs []binary) []string {
	var names []string
	for _, b := range bs {
		names = append(names, b.name)
	}
	return names
}

func set(keys []string) map[string]struct{} {
	if len(keys) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		m[k] = struct{}{}
	}
	return m
}

// goBuild builds one static binary, reproducibly.
func goBuild(ctx context.Context, b binary, out, arch string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", strings.TrimSpace("-s -w -buildid= "+b.ldflags), "-o", out, b.pkg)
	if strings.Contains(b.pkg, "@") {
		// A module at a version outside go.mod (MinIO): go install is the
		// only way to build it, into GOBIN, which Go refuses for another
		// architecture.
		if arch != runtime.GOARCH {
			return fmt.Errorf("%s: built with go install, only for this machine's architecture (%s)", b.pkg, runtime.GOARCH)
		}
		cmd = exec.CommandContext(ctx, "go", "install", "-trimpath", "-buildvcs=false",
			"-ldflags", "-s -w -buildid=", b.pkg)
		cmd.Env = append(cmd.Env, "GOBIN="+filepath.Dir(out))
	}
	cmd.Env = append(append(os.Environ(), cmd.Env...), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s: %w", b.pkg, err)
	}
	if strings.Contains(b.pkg, "@") {
		installed := filepath.Join(filepath.Dir(out), filepath.Base(strings.SplitN(b.pkg, "@", 2)[0]))
		if installed != out {
			return os.Rename(installed, out)
		}
	}
	return nil
}

// layerOf makes one deterministic layer: the directories of every file,
// the writable directories owned by nonroot, then the files (binaries
// 0755, the rest 0644), each with mtime date and owner root.
func layerOf(files map[string][]byte, writable []string, date time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for p := range files {
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range writable {
		dirs[d] = true
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	isWritable := map[string]bool{}
	for _, d := range writable {
		isWritable[d] = true
	}
	for _, d := range names {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: date, Format: tar.FormatPAX}
		if isWritable[d] {
			h.Uid, h.Gid, h.Mode = nonroot, nonroot, 0o755
			if d == "tmp" {
				h.Uid, h.Gid, h.Mode = 0, 0, 0o1777
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	names = names[:0]
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		mode := int64(0o644)
		if !strings.Contains(p, "/") {
			mode = 0o755 // the binaries sit at the root
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(files[p])), ModTime: date, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(files[p]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// imageSize is the image's uncompressed size (what docker images shows)
// and its compressed size (what a registry stores and a host pulls).
func imageSize(img v1.Image) (size, compressed int64, err error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range layers {
		c, err := l.Size()
		if err != nil {
			return 0, 0, err
		}
		compressed += c
		r, err := l.Uncompressed()
		if err != nil {
			return 0, 0, err
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			return 0, 0, err
		}
		size += n
	}
	return size, compressed, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
