package imsemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ObjectStore is a real bucket store (OBS, MinIO, any S3 API) behind the
// emulator: imports check their file there, exports write theirs there.
// The in-memory catalogue ([Server.PutObject]) is refreshed from it before
// each submission. Its methods are called concurrently.
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
	if o.StorageClass == "" {
		// A HEAD's class is only in its headers: minio-go fills the field
		// from listings alone.
		o.StorageClass = info.Metadata.Get("X-Amz-Storage-Class")
	}
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
//
// A key the store lacks leaves the catalogue, unless it is a finished
// export that is not written yet (or whose export finished while the store
// was asked): the catalogue is ahead of the store there, and dropping the
// key would let a second export onto it pass IMG.0070.
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
	// Keys waiting to be written now, and the exports finished so far: a
	// key in either, or exported after this point, is kept below.
	s.mu.Lock()
	seq := s.exportSeq
	waiting := map[string]bool{}
	for _, k := range keys {
		waiting[k] = s.unwritten[objectKey{bucket, k}] != nil
	}
	s.mu.Unlock()

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
		ok := objectKey{bucket, k}
		switch o, inStore := found[k]; {
		case inStore:
			s.putObject(o)
		case waiting[k] || s.unwritten[ok] != nil || s.exportedAt[ok] > seq:
			// finished export the store has not got yet: keep it
		default:
			delete(s.objects, ok)
		}
	}
	return nil
}

// storeWriteTimeout bounds one attempt to write an export to the Store.
const storeWriteTimeout = time.Minute

// storeWrite is the write of one finished export to the Store. It starts
// as soon as the emulator sees the export end (see advance), runs outside
// s.mu, and is retried by the next answer that needs it after a failure.
// Its fields are guarded by s.mu.
type storeWrite struct {
	obj     Object
	imageID string
	writing bool          // an attempt is under way
	done    chan struct{} // closed when the attempt under way ends
	written bool          // the object is in the Store
	err     error         // of the last failed attempt
}

// finishExport records a successful export's object and, with a Store,
// starts writing it. It runs under s.mu.
func (s *Server) finishExport(j *job) {
	s.putObject(j.target)
	if s.cfg.Store == nil {
		return
	}
	key := objectKey{j.target.Bucket, j.target.Key}
	s.exportSeq++
	s.exportedAt[key] = s.exportSeq
	w := &storeWrite{obj: j.target, imageID: j.imageID}
	j.write = w
	s.unwritten[key] = w
	s.startWrite(w)
}

// startWrite starts one attempt to write w. It runs under s.mu; after
// Close it starts nothing.
func (s *Server) startWrite(w *storeWrite) {
	if s.closed || w.writing || w.written {
		return
	}
	w.writing = true
	done := make(chan struct{})
	w.done = done
	s.writers.Add(1)
	go func() {
		defer s.writers.Done()
		ctx, cancel := context.WithTimeout(s.writeCtx, storeWriteTimeout)
		err := s.cfg.Store.Put(ctx, w.obj, exportContent(w.obj, w.imageID))
		cancel()
		s.mu.Lock()
		w.writing = false
		if err == nil {
			w.written, w.err = true, nil
			key := objectKey{w.obj.Bucket, w.obj.Key}
			if s.unwritten[key] == w {
				delete(s.unwritten, key)
			}
		} else {
			w.err = err
			s.stats.StoreErrors++
		}
		close(done)
		s.mu.Unlock()
	}()
}

// awaitWrite waits until w is in the Store, retrying a failed write once,
// and answers 500 IMG.0061 when the attempt it waited for failed. It runs
// outside s.mu, and holds no lock while it waits.
func (s *Server) awaitWrite(ctx context.Context, w *storeWrite) *apiError {
	s.mu.Lock()
	if w.written {
		s.mu.Unlock()
		return nil
	}
	s.startWrite(w) // a failed attempt is tried again
	done, writing := w.done, w.writing
	s.mu.Unlock()
	if !writing {
		return &apiError{status: http.StatusServiceUnavailable, code: "APIGW.0503", gateway: true, message: "The emulator is shutting down."}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return &apiError{status: http.StatusServiceUnavailable, code: "APIGW.0503", gateway: true, message: "The request ended before the export was written."}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.written {
		return nil
	}
	return &apiError{status: http.StatusInternalServerError, code: "IMG.0061", message: fmt.Sprintf("The exported object %s:%s could not be written: %v", w.obj.Bucket, w.obj.Key, w.err)}
}

// endWrites lets no new write start and waits for those under way: until
// stop is closed (nil: cancel them at once), then it cancels the rest.
func (s *Server) endWrites(stop <-chan struct{}) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if stop == nil {
		s.stopWrites()
	}
	idle := make(chan struct{})
	go func() {
		s.writers.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-stop:
		s.stopWrites()
		<-idle
	}
	s.stopWrites()
}
