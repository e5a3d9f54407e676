package imagefmt

import (
	"encoding/binary"
	"strings"
	"testing"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
)

// Header builders: each writes the fields Detect reads, with encoding/binary,
// at the offsets the parsers cite.

// qcowHeader is a QCOW (version 1) or QCOW2 header.
func qcowHeader(version uint32, size uint64) []byte {
	b := make([]byte, 104)
	copy(b, "QFI\xfb")
	binary.BigEndian.PutUint32(b[4:], version)
	binary.BigEndian.PutUint64(b[24:], size)
	return b
}

func qedHeader(size uint64, features uint64) []byte {
	b := make([]byte, 64)
	copy(b, "QED\x00")
	binary.LittleEndian.PutUint32(b[4:], 64<<10) // cluster_size
	binary.LittleEndian.PutUint32(b[8:], 4)      // table_size
	binary.LittleEndian.PutUint32(b[12:], 1)     // header_size
	binary.LittleEndian.PutUint64(b[16:], features)
	binary.LittleEndian.PutUint64(b[48:], size)
	return b
}

func vhdxHeader(creator string) []byte {
	b := make([]byte, 8+512)
	copy(b, "vhdxfile")
	for i, c := range creator {
		binary.LittleEndian.PutUint16(b[8+2*i:], uint16(c))
	}
	return b
}

// vmdk4Header is a VMDK4 sparse extent header followed by a 20-sector
// descriptor area at sector descOffset holding desc (zeros when desc is
// empty). descOffset 0 means no descriptor area.
func vmdk4Header(capacitySectors uint64, flags uint32, descOffset uint64, desc string) []byte {
	b := make([]byte, 512)
	copy(b, "KDMV")
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint32(b[8:], flags)
	binary.LittleEndian.PutUint64(b[12:], capacitySectors)
	binary.LittleEndian.PutUint64(b[20:], 128) // granularity
	if descOffset == 0 {
		return b
	}
	binary.LittleEndian.PutUint64(b[28:], descOffset)
	binary.LittleEndian.PutUint64(b[36:], 20)
	if descOffset > 4 {
		return b // the area is beyond what the test passes
	}
	b = append(b, make([]byte, (int(descOffset)-1+20)*512)...)
	copy(b[descOffset*512:], desc)
	return b
}

func vmdk3Header(sectors uint32) []byte {
	b := make([]byte, 512)
	copy(b, "COWD")
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint32(b[12:], sectors)
	return b
}

// vdiHeader is a VDI header; for major 0 the size goes to 0x160, for
// major 1 to 0x170 with headerSize at 0x48.
func vdiHeader(major, minor, headerSize uint32, size uint64) []byte {
	b := make([]byte, 512)
	copy(b, "<<< Oracle VM VirtualBox Disk Image >>>\n")
	binary.LittleEndian.PutUint32(b[0x40:], 0xbeda107f)
	binary.LittleEndian.PutUint32(b[0x44:], major<<16|minor)
	if major == 0 {
		binary.LittleEndian.PutUint32(b[0x48:], 1) // dynamic
		binary.LittleEndian.PutUint64(b[0x160:], size)
		return b
	}
	binary.LittleEndian.PutUint32(b[0x48:], headerSize)
	binary.LittleEndian.PutUint32(b[0x4c:], 1) // dynamic
	binary.LittleEndian.PutUint64(b[0x170:], size)
	return b
}

// vhdFooter is a 512-byte VHD footer with a correct checksum.
func vhdFooter(diskType uint32, size uint64) []byte {
	b := make([]byte, 512)
	copy(b, "conectix")
	binary.BigEndian.PutUint32(b[8:], 2)
	binary.BigEndian.PutUint32(b[12:], 0x00010000)
	copy(b[28:], "vpc ")
	binary.BigEndian.PutUint64(b[40:], size)
	binary.BigEndian.PutUint64(b[48:], size)
	binary.BigEndian.PutUint32(b[60:], diskType)
	var sum uint32
	for _, c := range b {
		sum += uint32(c)
	}
	binary.BigEndian.PutUint32(b[64:], ^sum)
	return b
}

// isoImage is the first 34 KiB of an ISO 9660 image with a primary volume
// descriptor labelled label.
func isoImage(label string) []byte {
	b := make([]byte, 0x8000+2048)
	b[0x8000] = 1
	copy(b[0x8001:], "CD001")
	b[0x8006] = 1
	copy(b[0x8028:], label+strings.Repeat(" ", 32-len(label)))
	return b
}

func udfImage() []byte {
	b := make([]byte, 0x8000+3*2048)
	copy(b[0x8001:], "BEA01")
	copy(b[0x8801:], "NSR03")
	copy(b[0x9001:], "TEA01")
	return b
}

func mbrDisk(n int) []byte {
	b := make([]byte, n)
	b[510], b[511] = 0x55, 0xaa
	return b
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// maxAllocs bounds the allocations of one Detect call (the Detail string
// and its fmt arguments).
const maxAllocs = 20

// detectTest is one Detect case.
type detectTest struct {
	name       string
	head, tail []byte
	fileSize   int64
	want       Result // Detail is checked with strings.Contains
}

// detectTests are crafted inputs for every format, size field and
// truncation.
func detectTests() []detectTest {
	fixed := concat(mbrDisk(4096), vhdFooter(2, 4096))
	dynamic := concat(vhdFooter(3, 20<<30), make([]byte, 1024))
	footer511 := vhdFooter(2, 1<<20)[:511]
	badSum := vhdFooter(3, 1<<30)
	badSum[64] ^= 0xff
	qcow2Backing := qcowHeader(3, 1<<30)
	binary.BigEndian.PutUint64(qcow2Backing[8:], 0x200)
	qcow2LUKS := qcowHeader(3, 1<<30)
	binary.BigEndian.PutUint32(qcow2LUKS[32:], 2)
	descriptor := []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n\n" +
		"# Extent description\nRW 4192256 SPARSE \"disk-s001.vmdk\"\nRW 2048 SPARSE \"disk-s002.vmdk\"\n\n" +
		"# The Disk Data Base\n#DDB\nddb.virtualHWVersion = \"4\"\n")
	embedded := "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicSparse\"\nRW 2097152 SPARSE \"d.vmdk\"\n"
	qemuStyle := []byte("# comment\n   \r\nversion=1\r\nCID=1\ncreateType=\"monolithicFlat\"\nRDONLY 2097152 FLAT \"d-flat.vmdk\" 0\n")

	return []detectTest{
		// QCOW2 and QCOW.
		{"qcow2 v3", qcowHeader(3, 20<<30), nil, 196 * kib,
			Result{QCOW2, 20 * gib, "QCOW2 version 3, virtual size 20 GiB"}},
		{"qcow2 v2", qcowHeader(2, 1<<20), nil, 196 * kib,
			Result{QCOW2, mib, "QCOW2 version 2, virtual size 1 MiB"}},
		{"qcow2 odd size", qcowHeader(3, 1<<30+512), nil, 196 * kib,
			Result{QCOW2, gib + 512, "virtual size 1.0 GiB (1073742336 bytes)"}},
		{"qcow2 backing file", qcow2Backing, nil, 196 * kib,
			Result{QCOW2, gib, "with a backing file"}},
		{"qcow2 luks", qcow2LUKS, nil, 196 * kib,
			Result{QCOW2, gib, "LUKS-encrypted"}},
		{"qcow v1", qcowHeader(1, 64<<20), nil, 4 * kib,
			Result{QCOW, 64 * mib, "QCOW version 1, virtual size 64 MiB"}},
		{"qcow unknown version", qcowHeader(9, 1<<30), nil, 4 * kib,
			Result{QCOW2, 0, "unknown version 9"}},
		{"qcow2 size zero", qcowHeader(3, 0), nil, 196 * kib,
			Result{QCOW2, 0, "virtual size unknown"}},
		{"qcow2 size 64 TiB", qcowHeader(3, 64<<40), nil, 196 * kib,
			Result{QCOW2, 64 * tib, "virtual size 64 TiB"}},
		{"qcow2 size absurd", qcowHeader(3, 64<<40+1), nil, 196 * kib,
			Result{QCOW2, 0, "virtual size unknown"}},
		{"qcow2 magic only", []byte("QFI\xfb"), nil, 4,
			Result{QCOW2, 0, "truncated"}},
		{"qcow2 truncated before size", qcowHeader(3, 1<<30)[:30], nil, 30,
			Result{QCOW2, 0, "QCOW2 version 3, virtual size unknown"}},

		// QED.
		{"qed", qedHeader(10<<30, 0), nil, 320 * kib,
			Result{QED, 10 * gib, "QED, virtual size 10 GiB"}},
		{"qed backing file", qedHeader(1<<30, 1), nil, 320 * kib,
			Result{QED, gib, "with a backing file"}},
		{"qed truncated", qedHeader(1<<30, 0)[:50], nil, 50,
			Result{QED, 0, "virtual size unknown"}},

		// VHDX.
		{"vhdx", vhdxHeader("QEMU v7.2"), nil, 4 * mib,
			Result{VHDX, 0, `VHDX created by "QEMU v7.2", virtual size not in the first 64 KiB`}},
		{"vhdx signature only", []byte("vhdxfile"), nil, 8,
			Result{VHDX, 0, "VHDX, virtual size not in the first 64 KiB"}},

		// VMDK.
		{"vmdk monolithicSparse", vmdk4Header(2097152, 3, 1, embedded), nil, 128 * kib,
			Result{VMDK, gib, `VMDK sparse extent version 1, virtual size 1 GiB (createType "monolithicSparse")`}},
		{"vmdk streamOptimized", vmdk4Header(41943040, 3|1<<16|1<<17, 1, "# Disk DescriptorFile\n"), nil, 128 * kib,
			Result{VMDK, 20 * gib, "VMDK streamOptimized extent version 1, virtual size 20 GiB"}},
		{"vmdk split extent without descriptor", vmdk4Header(4192256, 3, 0, ""), nil, 128 * kib,
			Result{VMDK, 4192256 * 512, "virtual size 2.0 GiB (2146435072 bytes); no embedded descriptor, so this may be one extent of a split disk"}},
		{"vmdk split extent with empty descriptor area", vmdk4Header(4192256, 3, 1, ""), nil, 128 * kib,
			Result{VMDK, 4192256 * 512, "one extent of a split disk"}},
		{"vmdk descriptor beyond head", vmdk4Header(2097152, 3, 1<<40, ""), nil, 128 * kib,
			Result{VMDK, gib, "VMDK sparse extent version 1, virtual size 1 GiB"}},
		{"vmdk descriptor cut by head", vmdk4Header(2097152, 3, 1, embedded)[:1024], nil, 128 * kib,
			Result{VMDK, gib, `(createType "monolithicSparse")`}},
		{"vmdk capacity absurd", vmdk4Header(1<<60, 3, 1, embedded), nil, 128 * kib,
			Result{VMDK, 0, "virtual size unknown"}},
		{"vmdk truncated", vmdk4Header(2097152, 3, 1, embedded)[:16], nil, 16,
			Result{VMDK, 0, "virtual size unknown"}},
		{"vmdk cowd", vmdk3Header(204800), nil, 64 * kib,
			Result{VMDK, 100 * mib, `VMDK "COWD" sparse extent`}},
		{"vmdk descriptor", descriptor, nil, int64(len(descriptor)),
			Result{VMDK, (4192256 + 2048) * 512, `VMDK text descriptor (createType "twoGbMaxExtentSparse") with 2 extents`}},
		{"vmdk descriptor qemu probe", qemuStyle, nil, int64(len(qemuStyle)),
			Result{VMDK, gib, `(createType "monolithicFlat") with 1 extent, virtual size 1 GiB`}},
		{"vmdk descriptor cut mid-line", []byte("# Disk DescriptorFile\nversion=1\nRW 4192256 SPARSE \"a.vmdk\"\nRW 20"),
			nil, 100 * kib, Result{VMDK, 4192256 * 512, "with 1 extent"}},
		{"vmdk descriptor version line only", []byte("version=1\n"), nil, 10,
			Result{VMDK, 0, "with 0 extents, virtual size unknown"}},
		{"vmdk descriptor bad size", []byte("# Disk DescriptorFile\nRW 12x SPARSE \"a.vmdk\"\nRW 99999999999999999999 SPARSE \"b.vmdk\"\n"), nil, 100,
			Result{VMDK, 0, "with 0 extents"}},
		{"vmdk descriptor absurd sum", []byte("# Disk DescriptorFile\nRW 137438953472 FLAT \"a\"\nRW 1 FLAT \"b\"\n"), nil, 100,
			Result{VMDK, 0, "with 2 extents, virtual size unknown"}},

		// VDI.
		{"vdi 1.1", vdiHeader(1, 1, 0x190, 8<<30), nil, 2 * mib,
			Result{VDI, 8 * gib, "VDI version 1.1 (dynamic), virtual size 8 GiB"}},
		{"vdi 1.1 short header", vdiHeader(1, 1, 0x100, 8<<30), nil, 2 * mib,
			Result{VDI, 0, "short header"}},
		{"vdi 0.0", vdiHeader(0, 0, 0, 1<<30), nil, 2 * mib,
			Result{VDI, gib, "VDI version 0.0 (dynamic), virtual size 1 GiB"}},
		{"vdi unknown version", vdiHeader(2, 0, 0x190, 1<<30), nil, 2 * mib,
			Result{VDI, 0, "unknown version 2.0"}},
		{"vdi truncated after signature", vdiHeader(1, 1, 0x190, 1<<30)[:0x44], nil, 0x44,
			Result{VDI, 0, "truncated"}},
		{"vdi truncated before size", vdiHeader(1, 1, 0x190, 1<<30)[:0x171], nil, 0x171,
			Result{VDI, 0, "virtual size unknown"}},

		// VHD.
		{"vhd fixed from tail only", fixed[:4096], fixed[len(fixed)-512:], int64(len(fixed)),
			Result{VHD, 4096, "VHD fixed, virtual size 4 KiB"}},
		{"vhd fixed head is whole file", fixed, nil, int64(len(fixed)),
			Result{VHD, 4096, "VHD fixed"}},
		{"vhd dynamic from head copy", dynamic, nil, 100 * mib,
			Result{VHD, 20 * gib, "VHD dynamic, virtual size 20 GiB (from the footer copy at the start of the file)"}},
		{"vhd dynamic truncated", dynamic, make([]byte, 512), 100 * mib,
			Result{VHD, 20 * gib, "the file may be truncated"}},
		{"vhd dynamic from tail", make([]byte, 1024), vhdFooter(3, 1<<30), 100 * mib,
			Result{VHD, gib, "VHD dynamic, virtual size 1 GiB"}},
		{"vhd differencing", vhdFooter(4, 1<<30), vhdFooter(4, 1<<30), 100 * mib,
			Result{VHD, gib, "VHD differencing"}},
		{"vhd 511-byte footer", make([]byte, 1024), concat(make([]byte, 1), footer511), 1<<20 + 511,
			Result{VHD, mib, "511-byte footer"}},
		{"vhd long tail", make([]byte, 1024), concat(make([]byte, 4096), vhdFooter(2, 1<<20)), 1<<20 + 512,
			Result{VHD, mib, "VHD fixed"}},
		{"vhd checksum mismatch", make([]byte, 1024), badSum, 100 * mib,
			Result{VHD, gib, "footer checksum mismatch"}},
		{"vhd footer truncated", []byte("conectix"), nil, 100 * mib,
			Result{VHD, 0, "VHD, virtual size unknown"}},
		{"vhd size absurd", make([]byte, 1024), vhdFooter(2, 1<<62), 100 * mib,
			Result{VHD, 0, "virtual size unknown"}},

		// ISO 9660 and UDF.
		{"iso", isoImage("UBUNTU 24.04"), nil, 700 * mib,
			Result{ISO, 700 * mib, `ISO 9660 image (volume "UBUNTU 24.04"), size 700 MiB`}},
		{"iso behind mbr", concat(mbrDisk(512), isoImage("X")[512:]), nil, 4 * gib,
			Result{ISO, 4 * gib, "ISO 9660 image"}},
		{"udf", udfImage(), nil, 8 * gib,
			Result{ISO, 8 * gib, "UDF image, size 8 GiB"}},
		{"iso truncated before identifier", isoImage("X")[:0x8003], nil, 700 * mib,
			Result{RAW, 700 * mib, "no known header: raw data"}},
		{"iso unknown size", isoImage("X"), nil, -1,
			Result{ISO, 0, "ISO 9660"}},

		// Raw.
		{"raw zeros", make([]byte, HeadSize), make([]byte, TailSize), 10 * gib,
			Result{RAW, 10 * gib, "no known header: raw data"}},
		{"raw mbr", mbrDisk(HeadSize), nil, 2 * gib,
			Result{RAW, 2 * gib, "no known header: raw data (looks like a disk with an MBR boot sector)"}},
		{"raw gpt", concat(mbrDisk(512), []byte("EFI PART")), nil, 2 * gib,
			Result{RAW, 2 * gib, "GPT partition table"}},
		{"raw gzip", []byte("\x1f\x8b\x08\x00"), nil, 1000,
			Result{RAW, 1000, "gzip-compressed data"}},
		{"raw empty", nil, nil, 0,
			Result{RAW, 0, "no known header: raw data (empty)"}},
		{"raw unknown size", []byte("hello"), nil, -5,
			Result{RAW, 0, "raw data"}},
		{"raw absurd size", []byte("hello"), nil, 1 << 62,
			Result{RAW, 0, "raw data"}},
		{"raw short conectix", []byte("conecti"), []byte("conecti"), 7,
			Result{RAW, 7, "raw data"}},
		{"raw text", []byte("version=4\n"), nil, 10,
			Result{RAW, 10, "no known header: raw data"}},
		{"raw comment then blank line", []byte("# hello\n\nversion=1\n"), nil, 21,
			Result{RAW, 21, "raw data"}},
	}
}

func TestDetect(t *testing.T) {
	t.Parallel()
	for _, tt := range detectTests() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Detect(tt.head, tt.tail, tt.fileSize)
			if got.Format != tt.want.Format || got.VirtualSize != tt.want.VirtualSize || !strings.Contains(got.Detail, tt.want.Detail) {
				t.Errorf("Detect(%s) = %+v, want %+v (Detail containing the want)", tt.name, got, tt.want)
			}
		})
	}
}

// TestDetectAllocs checks that Detect allocates only for Detail, a small
// constant number of times whatever the input. AllocsPerRun cannot run in
// a parallel test.
func TestDetectAllocs(t *testing.T) {
	for _, tt := range detectTests() {
		if allocs := testing.AllocsPerRun(5, func() { Detect(tt.head, tt.tail, tt.fileSize) }); allocs > maxAllocs {
			t.Errorf("Detect(%s) allocates %v times, want at most %d", tt.name, allocs, maxAllocs)
		}
	}
}

// TestDetectHeadBeyondHeadSize checks that bytes past HeadSize are ignored:
// an ISO identifier there does not count.
func TestDetectHeadBeyondHeadSize(t *testing.T) {
	t.Parallel()
	head := make([]byte, HeadSize+0x9000)
	copy(head[HeadSize+0x8001:], "CD001")
	got := Detect(head, make([]byte, TailSize), 10*gib)
	if got.Format != RAW {
		t.Errorf("Detect(ISO identifier past HeadSize) = %+v, want format %q", got, RAW)
	}
}

func TestFormatSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 bytes"},
		{512, "512 bytes"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB (1536 bytes)"},
		{20 * gib, "20 GiB"},
		{3 * tib, "3 TiB"},
	}
	for _, tt := range tests {
		if got := formatSize(tt.n); got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestContradicts(t *testing.T) {
	t.Parallel()

	var (
		qcow2 = Result{QCOW2, 20 * gib, "QCOW2 version 3, virtual size 20 GiB"}
		qcow1 = Result{QCOW, gib, "QCOW version 1, virtual size 1 GiB"}
		vhd   = Result{VHD, gib, "VHD dynamic, virtual size 1 GiB"}
		vhdx  = Result{VHDX, 0, "VHDX, virtual size not in the first 64 KiB"}
		vmdk  = Result{VMDK, gib, "VMDK sparse extent version 1, virtual size 1 GiB"}
		desc  = Result{VMDK, gib, `VMDK text descriptor (createType "monolithicFlat") with 1 extent`}
		cowd  = Result{VMDK, gib, `VMDK "COWD" sparse extent (VMware 3), virtual size 1 GiB`}
		vdi   = Result{VDI, gib, "VDI version 1.1 (dynamic), virtual size 1 GiB"}
		qed   = Result{QED, gib, "QED, virtual size 1 GiB"}
		iso   = Result{ISO, gib, "ISO 9660 image, size 1 GiB"}
		udf   = Result{ISO, gib, "UDF image, size 1 GiB"}
		raw   = Result{RAW, gib, "no known header: raw data"}
		gz    = Result{RAW, gib, "no known header: raw data (looks like gzip-compressed data)"}
	)
	tests := []struct {
		ext     string
		r       Result
		want    bool
		wantMsg string
	}{
		// Container extensions must match.
		{"qcow2", qcow2, false, ""},
		{".QCOW2", qcow2, false, ""},
		{"qcow2", vhd, true, `the file is named .qcow2 but its content is VHD (a VHD footer "conectix")`},
		{"qcow2", raw, true, "the file is named .qcow2 but has no QCOW2 header, the content looks like raw data"},
		{"qcow2", gz, true, "the file is named .qcow2 but has no QCOW2 header, the content looks like raw data (looks like gzip-compressed data)"},
		{"qcow2", Result{}, true, "the file is named .qcow2 but has no QCOW2 header, the content looks like raw data"},
		{"qcow2", qcow1, true, `the file is named .qcow2 but its content is QCOW (a QCOW version 1 header "QFI\xfb")`},
		{"qcow2", iso, true, `the file is named .qcow2 but its content is ISO 9660 (an ISO 9660 volume descriptor "CD001" at 32 KiB)`},
		{"qcow", qcow1, false, ""},
		{"qcow", qcow2, true, `the file is named .qcow but its content is QCOW2 (a QCOW2 header "QFI\xfb")`},
		{"qcow", raw, true, "the file is named .qcow but has no QCOW header, the content looks like raw data"},
		{"vhd", vhd, false, ""},
		{"vhd", vhdx, true, `the file is named .vhd but its content is VHDX (a VHDX file identifier "vhdxfile")`},
		{"vhd", raw, true, "the file is named .vhd but has no VHD footer, the content looks like raw data"},
		{"vhdx", vhdx, false, ""},
		{"vhdx", vhd, true, `the file is named .vhdx but its content is VHD (a VHD footer "conectix")`},
		{"vhdx", raw, true, "the file is named .vhdx but has no VHDX header, the content looks like raw data"},
		{"vmdk", vmdk, false, ""},
		{"vmdk", desc, false, ""},
		{"vmdk", qcow2, true, `the file is named .vmdk but its content is QCOW2 (a QCOW2 header "QFI\xfb")`},
		{"vmdk", raw, true, "the file is named .vmdk but has no VMDK header, the content looks like raw data"},
		{"vdi", vdi, false, ""},
		{"vdi", vmdk, true, `the file is named .vdi but its content is VMDK (a VMDK header "KDMV")`},
		{"vdi", raw, true, "the file is named .vdi but has no VDI header, the content looks like raw data"},
		{"qed", qed, false, ""},
		{"qed", vdi, true, "the file is named .qed but its content is VDI (a VDI signature 0xbeda107f at byte 64)"},
		{"qed", raw, true, "the file is named .qed but has no QED header, the content looks like raw data"},
		{"iso", iso, false, ""},
		{"iso", udf, false, ""},
		{"iso", raw, true, "the file is named .iso but has no ISO 9660 volume descriptor, the content looks like raw data"},
		{"iso", qed, true, `the file is named .iso but its content is QED (a QED header "QED\x00")`},
		{"vmdk", udf, true, "the file is named .vmdk but its content is ISO 9660 (a UDF volume recognition sequence at 32 KiB)"},

		// raw and img contradict only container formats.
		{"raw", raw, false, ""},
		{"raw", gz, false, ""},
		{"raw", iso, false, ""},
		{"raw", qcow2, true, `the file is named .raw but its content is QCOW2 (a QCOW2 header "QFI\xfb")`},
		{"img", raw, false, ""},
		{"IMG", iso, false, ""},
		{"img", desc, true, "the file is named .img but its content is VMDK (a VMDK text descriptor)"},
		{"img", cowd, true, `the file is named .img but its content is VMDK (a VMDK header "COWD")`},
		{"img", vhd, true, `the file is named .img but its content is VHD (a VHD footer "conectix")`},

		// zvhd and zvhd2 contradict only known container formats.
		{"zvhd", raw, false, ""},
		{"zvhd", iso, false, ""},
		{"zvhd", vhd, true, `the file is named .zvhd but its content is VHD (a VHD footer "conectix")`},
		{"zvhd2", raw, false, ""},
		{"zvhd2", qcow2, true, `the file is named .zvhd2 but its content is QCOW2 (a QCOW2 header "QFI\xfb")`},
		{"zvhd2", vhdx, true, `the file is named .zvhd2 but its content is VHDX (a VHDX file identifier "vhdxfile")`},

		// Other extensions never contradict.
		{"", qcow2, false, ""},
		{"bin", vhd, false, ""},
		{"gz", raw, false, ""},
		{"ova", vmdk, false, ""},
	}
	for _, tt := range tests {
		got, gotMsg := Contradicts(tt.ext, tt.r)
		if got != tt.want || gotMsg != tt.wantMsg {
			t.Errorf("Contradicts(%q, %s) = %v, %q, want %v, %q", tt.ext, tt.r.Format, got, gotMsg, tt.want, tt.wantMsg)
		}
	}
}

// validFormats are the formats Detect may return.
var validFormats = map[string]bool{QCOW2: true, QCOW: true, VHD: true, VHDX: true, VMDK: true, VDI: true, QED: true, ISO: true, RAW: true}

func FuzzDetect(f *testing.F) {
	seeds := [][]byte{
		qcowHeader(3, 20<<30), qcowHeader(1, 1<<20), qedHeader(1<<30, 1), vhdxHeader("QEMU"),
		vmdk4Header(2097152, 3, 1, "createType=\"x\"\n"), vmdk3Header(2048), vdiHeader(1, 1, 0x190, 1<<30), vdiHeader(0, 0, 0, 1<<30),
		vhdFooter(3, 1<<30), []byte("# Disk DescriptorFile\nRW 2048 FLAT \"x\" 0\n"), []byte("#\n version=2\n"),
		isoImage("LABEL"), udfImage(), mbrDisk(1024), nil,
	}
	for _, s := range seeds {
		f.Add(s, vhdFooter(2, 1<<20), int64(len(s)))
		f.Add(s, []byte(nil), int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, head, tail []byte, fileSize int64) {
		r := Detect(head, tail, fileSize)
		if !validFormats[r.Format] {
			t.Fatalf("Detect() format = %q, want one of the constants", r.Format)
		}
		if r.VirtualSize < 0 || r.VirtualSize > maxVirtualSize {
			t.Fatalf("Detect() virtual size = %d, want 0..%d", r.VirtualSize, int64(maxVirtualSize))
		}
		if r.Detail == "" {
			t.Fatalf("Detect() detail is empty")
		}
		for _, ext := range []string{QCOW2, VHD, ISO, RAW, "zvhd2", "txt"} {
			if c, msg := Contradicts(ext, r); c != (msg != "") {
				t.Fatalf("Contradicts(%q, %+v) = %v, %q: a contradiction needs a sentence", ext, r, c, msg)
			}
		}
	})
}
