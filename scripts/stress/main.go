// Command stress runs tests many times while it keeps every CPU busy, and
// reports how many runs of each test failed: the check that the suite
// holds on a loaded machine (make test-stress). A test that fails one run
// in twenty is broken; this finds it before CI does.
//
//	go run ./scripts/stress [-count N] [-load K] [-run REGEXP] [packages]
//
// It runs "go test -race -count N -json" on the packages with K spinning
// goroutines per CPU beside it, prints the output of every failed run,
// and ends with one line per failing test and the closing line
// "N passed, N failed" (runs of top-level tests). It exits 1 when a run
// failed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	count := flag.Int("count", 10, "runs of each test")
	load := flag.Int("load", 1, "spinning goroutines per CPU while the tests run (0: none)")
	run := flag.String("run", "", "run only the tests matching this regular expression")
	timeout := flag.Duration("timeout", 60*time.Minute, "go test's timeout")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: stress [flags] [packages]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	spin, stopSpin := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range *load * runtime.NumCPU() {
		wg.Go(func() {
			for x := uint64(1); spin.Err() == nil; {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
		})
	}
	args := []string{"test", "-race", "-json", "-count", fmt.Sprint(*count), "-timeout", timeout.String()}
	if *run != "" {
		args = append(args, "-run", *run)
	}
	args = append(args, pkgs...)
	fmt.Fprintf(os.Stderr, "stress: go %s, with %d goroutines spinning on %d CPUs\n", strings.Join(args, " "), *load*runtime.NumCPU(), runtime.NumCPU())
	begin := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fatal(err)
	}
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	r := tally(out, os.Stdout, *count)
	_, _ = io.Copy(io.Discard, out) // should tally stop early, go test must not block
	werr := cmd.Wait()
	stopSpin()
	wg.Wait()

	fmt.Printf("\nstress: %d runs of %d tests in %s (count %d, load %d per CPU)\n",
		r.passed+r.failed, len(r.tests), time.Since(begin).Round(time.Second), *count, *load)
	for _, name := range r.failing() {
		fmt.Printf("  FAIL %s: %d of %d runs\n", name, r.tests[name].failed, r.tests[name].failed+r.tests[name].passed)
	}
	for _, p := range r.brokenPkgs {
		fmt.Printf("  FAIL package %s (build error, panic or timeout: see above)\n", p)
	}
	for _, name := range r.short() {
		fmt.Printf("  FAIL %s ran %d of %d times (its package stopped early)\n", name, r.tests[name].runs(), *count)
	}
	failed := r.failed + len(r.brokenPkgs)
	if werr != nil && failed == 0 {
		// go test failed, and nothing above says why: count it.
		fmt.Printf("  FAIL go test: %v\n", werr)
		failed++
	}
	fmt.Printf("%d passed, %d failed\n", r.passed, failed)
	if failed > 0 || werr != nil {
		os.Exit(1)
	}
}

// event is one line of go test -json (cmd/test2json); build errors come
// as "build-output" with ImportPath instead of Package.
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
}

type counts struct{ passed, failed, skipped int }

func (c counts) runs() int { return c.passed + c.failed + c.skipped }

type result struct {
	count          int                // runs asked of each test
	tests          map[string]*counts // "package.Test"
	passed, failed int
	brokenPkgs     []string
}

// short lists the tests that ran fewer than count times, skips
// included: a timeout or a panic stopped their package. Examples run
// once whatever the count.
func (r *result) short() []string {
	var names []string
	for name, c := range r.tests {
		if strings.Contains(name, ".Example") {
			continue
		}
		if c.runs() < r.count && c.failed == 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func (r *result) failing() []string {
	var names []string
	for name, c := range r.tests {
		if c.failed > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// tally reads go test -json, counts the runs of top-level tests, and
// writes the output of every failed run to w. A test still running when
// its package ends (a timeout, a panic elsewhere) is a failed run.
func tally(in io.Reader, w io.Writer, count int) *result {
	r := &result{count: count, tests: map[string]*counts{}}
	output := map[string][]string{} // a running test's output, by package.Test
	pkgOut := map[string][]string{}
	test := func(key string) *counts {
		c := r.tests[key]
		if c == nil {
			c = &counts{}
			r.tests[key] = c
		}
		return c
	}
	fail := func(key, why string) {
		c := test(key)
		c.failed++
		r.failed++
		fmt.Fprintf(w, "--- %s %s (run %d):\n%s", key, why, c.runs(), strings.Join(output[key], ""))
		delete(output, key)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Fprintln(w, sc.Text())
			continue
		}
		top, _, _ := strings.Cut(e.Test, "/")
		key := e.Package + "." + top
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Test == "" && e.Action == "output":
			pkgOut[e.Package] = append(pkgOut[e.Package], e.Output)
		case e.Test == "" && (e.Action == "fail" || e.Action == "pass"):
			// Tests that never ended: the package stopped under them.
			failedBefore := r.anyFailed(e.Package)
			stuck := false
			for k := range output {
				if strings.HasPrefix(k, e.Package+".") {
					fail(k, "did not end (timeout or panic)")
					stuck = true
				}
			}
			// A package fails with its tests, or on its own (build error,
			// panic, timeout): say why unless a test's output did.
			if e.Action == "fail" && !failedBefore && !stuck {
				r.brokenPkgs = append(r.brokenPkgs, e.Package)
				fmt.Fprintf(w, "--- package %s failed:\n%s", e.Package, strings.Join(pkgOut[e.Package], ""))
			} else if e.Action == "fail" && stuck {
				fmt.Fprint(w, strings.Join(pkgOut[e.Package], ""))
			}
			delete(pkgOut, e.Package)
		case e.Test == "":
			// The package's other events (start, skip for no test files).
		case e.Action == "output":
			output[key] = append(output[key], e.Output)
		case e.Test == top && e.Action == "run":
			output[key] = output[key][:0:0] // a new run of it
		case e.Test == top && e.Action == "pass":
			test(key).passed++
			r.passed++
			delete(output, key)
		case e.Test == top && e.Action == "skip":
			test(key).skipped++
			delete(output, key)
		case e.Test == top && e.Action == "fail":
			fail(key, "failed")
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "stress: reading go test's output: %v\n", err)
		r.brokenPkgs = append(r.brokenPkgs, "(output unreadable)")
	}
	return r
}

func (r *result) anyFailed(pkg string) bool {
	for name, c := range r.tests {
		if c.failed > 0 && strings.HasPrefix(name, pkg+".") {
			return true
		}
	}
	return false
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "stress:", err)
	os.Exit(2)
}
