package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/imsflow/imsflow/internal/functions"
)

const runUsage = `usage: imsflow run FUNCTION

Runs one function as this process against the NATS of NATS_URL until
SIGTERM or Ctrl-C, configured from the environment exactly as its own
binary under functions/ (see docs/configuration.md): the container image's
entry point. FUNCTION is one of: %s.
`

// runFunction is "imsflow run FUNCTION". A function's process exits on its
// own when it fails (fnmain); a return is a graceful stop or a usage error.
func runFunction(args []string, stdout, stderr io.Writer) int {
	usage := fmt.Sprintf(runUsage, strings.Join(functions.Names, ", "))
	switch {
	case len(args) == 1 && isHelp(args[0]):
		fmt.Fprint(stdout, usage)
		return exitOK
	case len(args) != 1:
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	if !functions.Run(args[0]) {
		fmt.Fprintf(stderr, "imsflow run: unknown function %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return exitOK
}

// runVersion is "imsflow version": the module version and the commit the
// binary was built from, as the Go toolchain recorded them.
func runVersion(stdout io.Writer) int {
	fmt.Fprintln(stdout, versionLine())
	return exitOK
}

// version is set by the image build (-ldflags "-X main.version=..."), to
// the commit and whether the tree had changes; otherwise the Go
// toolchain's record of the build is used.
var version string

func versionLine() string {
	if version != "" {
		return "imsflow " + version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "imsflow (no build information)"
	}
	line := "imsflow " + info.Main.Version
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		line += " commit " + rev
		if settings["vcs.modified"] == "true" {
			line += "+modified"
		}
		if t := settings["vcs.time"]; t != "" {
			line += " (" + t + ")"
		}
	}
	return line + " " + info.GoVersion
}
