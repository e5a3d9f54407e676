// Package probe is the health probe of imsflow's container images, which
// have no shell and no curl: "healthcheck URL..." in the nats-server image
// and "imsflow healthcheck URL..." in imsflow's. Compose and Docker
// HEALTHCHECKs run it; Kubernetes probes the same URLs itself.
package probe

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Main is "healthcheck [-timeout 3s] URL...": GET each URL, and return 0
// when every one answered 2xx within the timeout, 1 otherwise (saying
// which and why on stderr), 2 for a bad command line.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 3*time.Second, "bound for each request")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: healthcheck [-timeout 3s] URL...")
		return 2
	}
	code := 0
	for _, url := range fs.Args() {
		if err := check(url, *timeout); err != nil {
			fmt.Fprintf(stderr, "healthcheck: %s: %v\n", url, err)
			code = 1
		}
	}
	return code
}

// check GETs url and returns nil for a 2xx answer; otherwise an error with
// the status and the first line of the body (a readiness probe says what
// is not ready there).
func check(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	return fmt.Errorf("%s %s", resp.Status, first)
}
