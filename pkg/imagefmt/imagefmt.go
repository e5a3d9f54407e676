// Package imagefmt recognises VM disk image formats from their bytes: the
// first [HeadSize] and the last [TailSize] bytes of a file are enough to tell
// QCOW2, QCOW, VHD, VHDX, VMDK, VDI, QED and ISO 9660 images from raw data
// and, where the header carries it, to read the size of the virtual disk
// inside the file.
//
// It exists so that an import can refuse, before it starts, a file whose name
// claims one format while its content is another: [Detect] reads the bytes,
// [Contradicts] compares the result with the file's extension. The package
// does no I/O; callers read the bytes and pass them in.
//
// The offsets come from the format specifications and from QEMU's block
// drivers (block/qcow.c, block/qcow2.h, block/vpc.c, block/vhdx.h,
// block/vmdk.c, block/vdi.c, block/qed.h); each parser cites its source.
package imagefmt

import (
	"bytes"
	"fmt"
)

// Format names, as imsflow names formats (file extensions in lower case).
const (
	QCOW2 = "qcow2"
	QCOW  = "qcow"
	VHD   = "vhd"
	VHDX  = "vhdx"
	VMDK  = "vmdk"
	VDI   = "vdi"
	QED   = "qed"
	ISO   = "iso"
	RAW   = "raw"
)

// HeadSize and TailSize are how many bytes Detect wants from the start and
// the end of a file.
const (
	HeadSize = 64 << 10 // enough for the ISO 9660 volume descriptor at 32 KiB
	TailSize = 512      // the VHD footer
)

// maxVirtualSize is the largest virtual size Detect believes: 64 TiB, the
// VHDX maximum and well above what VHD (2 TiB), VDI or VMDK allow. A larger
// value in a header is garbage and is reported as 0.
const maxVirtualSize = 64 << 40

// Result is what the bytes say.
type Result struct {
	Format string // one of the constants; RAW when no known signature is found
	// VirtualSize is the size in bytes of the disk inside the file, when the
	// header carries it (0 when unknown).
	VirtualSize int64
	// Detail is a short human description, e.g. "QCOW2 version 3, virtual
	// size 20 GiB" or "no known header: raw data".
	Detail string
}

// Detect recognises the format from head (the first bytes of the file, up to
// HeadSize) and tail (the last bytes, up to TailSize; may be nil) of a file of
// fileSize bytes. It never panics on any input and never allocates more than
// a small constant amount beyond its inputs.
//
// Signatures at the start of the file win over the VHD footer at its end,
// which wins over the ISO 9660 and VMDK descriptor checks; anything else is
// [RAW], whose virtual size is fileSize. When tail is nil and head holds the
// whole file (len(head) == fileSize), the end of head serves as tail. Bytes
// beyond HeadSize in head and before the last TailSize bytes of tail are
// ignored. Detect does not check that fileSize agrees with head and tail; a
// negative fileSize counts as unknown.
func Detect(head, tail []byte, fileSize int64) Result {
	if tail == nil && fileSize > 0 && int64(len(head)) == fileSize {
		tail = head[max(0, len(head)-TailSize):]
	}
	if len(head) > HeadSize {
		head = head[:HeadSize]
	}
	if len(tail) > TailSize {
		tail = tail[len(tail)-TailSize:]
	}

	switch {
	case bytes.HasPrefix(head, qcowMagic):
		return detectQCOW(head)
	case bytes.HasPrefix(head, qedMagic):
		return detectQED(head)
	case bytes.HasPrefix(head, vhdxSignature):
		return detectVHDX(head)
	case bytes.HasPrefix(head, vmdk4Magic):
		return detectVMDK4(head)
	case bytes.HasPrefix(head, vmdk3Magic):
		return detectVMDK3(head)
	case isVDI(head):
		return detectVDI(head)
	}
	if r, ok := detectVHD(head, tail); ok {
		return r
	}
	if r, ok := detectISO(head, fileSize); ok {
		return r
	}
	if r, ok := detectVMDKDescriptor(head, fileSize); ok {
		return r
	}
	return detectRaw(head, fileSize)
}

// sane returns v as a virtual size, or 0 when v is 0 or beyond
// maxVirtualSize.
func sane(v uint64) int64 {
	if v == 0 || v > maxVirtualSize {
		return 0
	}
	return int64(v)
}

// saneSectors returns n 512-byte sectors as a virtual size, or 0 when the
// result is 0 or beyond maxVirtualSize (which also keeps n*512 from
// overflowing).
func saneSectors(n uint64) int64 {
	if n > maxVirtualSize/512 {
		return 0
	}
	return sane(n * 512)
}

// sizeUnits are the binary units formatSize uses, largest first.
var sizeUnits = [...]struct {
	shift uint
	name  string
}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}}

// formatSize renders n bytes for a person: "20 GiB", "1.5 GiB (1610612736
// bytes)", "512 bytes".
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		unit := int64(1) << u.shift
		if n < unit {
			continue
		}
		if n%unit == 0 {
			return fmt.Sprintf("%d %s", n/unit, u.name)
		}
		return fmt.Sprintf("%.1f %s (%d bytes)", float64(n)/float64(unit), u.name, n)
	}
	return fmt.Sprintf("%d bytes", n)
}

// virtualSize is the Detail phrase for a virtual size.
func virtualSize(n int64) string {
	if n == 0 {
		return "virtual size unknown"
	}
	return "virtual size " + formatSize(n)
}
