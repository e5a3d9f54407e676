package imsemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ObjectStore is a real bucket store (OBS, MinIO, any S3 API) behind the
// emulator: imports check their file there, exports write theirs there.
// The in-memory catalogue ([Server.PutObject]) is refreshed from it before
// each submission.
type ObjectStore interface {
	// Stat returns the object, with ok false when the bucket has no such key.
	Stat(ctx context.Context, bucket, key string) (o Object, ok bool, err error)
	// BucketExists reports whether the bucket exists and can be reached.
	BucketExists(ctx context.Context, bucket string) (bool, error)
	// Put writes the file of a finished export.
	Put(ctx context.Context, o Object, content []byte) error
}

// MetaVirtualSize is the user metadata (x-amz-meta-/x-obs-meta-) an object
// can carry to tell the emulator the size of the disk inside the file.
const MetaVirtualSize = "Ims-Virtual-Size"

// S3Store is an ObjectStore on the S3 API.
type S3Store struct {
	client *minio.Client
}

// NewS3Store connects to an S3-compatible endpoint ("host:port"); secure
// selects HTTPS.
func NewS3Store(endpoint, accessKey, secretKey string, secure bool) (*S3Store, error) {
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(accessKey, secretKey, ""), Secure: secure})
	if err != nil {
		return nil, fmt.Errorf("imsemu: s3 endpoint %s: %w", endpoint, err)
	}
	return &S3Store{client: c}, nil
}

// Stat implements ObjectStore.
func (st *S3Store) Stat(ctx context.Context, bucket, key string) (Object, bool, error) {
	info, err := st.client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "NoSuchKey", "NoSuchBucket", "NotFound":
			return Object{}, false, nil
		}
		return Object{}, false, fmt.Errorf("imsemu: stat %s:%s: %w", bucket, key, err)
	}
	o := Object{Bucket: bucket, Key: key, Size: info.Size, StorageClass: info.StorageClass}
	for k, v := range info.UserMetadata {
		if strings.EqualFold(k, MetaVirtualSize) {
			o.VirtualSize, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return o, true, nil
}

// BucketExists implements ObjectStore.
func (st *S3Store) BucketExists(ctx context.Context, bucket string) (bool, error) {
	ok, err := st.client.BucketExists(ctx, bucket)
	if err != nil {
		return false, fmt.Errorf("imsemu: bucket %s: %w", bucket, err)
	}
	return ok, nil
}

// Put implements ObjectStore.
func (st *S3Store) Put(ctx context.Context, o Object, content []byte) error {
	_, err := st.client.PutObject(ctx, o.Bucket, o.Key, bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{
		ContentType:  "application/octet-stream",
		UserMetadata: map[string]string{MetaVirtualSize: strconv.FormatInt(o.Size, 10)},
	})
	if err != nil {
		return fmt.Errorf("imsemu: put %s:%s: %w", o.Bucket, o.Key, err)
	}
	return nil
}

// exportContent is what an export writes to a real store: a small JSON
// note standing for the image file (the image's size is in the object's
// metadata), not gigabytes of data.
func exportContent(o Object, imageID string) []byte {
	b, _ := json.Marshal(map[string]any{"imsemu_export": true, "image_id": imageID, "size": o.Size, "key": o.Key})
	return b
}

// syncFromStore refreshes the catalogue with what a submission will look
// at: the import's file (and a RAW file's bitmap) or the export's target,
// and their bucket. It runs before the handler, outside s.mu.
func (s *Server) syncFromStore(r *request, op string) *apiError {
	if s.cfg.Store == nil {
		return nil
	}
	var body struct {
		ImageURL  string `json:"image_url"`
		BucketURL string `json:"bucket_url"`
	}
	if json.Unmarshal(r.body, &body) != nil {
		return nil // the handler answers the malformed body
	}
	url := body.ImageURL
	if op == OpExport {
		url = body.BucketURL
	}
	bucket, key, cut := strings.Cut(url, ":")
	if !cut || bucket == "" || key == "" {
		return nil
	}
	keys := []string{key}
	if strings.HasSuffix(strings.ToLower(key), ".raw") {
		keys = append(keys, key[:len(key)-len(".raw")]+".mf")
	}
	ctx := r.Context()
	exists, err := s.cfg.Store.BucketExists(ctx, bucket)
	if err != nil {
		return &apiError{status: 500, code: "IMG.0061", message: "The object store could not be reached: " + err.Error()}
	}
	found := map[string]Object{}
	for _, k := range keys {
		if !exists {
			break
		}
		o, ok, err := s.cfg.Store.Stat(ctx, bucket, k)
		if err != nil {
			return &apiError{status: 500, code: "IMG.0061", message: "The object store could not be reached: " + err.Error()}
		}
		if ok {
			found[k] = o
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if exists {
		s.buckets[bucket] = true
	} else {
		delete(s.buckets, bucket)
	}
	for _, k := range keys {
		if o, ok := found[k]; ok {
			s.putObject(o)
		} else {
			delete(s.objects, objectKey{bucket, k})
		}
	}
	return nil
}

// flushWrites writes finished exports to the store. It runs after the
// handler and before the answer, one flush at a time, so that a client
// that sees an export job SUCCESS finds the object in the bucket.
func (s *Server) flushWrites(r *request) *apiError {
	if s.cfg.Store == nil {
		return nil
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	todo := s.unwritten
	s.unwritten = nil
	s.mu.Unlock()
	for i, w := range todo {
		if err := s.cfg.Store.Put(r.Context(), w.obj, exportContent(w.obj, w.imageID)); err != nil {
			s.mu.Lock()
			s.unwritten = append(todo[i:], s.unwritten...)
			s.stats.StoreErrors++
			s.mu.Unlock()
			return &apiError{status: 500, code: "IMG.0061", message: "The object store could not be written: " + err.Error()}
		}
	}
	return nil
}
