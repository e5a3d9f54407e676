package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// commandFlags is a command's flag set and the text its usage opens with.
// Asked for (-h, -help, --help), the usage goes to stdout and the command
// exits 0; after a mistake it goes to stderr, and the exit is exitUsage.
type commandFlags struct {
	*flag.FlagSet
	usage string
}

// newFlags returns the flag set of the command name, whose usage opens
// with usage (a synopsis and what the command does, ending in a newline).
func newFlags(name, usage string) *commandFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {} // parse prints it, where it belongs
	return &commandFlags{FlagSet: fs, usage: usage}
}

// printUsage writes the usage and the flags, if any, to w.
func (c *commandFlags) printUsage(w io.Writer) {
	fmt.Fprint(w, c.usage)
	n := 0
	c.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	out := c.Output()
	c.SetOutput(w)
	c.PrintDefaults()
	c.SetOutput(out)
}

// parse parses args. When the command is done already it returns false and
// the exit code: -h, -help or --help printed the usage on stdout (exitOK);
// a bad flag printed what is wrong and the usage on stderr (exitUsage).
func (c *commandFlags) parse(args []string, stdout, stderr io.Writer) (int, bool) {
	c.SetOutput(stderr)
	err := c.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.printUsage(stdout)
		return exitOK, false
	case err != nil:
		c.printUsage(stderr)
		return exitUsage, false
	}
	return exitOK, true
}

// fail prints what is wrong with the command line and the usage on
// stderr, and returns exitUsage.
func (c *commandFlags) fail(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", c.Name(), fmt.Sprintf(format, a...))
	c.printUsage(stderr)
	return exitUsage
}

// isHelp reports whether arg asks a command with subcommands for its
// usage.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}
