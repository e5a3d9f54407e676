package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/caarlos0/env/v10"
	"github.com/minio/minio-go/v7"

	"github.com/imsflow/imsflow/internal/objstore"
)

// runBucket is "imsflow bucket init BUCKET...": create the buckets if
// missing on the S3 endpoint of S3_*, and on MinIO send their
// object-created events to its NATS target.
func runBucket(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "usage: imsflow bucket init [-minio-target PRIMARY] BUCKET...   (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_SECURE)")
		return exitUsage
	}
	fs := flag.NewFlagSet("imsflow bucket init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("minio-target", "PRIMARY", "ID of MinIO's NATS notification target; empty for none (OBS)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	var cfg objstore.Config
	opts := env.Options{}
	if environ != nil {
		opts.Environment = environ
	}
	if err := env.ParseWithOptions(&cfg, opts); err != nil || !cfg.Enabled() || fs.NArg() == 0 {
		fmt.Fprintf(stderr, "imsflow bucket init: set S3_ENDPOINT (and S3_ACCESS_KEY, S3_SECRET_KEY, S3_SECURE) and name the buckets (%v)\n", err)
		return exitUsage
	}
	store, err := objstore.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "imsflow bucket init: %v\n", err)
		return exitUsage
	}
	mc := store.Client()
	for _, b := range fs.Args() {
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
