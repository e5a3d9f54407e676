package imagefmt

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsflow/imsflow/internal/testenv"
)

// readEnds reads what Detect wants from the file at path: its first HeadSize
// and last TailSize bytes, and its size.
func readEnds(t *testing.T, path string) (head, tail []byte, size int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size = st.Size()
	head = make([]byte, min(size, HeadSize))
	if _, err := io.ReadFull(f, head); err != nil {
		t.Fatalf("read head of %s: %v", path, err)
	}
	tail = make([]byte, min(size, TailSize))
	if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil {
		t.Fatalf("read tail of %s: %v", path, err)
	}
	return head, tail, size
}

// qemuVirtualSize is the virtual size qemu-img info reports for path.
func qemuVirtualSize(t *testing.T, qemuImg, path, format string) int64 {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), qemuImg, "info", "--output=json", "-f", format, path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	return info.VirtualSize
}

// TestDetectQEMUImages creates real images with qemu-img and checks Detect
// against them, and its virtual size against what qemu-img info reports.
// It is skipped where qemu-img is not installed (apt-get install
// qemu-utils), except under CI, where it fails.
func TestDetectQEMUImages(t *testing.T) {
	t.Parallel()
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		testenv.Missing(t, "qemu-img is not on PATH; install qemu-utils to check Detect against real images")
	}

	tests := []struct {
		name   string
		format string // qemu-img's name for it
		opts   string // -o options
		size   string
		want   string
		noSize bool // the format keeps its virtual size beyond HeadSize
	}{
		{"qcow2 1M", "qcow2", "", "1M", QCOW2, false},
		{"qcow2 compat 0.10", "qcow2", "compat=0.10", "64M", QCOW2, false},
		{"qcow2 10G", "qcow2", "", "10G", QCOW2, false},
		{"qcow2 odd", "qcow2", "", "1000000512", QCOW2, false},
		{"qcow 64M", "qcow", "", "64M", QCOW, false},
		{"vhd dynamic 64M", "vpc", "", "64M", VHD, false},
		{"vhd dynamic 10G", "vpc", "", "10G", VHD, false},
		{"vhd dynamic force_size", "vpc", "force_size=on", "10G", VHD, false},
		{"vhd fixed 16M", "vpc", "subformat=fixed", "16M", VHD, false},
		{"vhdx 64M", "vhdx", "", "64M", VHDX, true},
		{"vhdx 10G", "vhdx", "", "10G", VHDX, true},
		{"vmdk 64M", "vmdk", "", "64M", VMDK, false},
		{"vmdk 10G", "vmdk", "", "10G", VMDK, false},
		{"vmdk streamOptimized", "vmdk", "subformat=streamOptimized", "1G", VMDK, false},
		{"vmdk twoGbMaxExtentSparse", "vmdk", "subformat=twoGbMaxExtentSparse", "5G", VMDK, false},
		{"vmdk monolithicFlat", "vmdk", "subformat=monolithicFlat", "16M", VMDK, false},
		{"vdi 64M", "vdi", "", "64M", VDI, false},
		{"vdi 10G", "vdi", "", "10G", VDI, false},
		{"qed 64M", "qed", "", "64M", QED, false},
		{"qed 10G", "qed", "", "10G", QED, false},
		{"raw 10M", "raw", "", "10M", RAW, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "disk."+tt.format)
			args := []string{"create", "-q", "-f", tt.format}
			if tt.opts != "" {
				args = append(args, "-o", tt.opts)
			}
			args = append(args, path, tt.size)
			if out, err := exec.CommandContext(t.Context(), qemuImg, args...).CombinedOutput(); err != nil {
				if strings.Contains(string(out), "not supported") || strings.Contains(string(out), "Unknown") {
					t.Skipf("qemu-img cannot create %s here: %s", tt.format, out)
				}
				t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
			}
			want := Result{Format: tt.want}
			if !tt.noSize {
				want.VirtualSize = qemuVirtualSize(t, qemuImg, path, tt.format)
			}

			head, tail, size := readEnds(t, path)
			got := Detect(head, tail, size)
			if got.Format != want.Format || got.VirtualSize != want.VirtualSize {
				t.Errorf("Detect(%s) = %+v, want format %q and virtual size %d", tt.name, got, want.Format, want.VirtualSize)
			}
			t.Logf("Detect(%s) = %+v", tt.name, got)

			if strings.Contains(tt.opts, "twoGbMaxExtentSparse") {
				// Each extent file is a sparse extent without a descriptor.
				extent := strings.TrimSuffix(path, ".vmdk") + "-s001.vmdk"
				head, tail, size := readEnds(t, extent)
				got := Detect(head, tail, size)
				if got.Format != VMDK || got.VirtualSize <= 0 || !strings.Contains(got.Detail, "one extent of a split disk") {
					t.Errorf("Detect(%s) = %+v, want a VMDK extent of a split disk", filepath.Base(extent), got)
				}
			}
		})
	}
}
