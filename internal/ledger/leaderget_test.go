package ledger

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imsflow/imsflow/internal/testenv"
)

// TestLeaderGet: a key's last revision, its time and value; missing,
// deleted and purged keys are ErrKeyNotFound, as for KeyValue.Get.
func TestLeaderGet(t *testing.T) {
	_, js := testenv.StartNATS(t).Connect(t)
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leaderget", History: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LeaderGet(ctx, js, "leaderget", "slot.0001"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("missing key: %v, want ErrKeyNotFound", err)
	}
	if _, err := kv.Put(ctx, "slot.0001", []byte("a")); err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "slot.0001", []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := kv.Get(ctx, "slot.0001")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LeaderGet(ctx, js, "leaderget", "slot.0001")
	if err != nil || got.Revision != rev || string(got.Value) != "b" || !got.Created.Equal(want.Created()) {
		t.Errorf("LeaderGet = %+v, %v; want revision %d, value b, created %s", got, err, rev, want.Created())
	}
	if err := kv.Delete(ctx, "slot.0001"); err != nil {
		t.Fatal(err)
	}
	if _, err := LeaderGet(ctx, js, "leaderget", "slot.0001"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("deleted key: %v, want ErrKeyNotFound", err)
	}
	if _, err := kv.Put(ctx, "slot.0002", []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "slot.0002"); err != nil {
		t.Fatal(err)
	}
	if _, err := LeaderGet(ctx, js, "leaderget", "slot.0002"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("purged key: %v, want ErrKeyNotFound", err)
	}
	if _, err := LeaderGet(ctx, js, "nosuchbucket", "k"); err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("missing bucket: %v, want an error other than ErrKeyNotFound", err)
	}
}

// TestLeaderGetCluster: on an R3 bucket, a client connected to a node
// that does not lead the bucket's stream reads through the leader.
func TestLeaderGetCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	c := testenv.StartCluster(t, 3)
	_, js := c.Connect(t)
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leaderget", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "slot.0001", []byte("held"))
	if err != nil {
		t.Fatal(err)
	}
	leader := c.WaitKVLeader(t, "leaderget")
	for i := range c.Size() {
		if i == leader {
			continue
		}
		nc, err := nats.Connect(c.Server(i).ClientURL(), nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fjs, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := LeaderGet(ctx, fjs, "leaderget", "slot.0001")
		if err != nil || got.Revision != rev || string(got.Value) != "held" {
			t.Errorf("through %s (not the leader): %+v, %v; want revision %d", c.Name(i), got, err, rev)
		}
	}
}
