package main

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/imsapi"
)

// BenchmarkBulkImportListAndPublish measures "imsflow bulk import": listing
// 2,000 objects in MinIO, routing each, and publishing one event per object
// to JetStream.
func BenchmarkBulkImportListAndPublish(b *testing.B) {
	const objects = 2000
	m := testenv.StartMinIO(b)
	n := testenv.StartNATS(b)
	_, js := n.Connect(b)
	ctx := b.Context()
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(1)); err != nil {
		b.Fatal(err)
	}
	store, err := objstore.New(objstore.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: imsapi.Secret(m.SecretKey)})
	if err != nil {
		b.Fatal(err)
	}
	mc := store.Client()
	if err := mc.MakeBucket(ctx, "fleet", minio.MakeBucketOptions{}); err != nil {
		b.Fatal(err)
	}
	keys := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range keys {
				if _, err := mc.PutObject(ctx, "fleet", fmt.Sprintf("vm/disk-%05d.raw", i), bytes.NewReader(make([]byte, 512)), 512, minio.PutObjectOptions{}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range objects {
		keys <- i
	}
	close(keys)
	wg.Wait()
	env := map[string]string{"S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey, "S3_SECRET_KEY": m.SecretKey, "S3_SECURE": "false", "NATS_URL": n.URL}
	i := 0
	for b.Loop() {
		i++
		if code := runBulkImport(ctx, []string{"-batch", fmt.Sprint("bench-", i), "s3://fleet/vm/"}, env, io.Discard, io.Discard); code != exitOK {
			b.Fatalf("bulk import exited %d", code)
		}
	}
	b.ReportMetric(float64(objects)*float64(b.N)/b.Elapsed().Seconds(), "objects/s")
}
