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

type imsCommand struct {
	name, args, help string
	run              func(ctx context.Context, c *imsapi.Client, fs *flag.FlagSet, args []string) (any, error)
}

var imsCommands = []imsCommand{
	{"quota", "", "show the project's image quota", func(ctx context.Context, c *imsapi.Client, fs *flag.FlagSet, args []string) (any, error) {
		if err := parseFlags(fs, args, 0); err != nil {
			return nil, err
		}
		return c.Quota(ctx)
	}},
	{"os-versions", "[-tag bms|uefi]", "list the OS versions IMS accepts in os_version", func(ctx context.Context, c *imsapi.Client, fs *flag.FlagSet, args []string) (any, error) {
		tag := fs.String("tag", "", "narrow to bms or uefi")
		if err := parseFlags(fs, args, 0); err != nil {
			return nil, err
		}
		return c.ListOSVersions(ctx, *tag)
	}},
	{"images", "[-id ID] [-name N] [-tag key.value] [-status S] [-type private] [-limit N]", "list images, every page", func(ctx context.Context, c *imsapi.Client, fs *flag.FlagSet, args []string) (any, error) {
		var o imsapi.ListImagesOptions
		fs.StringVar(&o.ID, "id", "", "image ID")
		fs.StringVar(&o.Name, "name", "", "image name")
		fs.StringVar(&o.Tag, "tag", "", "tag, key.value")
		fs.StringVar(&o.Status, "status", "", "queued, saving, active, killed, deleted")
		fs.StringVar(&o.ImageType, "type", "", "gold, private, shared, market")
		fs.IntVar(&o.Limit, "limit", 0, "page size (IMS default 500)")
		if err := parseFlags(fs, args, 0); err != nil {
			return nil, err
		}
		images := []*imsapi.Image{}
		for im, err := range c.AllImages(ctx, &o) {
			if err != nil {
				return nil, err
			}
			images = append(images, im)
		}
		return images, nil
	}},
	{"job", "[-status-api] JOB_ID", "show an asynchronous job (progress API; -status-api: the project job API)", func(ctx context.Context, c *imsapi.Client, fs *flag.FlagSet, args []string) (any, error) {
		statusAPI := fs.Bool("status-api", false, "use GET /v1/{project_id}/jobs/{job_id}")
		if err := parseFlags(fs, args, 1); err != nil {
			return nil, err
		}
		if *statusAPI {
			return c.Job(ctx, fs.Arg(0))
		}
		return c.JobProgress(ctx, fs.Arg(0))
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

var errUsage = errors.New("usage")

func parseFlags(fs *flag.FlagSet, args []string, nargs int) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != nargs {
		fmt.Fprintf(fs.Output(), "%s: want %d argument(s), got %d\n", fs.Name(), nargs, fs.NArg())
		return errUsage
	}
	return nil
}

func runIMS(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		fmt.Fprint(stderr, imsUsage())
		if len(args) == 0 {
			return exitUsage
		}
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
	fs := flag.NewFlagSet("imsflow ims "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	out, err := cmd.run(ctx, client, fs, args[1:])
	switch {
	case errors.Is(err, errUsage):
		return exitUsage
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
