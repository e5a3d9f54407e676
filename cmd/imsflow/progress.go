package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a bar on a terminal, or a line per quarter elsewhere.
type progress struct {
	w     io.Writer
	total int
	tty   bool
	last  int
	start time.Time
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, total: max(total, 1), tty: isTerminal(w), last: -1, start: time.Now()}
}

func (p *progress) show(done int, what string) {
	const width = 30
	n := done * width / p.total
	line := fmt.Sprintf("[%s%s] %d/%d %s  %.1fs", strings.Repeat("#", n), strings.Repeat(".", width-n), done, p.total, what, time.Since(p.start).Seconds())
	switch {
	case p.tty:
		fmt.Fprint(p.w, "\r"+line)
		if done == p.total {
			fmt.Fprintln(p.w)
		}
	case done*4/p.total != p.last:
		p.last = done * 4 / p.total
		fmt.Fprintln(p.w, line)
	}
}

// isTerminal reports whether w is a terminal (for the progress bar's \r).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
