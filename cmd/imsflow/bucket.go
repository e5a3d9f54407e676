package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/imsflow/imsflow/internal/imsconfig"
	"github.com/imsflow/imsflow/internal/objstore"
)

const bucketUsage = `usage: imsflow bucket init [-minio-target PRIMARY] [-quiet EXPORTS,...] BUCKET...

Creates the buckets, if missing, on the S3 endpoint of S3_ENDPOINT
(S3_ACCESS_KEY, S3_SECRET_KEY, S3_SECURE, S3_REGION), and on MinIO sends
their object-created events to its NATS target. The -quiet buckets are
created without events: export destinations, whose files must not come
back as uploads.
`

// runBucket is "imsflow bucket init BUCKET...": create the buckets if
// missing on the S3 endpoint of S3_*, and on MinIO send their
// object-created events to its NATS target.
func runBucket(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	switch {
	case len(args) > 0 && isHelp(args[0]):
		fmt.Fprint(stdout, bucketUsage)
		return exitOK
	case len(args) == 0:
		fmt.Fprint(stderr, bucketUsage)
		return exitUsage
	case args[0] != "init":
		fmt.Fprintf(stderr, "imsflow bucket: unknown command %q\n\n%s", args[0], bucketUsage)
		return exitUsage
	}
	fs := newFlags("imsflow bucket init", bucketUsage)
	target := fs.String("minio-target", "PRIMARY", "ID of MinIO's NATS notification target; empty for none (OBS)")
	quiet := fs.String("quiet", "", "comma-separated buckets to create without events (export destinations)")
	if code, ok := fs.parse(args[1:], stdout, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 && *quiet == "" {
		return fs.fail(stderr, "name the buckets")
	}
	var cfg objstore.Config
	if err := imsconfig.ParseEnv(&cfg, environ); err != nil {
		fmt.Fprintf(stderr, "imsflow bucket init: %v\n", err)
		return exitUsage
	}
	if !cfg.Enabled() {
		fmt.Fprintln(stderr, "imsflow bucket init: S3_ENDPOINT is not set (and S3_ACCESS_KEY, S3_SECRET_KEY, S3_SECURE)")
		return exitUsage
	}
	store, err := objstore.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bucket init: %v\n", err)
		return exitUsage
	}
	mc := store.Client()
	type bucket struct{ name, target string }
	var buckets []bucket
	for _, b := range fs.Args() {
		buckets = append(buckets, bucket{b, *target})
	}
	for _, b := range strings.Split(*quiet, ",") {
		if b = strings.TrimSpace(b); b != "" {
			buckets = append(buckets, bucket{b, ""})
		}
	}
	for _, bk := range buckets {
		b, target := bk.name, &bk.target
		exists, err := mc.BucketExists(ctx, b)
		if err != nil {
			fmt.Fprintf(stderr, "imsflow bucket init: %s: %v\n", b, err)
			return exitError
		}
		if !exists {
			if err := mc.MakeBucket(ctx, b, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
				fmt.Fprintf(stderr, "imsflow bucket init: create %s: %v\n", b, err)
				return exitError
			}
		}
		if *target != "" {
			if err := store.NotifyMinIONATS(ctx, b, *target); err != nil {
				fmt.Fprintf(stderr, "imsflow bucket init: %v\n", err)
				return exitError
			}
		}
		fmt.Fprintf(stdout, "bucket %s ready", b)
		if *target != "" {
			fmt.Fprintf(stdout, "; its object-created events go to MinIO's NATS target %s", *target)
		}
		fmt.Fprintln(stdout)
	}
	return exitOK
}
