package imagefmt

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Field readers: each returns ok false when b is too short for the field, so
// a truncated header never panics.

func be32(b []byte, off int) (uint32, bool) {
	if off < 0 || len(b) < off+4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[off:]), true
}

func be64(b []byte, off int) (uint64, bool) {
	if off < 0 || len(b) < off+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[off:]), true
}

func le32(b []byte, off int) (uint32, bool) {
	if off < 0 || len(b) < off+4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[off:]), true
}

func le64(b []byte, off int) (uint64, bool) {
	if off < 0 || len(b) < off+8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[off:]), true
}

// hasAt reports whether b holds sig at offset off.
func hasAt(b []byte, off int, sig string) bool {
	return off >= 0 && len(b) >= off+len(sig) && string(b[off:off+len(sig)]) == sig
}

// ---- QCOW and QCOW2 ----
//
// QEMU block/qcow2.h, struct QCowHeader (all big-endian):
//
//	0  uint32 magic "QFI\xfb"   4  uint32 version (2 or 3)
//	8  uint64 backing_file_offset   16 uint32 backing_file_size
//	20 uint32 cluster_bits     24 uint64 size (bytes)   32 uint32 crypt_method
//
// QEMU block/qcow.c, struct QCowHeader (version 1) shares magic, version,
// backing_file_offset and size at the same offsets (20 is mtime there).
// crypt_method values (block/qcow2.h): 0 none, 1 AES, 2 LUKS.

var qcowMagic = []byte("QFI\xfb")

func detectQCOW(head []byte) Result {
	version, ok := be32(head, 4)
	if !ok {
		return Result{Format: QCOW2, Detail: "QCOW header truncated before its version"}
	}
	var name, format string
	switch version {
	case 1:
		name, format = "QCOW", QCOW
	case 2, 3:
		name, format = "QCOW2", QCOW2
	default:
		return Result{Format: QCOW2, Detail: fmt.Sprintf("QCOW header with unknown version %d", version)}
	}
	var size int64
	if v, ok := be64(head, 24); ok {
		size = sane(v)
	}
	extra := ""
	if off, ok := be64(head, 8); ok && off != 0 {
		extra += ", with a backing file"
	}
	if format == QCOW2 {
		if crypt, ok := be32(head, 32); ok {
			switch crypt {
			case 0:
			case 1:
				extra += ", AES-encrypted"
			case 2:
				extra += ", LUKS-encrypted"
			default:
				extra += fmt.Sprintf(", unknown encryption %d", crypt)
			}
		}
	}
	return Result{
		Format:      format,
		VirtualSize: size,
		Detail:      fmt.Sprintf("%s version %d, %s%s", name, version, virtualSize(size), extra),
	}
}

// ---- QED ----
//
// QEMU block/qed.h, struct QEDHeader (all little-endian):
//
//	0  uint32 magic "QED\0"   4 uint32 cluster_size   8 uint32 table_size
//	12 uint32 header_size     16 uint64 features      24 uint64 compat_features
//	32 uint64 autoclear_features   40 uint64 l1_table_offset
//	48 uint64 image_size (bytes)
//
// features bit 0 is QED_F_BACKING_FILE.

var qedMagic = []byte("QED\x00")

func detectQED(head []byte) Result {
	var size int64
	if v, ok := le64(head, 48); ok {
		size = sane(v)
	}
	extra := ""
	if f, ok := le64(head, 16); ok && f&1 != 0 {
		extra = ", with a backing file"
	}
	return Result{Format: QED, VirtualSize: size, Detail: "QED, " + virtualSize(size) + extra}
}

// ---- VHDX ----
//
// QEMU block/vhdx.h after the VHDX Format Specification v1.00: the file
// identifier at offset 0 is the ASCII signature "vhdxfile" followed by an
// optional UTF-16LE creator string of up to 256 code units. The headers sit
// at 64 KiB and 128 KiB, the region table at 192 KiB, and the virtual disk
// size lives in the metadata region, which the region table places at 1 MiB
// or beyond: all past HeadSize, so VirtualSize stays 0.

var vhdxSignature = []byte("vhdxfile")

func detectVHDX(head []byte) Result {
	const creatorOff, creatorUnits = 8, 256
	var creator [64]byte
	n := 0
	for i := range creatorUnits {
		off := creatorOff + 2*i
		if off+2 > len(head) || n == len(creator) {
			break
		}
		u := binary.LittleEndian.Uint16(head[off:])
		if u == 0 {
			break
		}
		if u < 0x20 || u > 0x7e {
			u = '?'
		}
		creator[n] = byte(u)
		n++
	}
	detail := "VHDX, virtual size not in the first 64 KiB (it is in the metadata region)"
	if n > 0 {
		detail = fmt.Sprintf("VHDX created by %q, virtual size not in the first 64 KiB (it is in the metadata region)", creator[:n])
	}
	return Result{Format: VHDX, Detail: detail}
}

// ---- VMDK ----
//
// QEMU block/vmdk.c: VMDK4_MAGIC is ('K'<<24)|('D'<<16)|('M'<<8)|'V' read
// big-endian, i.e. the bytes "KDMV" (uint32 LE 0x564d444b), followed by the
// packed little-endian VMDK4Header:
//
//	4  uint32 version   8 uint32 flags   12 uint64 capacity (512-byte sectors)
//	20 uint64 granularity   28 uint64 desc_offset (sectors)   36 uint64 desc_size
//
// flags bit 16 is VMDK4_FLAG_COMPRESS (streamOptimized). VMDK3_MAGIC "COWD"
// is followed by the little-endian VMDK3Header: 4 uint32 version, 8 uint32
// flags, 12 uint32 disk_sectors.

var (
	vmdk4Magic = []byte("KDMV")
	vmdk3Magic = []byte("COWD")
)

func detectVMDK4(head []byte) Result {
	var size int64
	if v, ok := le64(head, 12); ok {
		size = saneSectors(v)
	}
	kind := "sparse"
	if flags, ok := le32(head, 8); ok && flags&(1<<16) != 0 {
		kind = "streamOptimized"
	}
	version := ""
	if v, ok := le32(head, 4); ok {
		version = fmt.Sprintf(" version %d", v)
	}
	extra := ""
	if desc, ok := embeddedDescriptor(head); ok {
		if len(desc) == 0 {
			extra = "; no embedded descriptor, so this may be one extent of a split disk"
		} else if ct := createType(desc); len(ct) > 0 {
			extra = fmt.Sprintf(" (createType %q)", ct)
		}
	}
	return Result{
		Format:      VMDK,
		VirtualSize: size,
		Detail:      fmt.Sprintf("VMDK %s extent%s, %s%s", kind, version, virtualSize(size), extra),
	}
}

// embeddedDescriptor returns the descriptor text a VMDK4 sparse extent
// embeds at desc_offset (desc_size sectors), empty when the extent has none
// (desc_offset or desc_size 0, as VMware's split extents, or a zero-filled
// area, as QEMU writes in twoGbMaxExtentSparse extents). ok is false when
// the header is truncated or the area lies beyond head.
func embeddedDescriptor(head []byte) (desc []byte, ok bool) {
	off, ok1 := le64(head, 28)
	n, ok2 := le64(head, 36)
	if !ok1 || !ok2 {
		return nil, false
	}
	if off == 0 || n == 0 {
		return nil, true
	}
	if off >= uint64(len(head))/512 {
		return nil, false
	}
	start := int(off) * 512
	end := len(head)
	if n < uint64(len(head))/512 {
		end = min(end, start+int(n)*512)
	}
	desc = head[start:end]
	if i := bytes.IndexByte(desc, 0); i >= 0 {
		desc = desc[:i]
	}
	return desc, true
}

func detectVMDK3(head []byte) Result {
	var size int64
	if v, ok := le32(head, 12); ok {
		size = saneSectors(uint64(v))
	}
	return Result{Format: VMDK, VirtualSize: size, Detail: `VMDK "COWD" sparse extent (VMware 3), ` + virtualSize(size)}
}

// descriptorStart is how VMware text descriptors begin.
const descriptorStart = "# Disk DescriptorFile"

// isVMDKDescriptor reports whether text is a VMDK text descriptor: it starts
// with descriptorStart or, as QEMU's vmdk_probe accepts, its first line that
// is neither a '#' comment nor blank is "version=1", "version=2" or
// "version=3".
func isVMDKDescriptor(text []byte) bool {
	if bytes.HasPrefix(text, []byte(descriptorStart)) {
		return true
	}
	for len(text) > 0 {
		line, rest, found := bytes.Cut(text, []byte("\n"))
		if !found {
			return false // the version line must end in a newline
		}
		text = rest
		switch {
		case len(line) == 0:
			return false // an empty line: QEMU accepts only lines of spaces
		case line[0] == '#':
			continue
		case line[0] == ' ':
			if len(bytes.TrimRight(bytes.TrimLeft(line, " "), "\r")) != 0 {
				return false
			}
			continue
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		return len(line) == len("version=1") && hasAt(line, 0, "version=") && line[8] >= '1' && line[8] <= '3'
	}
	return false
}

// detectVMDKDescriptor recognises a VMDK text descriptor and sums the sizes
// of its extent lines ("RW 41943040 SPARSE \"disk-s001.vmdk\"": access mode,
// size in 512-byte sectors, type, file). Only complete lines are read, unless
// head is the whole file.
func detectVMDKDescriptor(head []byte, fileSize int64) (Result, bool) {
	if !isVMDKDescriptor(head) {
		return Result{}, false
	}
	text := head
	if int64(len(head)) != fileSize {
		if i := bytes.LastIndexByte(text, '\n'); i >= 0 {
			text = text[:i+1]
		} else {
			text = nil
		}
	}
	var (
		sectors  uint64
		extents  int
		overflow bool
		ct       []byte
	)
	for len(text) > 0 {
		var line []byte
		line, text, _ = bytes.Cut(text, []byte("\n"))
		line = bytes.TrimSpace(line)
		if v, ok := quotedValue(line, "createType"); ok {
			ct = v
			continue
		}
		n, ok := extentSectors(line)
		if !ok {
			continue
		}
		extents++
		if n > maxVirtualSize/512 || sectors+n > maxVirtualSize/512 {
			overflow = true
			continue
		}
		sectors += n
	}
	var size int64
	if !overflow {
		size = saneSectors(sectors)
	}
	what := "VMDK text descriptor"
	if len(ct) > 0 {
		what += fmt.Sprintf(" (createType %q)", ct)
	}
	plural := "s"
	if extents == 1 {
		plural = ""
	}
	return Result{
		Format:      VMDK,
		VirtualSize: size,
		Detail:      fmt.Sprintf("%s with %d extent%s, %s; the data is in separate extent files", what, extents, plural, virtualSize(size)),
	}, true
}

// extentSectors parses the size of an extent line "ACCESS SECTORS TYPE ...",
// where ACCESS is RW, RDONLY or NOACCESS.
func extentSectors(line []byte) (uint64, bool) {
	access, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return 0, false
	}
	switch string(access) {
	case "RW", "RDONLY", "NOACCESS":
	default:
		return 0, false
	}
	rest = bytes.TrimLeft(rest, " \t")
	var n uint64
	digits := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		if n > (1<<63)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		digits++
	}
	if digits == 0 || (digits < len(rest) && rest[digits] != ' ' && rest[digits] != '\t') {
		return 0, false
	}
	return n, true
}

// createType returns the createType value of a descriptor, nil when it has
// none.
func createType(text []byte) []byte {
	for len(text) > 0 {
		var line []byte
		line, text, _ = bytes.Cut(text, []byte("\n"))
		if v, ok := quotedValue(bytes.TrimSpace(line), "createType"); ok {
			return v
		}
	}
	return nil
}

// quotedValue returns the value of a descriptor line key="value", at most 64
// bytes of it.
func quotedValue(line []byte, key string) ([]byte, bool) {
	if !hasAt(line, 0, key) {
		return nil, false
	}
	rest := bytes.TrimLeft(line[len(key):], " \t")
	if len(rest) == 0 || rest[0] != '=' {
		return nil, false
	}
	rest = bytes.TrimLeft(rest[1:], " \t")
	rest = bytes.TrimPrefix(rest, []byte(`"`))
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		rest = rest[:i]
	}
	return rest[:min(len(rest), 64)], true
}

// ---- VDI ----
//
// QEMU block/vdi.c, struct VdiHeader (all little-endian), after VirtualBox's
// VDICore.h: a 64-byte text pre-header ("<<< ... >>>"), then
//
//	0x40 uint32 signature 0xbeda107f   0x44 uint32 version (major<<16 | minor)
//
// Version 1.x (VDIHEADER1): 0x48 uint32 header_size (VirtualBox requires
// >= sizeof(VDIHEADER1) = 0x180), 0x4c uint32 image_type, 0x50 flags,
// 0x54 description[256], 0x154 offset_bmap, 0x158 offset_data, 0x15c
// geometry (4 x uint32), 0x16c unused, 0x170 uint64 disk_size (bytes).
//
// Version 0.x (VDIHEADER0): 0x48 uint32 image_type, 0x4c flags, 0x50
// comment[256], 0x150 geometry (4 x uint32), 0x160 uint64 disk_size.
//
// image_type: 1 normal (dynamic), 2 fixed, 3 undo, 4 diff.

const vdiSignature = 0xbeda107f

func isVDI(head []byte) bool {
	sig, ok := le32(head, 0x40)
	return ok && sig == vdiSignature
}

func detectVDI(head []byte) Result {
	version, ok := le32(head, 0x44)
	if !ok {
		return Result{Format: VDI, Detail: "VDI header truncated before its version"}
	}
	major, minor := version>>16, version&0xffff
	var typeOff, sizeOff int
	switch major {
	case 0:
		typeOff, sizeOff = 0x48, 0x160
	case 1:
		hs, ok := le32(head, 0x48)
		if !ok {
			return Result{Format: VDI, Detail: fmt.Sprintf("VDI version %d.%d, header truncated", major, minor)}
		}
		if hs < 0x180 {
			return Result{Format: VDI, Detail: fmt.Sprintf("VDI version %d.%d with a short header (%d bytes), virtual size unknown", major, minor, hs)}
		}
		typeOff, sizeOff = 0x4c, 0x170
	default:
		return Result{Format: VDI, Detail: fmt.Sprintf("VDI with unknown version %d.%d, virtual size unknown", major, minor)}
	}
	var size int64
	if v, ok := le64(head, sizeOff); ok {
		size = sane(v)
	}
	kind := ""
	if t, ok := le32(head, typeOff); ok {
		switch t {
		case 1:
			kind = " (dynamic)"
		case 2:
			kind = " (fixed)"
		case 3:
			kind = " (undo)"
		case 4:
			kind = " (differencing)"
		}
	}
	return Result{
		Format:      VDI,
		VirtualSize: size,
		Detail:      fmt.Sprintf("VDI version %d.%d%s, %s", major, minor, kind, virtualSize(size)),
	}
}

// ---- VHD ----
//
// Microsoft "Virtual Hard Disk Image Format Specification" v1.0 (2006),
// "Hard Disk Footer Format", mirrored by QEMU block/vpc.c struct
// vhd_footer (all big-endian):
//
//	0  char[8] cookie "conectix"   8 uint32 features   12 uint32 version
//	16 uint64 data_offset   24 uint32 timestamp   28 char[4] creator_app
//	32 uint32 creator version   36 char[4] creator_os   40 uint64 orig_size
//	48 uint64 current_size (bytes)   56 uint32 geometry (CHS)
//	60 uint32 disk type (2 fixed, 3 dynamic, 4 differencing)
//	64 uint32 checksum (one's complement of the byte sum, checksum excluded)
//
// The footer is the last 512 bytes of the file; dynamic and differencing
// disks also keep a copy at offset 0. The specification notes that Virtual
// PC versions before 2004 wrote a 511-byte footer, so the cookie may start
// 511 bytes before the end.

const vhdCookie = "conectix"

func detectVHD(head, tail []byte) (Result, bool) {
	for _, n := range [...]int{512, 511} {
		if len(tail) < n {
			continue
		}
		if f := tail[len(tail)-n:]; hasAt(f, 0, vhdCookie) {
			note := ""
			if n == 511 {
				note = " (511-byte footer of Virtual PC before 2004)"
			}
			return vhdResult(f, note), true
		}
	}
	if hasAt(head, 0, vhdCookie) {
		note := " (from the footer copy at the start of the file)"
		if len(tail) >= 511 {
			note = " (from the footer copy at the start; no footer at the end, the file may be truncated)"
		}
		return vhdResult(head[:min(len(head), 512)], note), true
	}
	return Result{}, false
}

func vhdResult(footer []byte, note string) Result {
	var size int64
	if v, ok := be64(footer, 48); ok {
		size = sane(v)
	}
	kind := ""
	if t, ok := be32(footer, 60); ok {
		switch t {
		case 2:
			kind = " fixed"
		case 3:
			kind = " dynamic"
		case 4:
			kind = " differencing"
		default:
			kind = fmt.Sprintf(" of unknown type %d", t)
		}
	}
	if want, ok := be32(footer, 64); ok {
		var sum uint32
		for i, c := range footer {
			if i < 64 || i >= 68 {
				sum += uint32(c)
			}
		}
		if ^sum != want {
			note += ", footer checksum mismatch"
		}
	}
	return Result{Format: VHD, VirtualSize: size, Detail: "VHD" + kind + ", " + virtualSize(size) + note}
}

// ---- ISO 9660 and UDF ----
//
// ECMA-119 (ISO 9660) 8.1: volume descriptors start at logical sector 16
// (byte 32768 with 2048-byte sectors); each has a type byte at 0 and the
// standard identifier "CD001" at 1. The primary volume descriptor (type 1)
// holds the volume identifier at bytes 40-71. ECMA-167 (UDF) 2/8.3 puts its
// volume recognition sequence in the same place: "BEA01", then "NSR02" or
// "NSR03" in a following sector. An optical image's size is its file size.

const (
	isoVDOffset   = 16 * 2048
	isoSectorSize = 2048
)

func detectISO(head []byte, fileSize int64) (Result, bool) {
	size := int64(0)
	if fileSize > 0 {
		size = sane(uint64(fileSize))
	}
	if hasAt(head, isoVDOffset+1, "CD001") {
		detail := "ISO 9660 image"
		if head[isoVDOffset] == 1 && len(head) >= isoVDOffset+72 {
			if label := bytes.TrimRight(head[isoVDOffset+40:isoVDOffset+72], " \x00"); len(label) > 0 {
				detail += fmt.Sprintf(" (volume %q)", label)
			}
		}
		return Result{Format: ISO, VirtualSize: size, Detail: detail + ", size " + formatSize(size)}, true
	}
	if hasAt(head, isoVDOffset+1, "BEA01") {
		for off := isoVDOffset + isoSectorSize; off+6 <= len(head); off += isoSectorSize {
			if hasAt(head, off+1, "NSR02") || hasAt(head, off+1, "NSR03") {
				return Result{Format: ISO, VirtualSize: size, Detail: "UDF image, size " + formatSize(size)}, true
			}
		}
	}
	return Result{}, false
}

// ---- raw ----
//
// Raw data has no header; the hints in Detail only help a person see what
// the bytes are (an MBR's 0x55AA at 510, GPT's "EFI PART" at 512, or the
// magic numbers of common archive and compression formats, which suggest the
// file must be unpacked first).

var rawHints = [...]struct {
	off   int
	magic string
	what  string
}{
	{0, "\x1f\x8b", "gzip-compressed data"},
	{0, "\xfd7zXZ\x00", "xz-compressed data"},
	{0, "\x28\xb5\x2f\xfd", "zstd-compressed data"},
	{0, "BZh", "bzip2-compressed data"},
	{0, "PK\x03\x04", "a zip archive"},
	{0, "7z\xbc\xaf\x27\x1c", "a 7-Zip archive"},
	{257, "ustar", "a tar archive"},
	{512, "EFI PART", "a disk with a GPT partition table"},
	{510, "\x55\xaa", "a disk with an MBR boot sector"},
}

func detectRaw(head []byte, fileSize int64) Result {
	size := int64(0)
	if fileSize > 0 {
		size = sane(uint64(fileSize))
	}
	detail := "no known header: raw data"
	if len(head) == 0 {
		detail += " (empty)"
	}
	for _, h := range rawHints {
		if hasAt(head, h.off, h.magic) {
			detail += " (looks like " + h.what + ")"
			break
		}
	}
	return Result{Format: RAW, VirtualSize: size, Detail: detail}
}
