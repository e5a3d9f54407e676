package e2e

import (
	"net/url"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/runner"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// bucketStack is an embedded NATS with imsflow's topology and a MinIO
// whose upload buckets publish their object-created events to it.
type bucketStack struct {
	endpoint, accessKey, secretKey string // of MinIO
	nc                             *nats.Conn
	js                             jetstream.JetStream
	minio                          *minio.Client
	s3                             *imsemu.S3Store // for the emulator: the same buckets
}

// newBucketStack starts both; uploads go to the notifying buckets, plain
// buckets (exports) get no notification.
func newBucketStack(t *testing.T, notifying []string, plain ...string) *bucketStack {
	t.Helper()
	ctx := t.Context()
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	if err := runner.Ensure(ctx, js, runner.DefaultTopology(1)); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(n.URL)
	m := testenv.StartMinIO(t, testenv.MinIONATSTarget(u.Host, events.SubjectObjectsPrefix+"minio")...)
	store, err := objstore.New(objstore.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: imsapi.Secret(m.SecretKey)})
	if err != nil {
		t.Fatal(err)
	}
	mc := store.Client()
	for _, b := range append(append([]string{}, notifying...), plain...) {
		if err := mc.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range notifying {
		if err := store.NotifyMinIONATS(ctx, b, "PRIMARY"); err != nil {
			t.Fatal(err)
		}
	}
	s3, err := imsemu.NewS3Store(m.Endpoint, m.AccessKey, m.SecretKey, false)
	if err != nil {
		t.Fatal(err)
	}
	return &bucketStack{endpoint: m.Endpoint, accessKey: m.AccessKey, secretKey: m.SecretKey, nc: nc, js: js, minio: mc, s3: s3}
}
