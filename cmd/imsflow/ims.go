package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// imsCommand is one of the "imsflow ims" commands.
type imsCommand struct {
	name, args, help string
	// nargs is the number of arguments after the flags.
	nargs int
	// flags defines the command's flags on fs and returns what runs it
	// once they are parsed, with the arguments.
	flags func(fs *flag.FlagSet) imsRun
}

// imsRun calls IMS; its answer is printed as JSON.
type imsRun func(ctx context.Context, c *imsapi.Client, args []string) (any, error)

var imsCommands = []imsCommand{
	{"quota", "", "show the project's image quota", 0, func(*flag.FlagSet) imsRun {
		return func(ctx context.Context, c *imsapi.Client, _ []string) (any, error) { return c.Quota(ctx) }
	}},
	{"os-versions", "[-tag bms|uefi]", "list the OS versions IMS accepts in os_version", 0, func(fs *flag.FlagSet) imsRun {
		tag := fs.String("tag", "", "narrow to bms or uefi")
		return func(ctx context.Context, c *imsapi.Client, _ []string) (any, error) {
			return c.ListOSVersions(ctx, *tag)
		}
	}},
	{"images", "[-id ID] [-name N] [-tag key.value] [-status S] [-type private] [-limit N]", "list images, every page", 0, func(fs *flag.FlagSet) imsRun {
		var o imsapi.ListImagesOptions
		fs.StringVar(&o.ID, "id", "", "image ID")
		fs.StringVar(&o.Name, "name", "", "image name")
		fs.StringVar(&o.Tag, "tag", "", "tag, key.value")
		fs.StringVar(&o.Status, "status", "", "queued, saving, active, killed, deleted")
		fs.StringVar(&o.ImageType, "type", "", "gold, private, shared, market")
		fs.IntVar(&o.Limit, "limit", 0, "page size (IMS default 500)")
		return func(ctx context.Context, c *imsapi.Client, _ []string) (any, error) {
			images := []*imsapi.Image{}
			for im, err := range c.AllImages(ctx, &o) {
				if err != nil {
					return nil, err
				}
				images = append(images, im)
			}
			return images, nil
		}
	}},
	{"job", "[-status-api] JOB_ID", "show an asynchronous job (progress API; -status-api: the project job API)", 1, func(fs *flag.FlagSet) imsRun {
		statusAPI := fs.Bool("status-api", false, "use GET /v1/{project_id}/jobs/{job_id}")
		return func(ctx context.Context, c *imsapi.Client, args []string) (any, error) {
			if *statusAPI {
				return c.Job(ctx, args[0])
			}
			return c.JobProgress(ctx, args[0])
		}
	}},
}

func imsUsage() string {
	var b strings.Builder
	b.WriteString("Usage: imsflow ims <command> [flags]\n\nCommands (answers are printed as JSON):\n")
	for _, c := range imsCommands {
		fmt.Fprintf(&b, "  %s %s\n      %s\n", c.name, c.args, c.help)
	}
	b.WriteString("\nEnvironment:\n")
	for _, v := range imsconfig.Variables {
		def := ""
		if v.Default != "" {
			def = " (default " + v.Default + ")"
		}
		fmt.Fprintf(&b, "  %-31s %s%s\n", v.Name, v.Meaning, def)
	}
	return b.String()
}

func runIMS(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, imsUsage())
		return exitUsage
	case isHelp(args[0]):
		fmt.Fprint(stdout, imsUsage())
		return exitOK
	}
	var cmd *imsCommand
	for i := range imsCommands {
		if imsCommands[i].name == args[0] {
			cmd = &imsCommands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "imsflow ims: unknown command %q\n\n%s", args[0], imsUsage())
		return exitUsage
	}
	synopsis := strings.TrimSpace("imsflow ims " + cmd.name + " " + cmd.args)
	fs := newFlags("imsflow ims "+cmd.name, fmt.Sprintf("usage: %s\n\n%s; the answer is printed as JSON.\n"+
		"IMS settings come from the environment (see \"imsflow ims -h\").\n", synopsis, upperFirst(cmd.help)))
	call := cmd.flags(fs.FlagSet)
	if code, ok := fs.parse(args[1:], stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != cmd.nargs {
		return fs.fail(stderr, "want %d argument(s), got %d", cmd.nargs, fs.NArg())
	}
	cfg, err := imsconfig.Parse(environ)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow: %v\n", err)
		return exitUsage
	}
	client, err := cfg.Client()
	if err != nil {
		fmt.Fprintf(stderr, "imsflow: %v\n", err)
		return exitUsage
	}
	out, err := call(ctx, client, fs.Args())
	switch {
	case errors.Is(err, imsapi.ErrInvalidArgument):
		fmt.Fprintf(stderr, "imsflow: %v\n", err)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "imsflow: %v\n", err)
		return exitError
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(stderr, "imsflow: %v\n", err)
		return exitError
	}
	return exitOK
}

// upperFirst returns s with its first letter in upper case.
func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
