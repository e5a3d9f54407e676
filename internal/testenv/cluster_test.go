package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterStreamLeaderFailover: on a 3-node cluster an R3 stream keeps
// taking messages when its leader is killed (another node is elected),
// and the killed node, restarted, rejoins and catches up on what it
// missed.
func TestClusterStreamLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node JetStream cluster")
	}
	t.Parallel()
	ctx := t.Context()
	c := StartCluster(t, 3)
	nc, js := c.Connect(t, jetstream.WithDefaultTimeout(30*time.Second))
	create(t, "stream ORDERS", func() error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"},
			Replicas: 3, Storage: jetstream.FileStorage})
		return err
	})
	leader := c.WaitStreamLeader(t, "ORDERS")
	// A publish in flight on a connection to the node being killed gets
	// no answer: a client asks again, with the same message ID, which the
	// stream uses to drop a duplicate; the counts below would show one.
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			Until(t, fmt.Sprintf("publish %d acknowledged", i), func() (bool, string) {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := js.Publish(ctx, fmt.Sprintf("orders.%d", i), []byte("x"), jetstream.WithMsgID(fmt.Sprint(i)))
				return err == nil, fmt.Sprint(err)
			})
		}
	}
	publish(0, 100)

	c.Kill(leader)
	if c.Running(leader) || c.StreamLeader("ORDERS") == leader {
		t.Fatalf("node %s still runs or leads after Kill", c.Name(leader))
	}
	next := c.WaitStreamLeader(t, "ORDERS")
	if next == leader {
		t.Fatalf("the killed node %s is the leader", c.Name(leader))
	}
	// The client was perhaps on the killed node: it reconnects to another.
	Eventually(t, "the client to reconnect", nc.IsConnected)
	publish(100, 200)
	info, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if st := info.CachedInfo(); st.State.Msgs != 200 || st.State.LastSeq != 200 || st.Cluster == nil || st.Cluster.Leader == c.Name(leader) {
		t.Fatalf("after the failover: %+v, cluster %+v; want 200 messages, not led by the killed %s", st.State, st.Cluster, c.Name(leader))
	}

	c.Restart(t, leader)
	c.WaitHealthy(t, leader)
	Eventually(t, fmt.Sprintf("node %s's replica to hold the 200 messages", c.Name(leader)), func() bool {
		st, ok := c.ReplicaState(leader, "ORDERS")
		return ok && st.Msgs == 200 && st.LastSeq == 200
	})
	publish(200, 210)
	Eventually(t, "every replica to hold 210 messages", func() bool {
		for i := range c.Size() {
			if st, ok := c.ReplicaState(i, "ORDERS"); !ok || st.Msgs != 210 {
				return false
			}
		}
		return true
	})
}

// TestClusterLeaders: the index each leader function returns names the
// node the server itself reports as leader, for a stream, a key-value
// bucket and a durable consumer; and the meta leader is unique.
func TestClusterLeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node JetStream cluster")
	}
	t.Parallel()
	ctx := t.Context()
	c := StartCluster(t, 3)
	_, js := c.Connect(t, jetstream.WithDefaultTimeout(30*time.Second))
	if m := c.MetaLeader(); m < 0 {
		t.Fatal("no meta leader after StartCluster")
	}
	create(t, "stream JOBS", func() error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}, Replicas: 3})
		return err
	})
	var kv jetstream.KeyValue
	create(t, "bucket state", func() (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "state", Replicas: 3})
		return err
	})
	var cons jetstream.Consumer
	create(t, "consumer worker", func() (err error) {
		cons, err = js.CreateOrUpdateConsumer(ctx, "JOBS", jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy})
		return err
	})

	sl := c.WaitStreamLeader(t, "JOBS")
	si, err := js.Stream(ctx, "JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if got := si.CachedInfo().Cluster.Leader; got != c.Name(sl) {
		t.Errorf("StreamLeader = %s, the server says %s", c.Name(sl), got)
	}

	kl := c.WaitKVLeader(t, "state")
	if c.KVLeader("state") != kl {
		t.Errorf("KVLeader = %d, WaitKVLeader = %d", c.KVLeader("state"), kl)
	}
	Until(t, "a put acknowledged", func() (bool, string) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := kv.Put(ctx, "k", []byte("v"))
		return err == nil, fmt.Sprint(err)
	})
	ks, err := js.Stream(ctx, KVStream("state"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ks.CachedInfo().Cluster.Leader; got != c.Name(kl) {
		t.Errorf("KVLeader = %s, the server says %s", c.Name(kl), got)
	}

	cl := c.WaitConsumerLeader(t, "JOBS", "worker")
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ci.Cluster.Leader; got != c.Name(cl) {
		t.Errorf("ConsumerLeader = %s, the server says %s", c.Name(cl), got)
	}

	// Kill the consumer's leader: another takes over, and the consumer
	// still delivers.
	c.Kill(cl)
	if next := c.WaitConsumerLeader(t, "JOBS", "worker"); next == cl {
		t.Fatalf("killed node %s still leads the consumer", c.Name(cl))
	}
	nc2, js2 := c.Connect(t, jetstream.WithDefaultTimeout(30*time.Second))
	Eventually(t, "a second client connected", nc2.IsConnected)
	c.WaitStreamLeader(t, "JOBS") // the killed node may have led the stream too
	Until(t, "a publish acknowledged", func() (bool, string) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := js2.Publish(ctx, "jobs.1", []byte("x"), jetstream.WithMsgID("jobs.1"))
		return err == nil, fmt.Sprint(err)
	})
	cons2, err := js2.Consumer(ctx, "JOBS", "worker")
	if err != nil {
		t.Fatal(err)
	}
	// A pull that reaches no leader yet ("no responders") returns empty:
	// a client pulls again.
	Until(t, "the message fetched after the consumer's failover", func() (bool, string) {
		msgs, err := cons2.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return false, err.Error()
		}
		got := 0
		for m := range msgs.Messages() {
			got++
			if err := m.DoubleAck(ctx); err != nil {
				return false, "ack: " + err.Error()
			}
		}
		return got == 1, fmt.Sprintf("fetched %d (%v)", got, msgs.Error())
	})
}

// create makes an R3 asset, trying again while the cluster refuses to
// place it: under load a meta leader may see a peer offline for a moment
// (it missed the peer's statistics), as a client of a real cluster must
// expect.
func create(t *testing.T, what string, f func() error) {
	t.Helper()
	Until(t, what+" created", func() (bool, string) {
		err := f()
		return err == nil, fmt.Sprint(err)
	})
}
