package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ownCommands are the commands and subcommands whose help this file
// checks, with a word their usage must hold.
var ownCommands = []struct {
	args []string
	want string
}{
	{nil, "imsflow dev [flags]"},
	{[]string{"help"}, "imsflow dev [flags]"},
	{[]string{"dev"}, "-nats-port"},
	{[]string{"bulk"}, "imsflow bulk import"},
	{[]string{"bulk", "import"}, "-dry-run"},
	{[]string{"bulk", "export"}, "-bucket"},
	{[]string{"status"}, "imsflow status [BATCH|LIFECYCLE]"},
	{[]string{"lifecycle"}, "imsflow lifecycle retry ID LEG"},
	{[]string{"bucket"}, "imsflow bucket init"},
	{[]string{"bucket", "init"}, "-minio-target"},
	{[]string{"ims"}, "IMS_ENDPOINT"},
	{[]string{"ims", "quota"}, "imsflow ims quota"},
	{[]string{"ims", "os-versions"}, "-tag"},
	{[]string{"ims", "images"}, "-limit"},
	{[]string{"ims", "job"}, "-status-api"},
	{[]string{"emulator"}, "-time-scale"},
}

// helpEnv is an environment in which every command would fail: help must
// not depend on it, nor touch anything.
func helpEnv(t *testing.T) map[string]string {
	return map[string]string{
		"NATS_URL": "nats://user:pw@127.0.0.1:1", "IMSEMU_RATE_LIMIT": "x", "IMSFLOW_NATS_PORT": "x",
		"IMSFLOW_DATA": filepath.Join(t.TempDir(), "data"), "S3_SECURE": "maybe",
	}
}

// TestHelp: -h, -help and --help make every command print its usage on
// stdout and exit 0, whatever the environment, and do nothing else.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, c := range ownCommands {
		for _, h := range []string{"-h", "-help", "--help"} {
			args := append(append([]string{}, c.args...), h)
			env := helpEnv(t)
			code, out, errOut := runCLI(t, env, args...)
			if code != exitOK || !strings.Contains(strings.ToLower(out), "usage") || !strings.Contains(out, c.want) || errOut != "" {
				t.Errorf("imsflow %s: exit %d, stdout %q, stderr %q; want 0, the usage (with %q) on stdout", strings.Join(args, " "), code, out, errOut, c.want)
			}
			if _, err := os.Stat(env["IMSFLOW_DATA"]); err == nil {
				t.Errorf("imsflow %s created the data directory", strings.Join(args, " "))
			}
		}
	}
}

// TestHelpCommand: "imsflow help COMMAND..." is "imsflow COMMAND... -h".
func TestHelpCommand(t *testing.T) {
	t.Parallel()
	for _, c := range ownCommands {
		if len(c.args) == 0 || c.args[0] == "help" {
			continue
		}
		env := helpEnv(t)
		code, out, _ := runCLI(t, env, append([]string{"help"}, c.args...)...)
		_, want, _ := runCLI(t, env, append(append([]string{}, c.args...), "-h")...)
		if code != exitOK || out != want {
			t.Errorf("imsflow help %s: exit %d, stdout %q; want %q", strings.Join(c.args, " "), code, out, want)
		}
	}
	if code, _, errOut := runCLI(t, nil, "help", "frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("help frobnicate: exit %d, stderr %q", code, errOut)
	}
}

// TestBadFlag: a flag a command does not have is exit 2, with what is
// wrong and the usage on stderr, nothing on stdout.
func TestBadFlag(t *testing.T) {
	t.Parallel()
	for _, c := range ownCommands {
		if len(c.args) == 0 || c.args[0] == "help" || len(c.args) == 1 && (c.args[0] == "bulk" || c.args[0] == "bucket" || c.args[0] == "ims") {
			continue // no flags of their own: "-x" is an unknown command there
		}
		args := append(append([]string{}, c.args...), "-no-such-flag")
		code, out, errOut := runCLI(t, helpEnv(t), args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, "flag provided but not defined: -no-such-flag") || !strings.Contains(errOut, c.want) {
			t.Errorf("imsflow %s: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", strings.Join(args, " "), code, out, errOut)
		}
	}
	for _, group := range []string{"bulk", "bucket", "ims"} {
		code, out, errOut := runCLI(t, nil, group, "-x")
		if code != exitUsage || out != "" || !strings.Contains(errOut, "usage") && !strings.Contains(errOut, "Usage") {
			t.Errorf("imsflow %s -x: exit %d, stdout %q, stderr %q", group, code, out, errOut)
		}
	}
}
