package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// parseFlagsHelp parses the flags of watch and demo. Asked for (-h, -help,
// --help), the usage (usage, then the flags) goes to stdout and the exit
// is exitOK; after a bad flag, what is wrong and the usage go to stderr and
// the exit is exitUsage. ok is false when the command is done already.
func parseFlagsHelp(fs *flag.FlagSet, usage string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.Usage = func() {} // printed below, where it belongs
	fs.SetOutput(stderr) // the error of a bad flag
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printFlagsUsage(stdout, fs, usage)
		return exitOK, false
	case err != nil:
		printFlagsUsage(stderr, fs, usage)
		return exitUsage, false
	}
	return exitOK, true
}

func printFlagsUsage(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprint(w, usage)
	fmt.Fprintln(w, "\nFlags:")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}
