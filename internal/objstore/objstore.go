// Package objstore is imsflow's access to S3-compatible buckets (OBS's S3
// endpoint, MinIO): object metadata and ranged reads for recognising a
// file's format, streamed reads for checking a checksum, listing for
// bulk imports, and the bucket notification
// that sends MinIO's object-created events to JetStream.
//
// It is built on minio-go: a small, maintained client made for any
// S3-compatible store (path- and virtual-host-style, SigV4), which OBS's
// S3 endpoint accepts; Huawei's own OBS SDK speaks only OBS.
package objstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/notification"

	"github.com/imsflow/imsflow/pkg/imsapi"
)

// Config is where the buckets are, from the environment.
type Config struct {
	// Endpoint is host[:port] of the S3 API, e.g. obs.cn-north-4.myhuaweicloud.com or 127.0.0.1:9000.
	Endpoint  string        `env:"S3_ENDPOINT"`
	AccessKey string        `env:"S3_ACCESS_KEY"`
	SecretKey imsapi.Secret `env:"S3_SECRET_KEY"`
	// Secure uses HTTPS.
	Secure bool   `env:"S3_SECURE" envDefault:"true"`
	Region string `env:"S3_REGION"`
}

// Enabled reports whether an endpoint is configured.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// Store reads and lists objects.
type Store struct {
	c *minio.Client
}

// New connects (lazily) to the configured endpoint.
func New(c Config) (*Store, error) {
	if strings.Contains(c.Endpoint, "://") {
		return nil, fmt.Errorf("S3_ENDPOINT %q: give host[:port], and S3_SECURE for https", c.Endpoint)
	}
	mc, err := minio.New(c.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(c.AccessKey, c.SecretKey.Reveal(), ""), Secure: c.Secure, Region: c.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", c.Endpoint, err)
	}
	return &Store{c: mc}, nil
}

// ErrNotFound is returned for a missing bucket or object.
var ErrNotFound = errors.New("objstore: not found")

// ErrChanged is returned by Open when the object no longer has the ETag
// the read was asked for: it was replaced.
var ErrChanged = errors.New("objstore: object changed")

// Object is what a listing or a HEAD says of an object.
type Object struct {
	Bucket, Key  string
	Size         int64
	ETag         string
	VersionID    string
	StorageClass string
	LastModified time.Time
	// Metadata is the user metadata, keys in lower case without prefix.
	Metadata map[string]string
}

func wrap(err error, what string) error {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case "PreconditionFailed":
		return fmt.Errorf("%s: %w", what, ErrChanged)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Head returns an object's size, class and metadata.
func (s *Store) Head(ctx context.Context, bucket, key string) (Object, error) {
	info, err := s.c.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Object{}, wrap(err, "head "+bucket+":"+key)
	}
	return fromInfo(bucket, info), nil
}

func fromInfo(bucket string, info minio.ObjectInfo) Object {
	o := Object{Bucket: bucket, Key: info.Key, Size: info.Size, ETag: strings.Trim(info.ETag, `"`), VersionID: info.VersionID,
		StorageClass: info.StorageClass, LastModified: info.LastModified}
	if o.StorageClass == "" {
		// A HEAD's class is only in its headers (minio-go fills the field
		// from listings): S3's, or OBS's own name on OBS.
		o.StorageClass = cmp.Or(info.Metadata.Get("X-Amz-Storage-Class"), info.Metadata.Get("X-Obs-Storage-Class"))
	}
	for k, v := range info.UserMetadata {
		if o.Metadata == nil {
			o.Metadata = map[string]string{}
		}
		k = strings.ToLower(k)
		k = strings.TrimPrefix(strings.TrimPrefix(k, "x-amz-meta-"), "x-obs-meta-")
		o.Metadata[k] = v
	}
	return o
}

// ReadRange reads n bytes at off (fewer at the end of the object).
func (s *Store) ReadRange(ctx context.Context, bucket, key string, off, n int64) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, err
	}
	obj, err := s.c.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return nil, wrap(err, "read "+bucket+":"+key)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, n))
	if err != nil {
		return nil, wrap(err, "read "+bucket+":"+key)
	}
	return b, nil
}

// Open returns the object's bytes from off to its end: one GET, streamed
// as the caller reads, so that a reader of a large object holds none of it
// in memory and can stop at any point. With etag set it reads that
// version only (If-Match): a replaced object gives ErrChanged. A missing
// object gives ErrNotFound. Close the reader when done.
func (s *Store) Open(ctx context.Context, bucket, key string, off int64, etag string) (io.ReadCloser, error) {
	opts := minio.GetObjectOptions{}
	if off > 0 {
		if err := opts.SetRange(off, 0); err != nil {
			return nil, err
		}
	}
	if etag != "" {
		if err := opts.SetMatchETag(etag); err != nil {
			return nil, err
		}
	}
	body, _, _, err := minio.Core{Client: s.c}.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return nil, wrap(err, "read "+bucket+":"+key)
	}
	return body, nil
}

// List lists the objects under prefix, page after page.
func (s *Store) List(ctx context.Context, bucket, prefix string) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) {
		for info := range s.c.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, WithMetadata: true}) {
			if info.Err != nil {
				yield(Object{}, wrap(info.Err, "list "+bucket+":"+prefix))
				return
			}
			if !yield(fromInfo(bucket, info), nil) {
				return
			}
		}
	}
}

// NotifyMinIONATS sets the bucket's notification so that MinIO publishes
// every object-created event to its NATS target targetID (the suffix of
// the MINIO_NOTIFY_NATS_*_<ID> settings), replacing other settings. A
// MinIO that has just started may not know its target yet (it connects to
// NATS in the background): the call is repeated for up to 30 seconds while
// MinIO says the target's ARN does not exist.
func (s *Store) NotifyMinIONATS(ctx context.Context, bucket, targetID string) error {
	cfg := notification.NewConfig(notification.NewArn("minio", "sqs", "", targetID, "nats"))
	cfg.AddEvents(notification.ObjectCreatedAll)
	var nc notification.Configuration
	nc.AddQueue(cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.c.SetBucketNotification(ctx, bucket, nc)
		if err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "ARN does not exist") || time.Now().After(deadline) {
			return fmt.Errorf("bucket %s notification: %w", bucket, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ErrReplaced is returned by RemoveVersion when the key holds another
// object than the one named: it is left alone.
var ErrReplaced = errors.New("objstore: the key holds another object now")

// RemoveVersion deletes one object: the version versionID where the
// bucket keeps versions, else the object under key if its ETag is still
// etag (a newer upload under the same key is never deleted; between the
// check and the delete there is a moment in which one could land). An
// object already gone is no error.
func (s *Store) RemoveVersion(ctx context.Context, bucket, key, versionID, etag string) error {
	if versionID == "" {
		o, err := s.Head(ctx, bucket, key)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil:
			return err
		case etag == "" || o.ETag != strings.Trim(etag, `"`):
			return fmt.Errorf("remove %s:%s: %w (ETag %s, not %s)", bucket, key, ErrReplaced, o.ETag, etag)
		}
	}
	if err := s.c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{VersionID: versionID}); err != nil {
		if err := wrap(err, "remove "+bucket+":"+key); !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// Client returns the underlying minio-go client.
func (s *Store) Client() *minio.Client { return s.c }
