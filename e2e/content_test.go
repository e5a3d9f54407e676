package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/internal/objstore"
	"github.com/imsflow/imsflow/internal/testenv"
	"github.com/imsflow/imsflow/pkg/events"
	"github.com/imsflow/imsflow/pkg/imsapi"
	"github.com/imsflow/imsflow/pkg/imsapi/imsemu"
)

// qcow2File is a small QCOW2 file: its header, declaring a virtual disk of
// virtual bytes, and padding.
func qcow2File(virtual uint64) []byte {
	b := make([]byte, 256<<10)
	copy(b, "QFI\xfb")
	binary.BigEndian.PutUint32(b[4:], 3)
	binary.BigEndian.PutUint32(b[20:], 16) // cluster bits
	binary.BigEndian.PutUint64(b[24:], virtual)
	return b
}

// vhdFile is a small fixed VHD: data, then the "conectix" footer.
func vhdFile(size uint64) []byte {
	b := make([]byte, 128<<10)
	f := b[len(b)-512:]
	copy(f, "conectix")
	binary.BigEndian.PutUint64(f[48:], size)
	binary.BigEndian.PutUint32(f[60:], 2)
	return b
}

// TestContentDecides: with bucket access the import reads each file's
// first and last bytes: a QCOW2 header's virtual size sets min_disk, and a
// file whose content contradicts its extension is rejected with both named.
func TestContentDecides(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Parallel()
	ctx := t.Context()
	bs := newBucketStack(t, []string{"images"})
	emu, err := imsemu.New(imsemu.Config{Credentials: map[string]imsapi.Secret{"AK": "SK"}, Store: bs.s3, TimeScale: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	client, _ := emu.Client()
	imp, err := importer.New(ctx, importer.Config{BitmapWait: time.Minute, BitmapPoll: time.Minute, ClaimTTL: 2 * time.Minute,
		ThrottleWait: time.Second, Workers: 2, AckWait: 30 * time.Second, MaxFailures: 50,
		Objects: objstore.Config{Endpoint: bs.endpoint, AccessKey: bs.accessKey, SecretKey: imsapi.Secret(bs.secretKey)}}, client, bs.js, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = imp.Run(runCtx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	handoffs, rejected := make(chan *nats.Msg, 10), make(chan *nats.Msg, 10)
	if _, err := bs.nc.ChanSubscribe(events.SubjectJobSubmitted, handoffs); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.nc.ChanSubscribe(events.OutSubject(events.KindImport, events.StatusRejected), rejected); err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		if _, err := bs.minio.PutObject(ctx, "images", key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("disks/sparse.qcow2", qcow2File(50<<30))
	h := testenv.Receive[events.JobSubmitted](t, handoffs, 1)[0]
	var body imsapi.DataImageRequest
	if err := json.Unmarshal(emu.Submissions()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if h.Source.Key != "disks/sparse.qcow2" || body.MinDisk != 50 {
		t.Errorf("a 256 KiB QCOW2 with a 50 GiB disk was submitted with min_disk %d, want 50 (hand-off %+v)", body.MinDisk, h)
	}
	put("disks/really-a-vhd.qcow2", vhdFile(10<<30))
	put("disks/zeros.vmdk", make([]byte, 64<<10))
	for _, r := range testenv.Receive[events.Rejected](t, rejected, 2) {
		if r.ReasonCode != events.ReasonFormatMismatch || r.Stage != "sniff" {
			t.Errorf("rejection = %+v", r)
		}
		t.Logf("%s: %s", r.Source.Key, r.Reason)
	}
	if n := len(emu.Submissions()); n != 1 {
		t.Errorf("%d IMS submissions, want 1", n)
	}
}
