package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderEntry is a key's last revision as its stream's leader has it.
type LeaderEntry struct {
	Revision uint64
	Created  time.Time
	Value    []byte
}

// jsNoMessageFound is JetStream's error code for a message get that
// finds nothing (JSNoMessageFoundErr).
const jsNoMessageFound = 10037

// LeaderGet reads key's last revision in bucket from the leader of the
// bucket's stream. jetstream.KeyValue.Get is a direct get, which any
// replica answers from what it has: one that lags (a node just back
// from a partition) answers "not found" for a key the others hold. A
// read that decides to leave something alone must not believe that;
// LeaderGet asks the leader only, at the price of that one node's work.
// A missing, deleted or purged key is jetstream.ErrKeyNotFound.
func LeaderGet(ctx context.Context, js jetstream.JetStream, bucket, key string) (LeaderEntry, error) {
	req, _ := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{"$KV." + bucket + "." + key})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return LeaderEntry{}, fmt.Errorf("get %s from %s's leader: %w", key, bucket, err)
	}
	var resp struct {
		Message *struct {
			Seq     uint64    `json:"seq"`
			Headers []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return LeaderEntry{}, fmt.Errorf("get %s from %s's leader: %w", key, bucket, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == jsNoMessageFound:
		return LeaderEntry{}, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return LeaderEntry{}, fmt.Errorf("get %s from %s's leader: %s (%d)", key, bucket, resp.Error.Description, resp.Error.Code)
	case resp.Message == nil:
		return LeaderEntry{}, fmt.Errorf("get %s from %s's leader: %w", key, bucket, jetstream.ErrInvalidJetStreamResponse)
	}
	if len(resp.Message.Headers) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Headers)
		if err != nil {
			return LeaderEntry{}, fmt.Errorf("get %s from %s's leader: %w", key, bucket, err)
		}
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return LeaderEntry{}, jetstream.ErrKeyNotFound
		}
	}
	m := resp.Message
	return LeaderEntry{Revision: m.Seq, Created: m.Time, Value: m.Data}, nil
}
