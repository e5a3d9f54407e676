package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imagefmt"
)

// objectStore reads objects' bytes and asks whether one exists;
// *objstore.Store has it.
type objectStore interface {
	ReadRange(ctx context.Context, bucket, key string, off, n int64) ([]byte, error)
	Head(ctx context.Context, bucket, key string) (objstore.Object, error)
	// Open streams an object from off (verify.go reads checksums with it).
	Open(ctx context.Context, bucket, key string, off int64, etag string) (io.ReadCloser, error)
}

// sniff reads the first HeadSize and last TailSize bytes of an image
// object (two ranged GETs, never the whole file) and says what they are.
// It returns nil where there is no bucket access or nothing to read.
func (h *importer) sniff(ctx context.Context, o events.ObjectCreated) (*imagefmt.Result, error) {
	if h.objects == nil || o.Size <= 0 {
		return nil, nil
	}
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(o.Key), "."))
	if _, image := formats[ext]; !image && ext != "img" {
		return nil, nil
	}
	head, err := h.objects.ReadRange(ctx, o.Bucket, o.Key, 0, min(o.Size, imagefmt.HeadSize))
	if err != nil {
		return nil, err
	}
	tail := head[max(len(head)-imagefmt.TailSize, 0):]
	if o.Size > int64(len(head)) {
		if tail, err = h.objects.ReadRange(ctx, o.Bucket, o.Key, o.Size-imagefmt.TailSize, imagefmt.TailSize); err != nil {
			return nil, err
		}
	}
	r := imagefmt.Detect(head, tail, o.Size)
	return &r, nil
}

// checkContent rejects an object whose bytes contradict its extension, or
// that is gone; otherwise it returns the disk size the header declares
// (0 when unknown).
func (h *importer) checkContent(ctx context.Context, o events.ObjectCreated, p plan) (int64, *events.Rejected, error) {
	content, err := h.sniff(ctx, o)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		h.forgetSum(ctx, o) // what verify.go kept of it
		rej := h.rejected(p, "sniff", events.ReasonObjectMissing, fmt.Sprintf("%s:%s is no longer in the bucket; upload it again", o.Bucket, o.Key), "", o.Metadata[MetaBatch])
		return 0, &rej, nil
	case err != nil:
		return 0, nil, fmt.Errorf("read the start and end of %s:%s: %w", o.Bucket, o.Key, err)
	case content == nil:
		return 0, nil, nil
	}
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(o.Key), "."))
	if v := strings.ToLower(strings.TrimSpace(o.Metadata[MetaFormat])); v != "" {
		ext = v
	}
	if bad, why := imagefmt.Contradicts(ext, *content); bad {
		rej := h.rejected(p, "sniff", events.ReasonFormatMismatch, why+"; rename the file or convert it", "", o.Metadata[MetaBatch])
		return 0, &rej, nil
	}
	return content.VirtualSize, nil, nil
}
