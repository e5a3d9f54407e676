package imagefmt

import (
	"fmt"
	"strings"
)

// Contradicts reports whether content contradicts what a file's extension
// claims, with a sentence naming both for a person, e.g. `the file is named
// .qcow2 but its content is VHD (a VHD footer "conectix")`. The sentence is
// empty when there is no contradiction. ext is matched without a leading dot
// and without regard to case.
//
// Rules:
//   - qcow2, qcow, vhd, vhdx, vmdk, vdi, qed and iso must match the detected
//     format; [RAW] content under these extensions is a contradiction ("no
//     QCOW2 header, the content looks like raw data").
//   - raw and img contradict only when a container format (QCOW2, QCOW, VHD,
//     VHDX, VMDK, VDI or QED) is detected, e.g. a .raw file that is really
//     QCOW2. ISO 9660 content is raw data with a file system and is fine.
//   - zvhd and zvhd2 (Huawei formats without a public header) contradict
//     only when one of the container formats is detected.
//   - any other extension never contradicts.
func Contradicts(ext string, r Result) (bool, string) {
	e := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(ext), "."))
	switch e {
	case QCOW2, QCOW, VHD, VHDX, VMDK, VDI, QED, ISO:
		if r.Format == e {
			return false, ""
		}
		if !isContainer(r.Format) && r.Format != ISO {
			return true, fmt.Sprintf("the file is named .%s but has no %s, the content looks like %s",
				e, missingPhrase(e), rawPhrase(r))
		}
		return true, fmt.Sprintf("the file is named .%s but its content is %s (%s)", e, formatName(r.Format), evidence(r))
	case RAW, "img", "zvhd", "zvhd2":
		if isContainer(r.Format) {
			return true, fmt.Sprintf("the file is named .%s but its content is %s (%s)", e, formatName(r.Format), evidence(r))
		}
	}
	return false, ""
}

// isContainer reports whether format wraps a virtual disk in its own
// structure, as opposed to raw data (RAW, or ISO 9660 which is raw data with
// a file system).
func isContainer(format string) bool {
	switch format {
	case QCOW2, QCOW, VHD, VHDX, VMDK, VDI, QED:
		return true
	}
	return false
}

// formatName is how a person knows a format.
func formatName(format string) string {
	switch format {
	case ISO:
		return "ISO 9660"
	case "":
		return "unknown"
	}
	return strings.ToUpper(format)
}

// missingPhrase names what a file with extension ext should have carried.
func missingPhrase(ext string) string {
	switch ext {
	case VHD:
		return "VHD footer"
	case ISO:
		return "ISO 9660 volume descriptor"
	}
	return formatName(ext) + " header"
}

// rawPhrase describes raw content from its Detail, e.g. "raw data (looks
// like gzip-compressed data)".
func rawPhrase(r Result) string {
	if rest, ok := strings.CutPrefix(r.Detail, "no known header: "); ok && rest != "" {
		return rest
	}
	return "raw data"
}

// evidence names the signature that identified r.Format.
func evidence(r Result) string {
	switch r.Format {
	case QCOW2:
		return `a QCOW2 header "QFI\xfb"`
	case QCOW:
		return `a QCOW version 1 header "QFI\xfb"`
	case VHD:
		return `a VHD footer "conectix"`
	case VHDX:
		return `a VHDX file identifier "vhdxfile"`
	case VMDK:
		switch {
		case strings.HasPrefix(r.Detail, "VMDK text descriptor"):
			return "a VMDK text descriptor"
		case strings.HasPrefix(r.Detail, `VMDK "COWD"`):
			return `a VMDK header "COWD"`
		}
		return `a VMDK header "KDMV"`
	case VDI:
		return "a VDI signature 0xbeda107f at byte 64"
	case QED:
		return `a QED header "QED\x00"`
	case ISO:
		if strings.HasPrefix(r.Detail, "UDF") {
			return "a UDF volume recognition sequence at 32 KiB"
		}
		return `an ISO 9660 volume descriptor "CD001" at 32 KiB`
	}
	return r.Detail
}
