package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDataDirLock: one lock per data directory; the second is told who
// holds it; a released lock, or one whose holder died, is free again.
func TestDataDirLock(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDataDir(dir)
	var inUse *dataDirInUseError
	if !errors.As(err, &inUse) || inUse.Holder != fmt.Sprintf("PID %d", os.Getpid()) || inUse.Dir != dir {
		t.Fatalf("second lock: %v, want the first's PID", err)
	}
	if err := first.note("PID 1, NATS at nats://127.0.0.1:4222"); err != nil {
		t.Fatal(err)
	}
	_, err = lockDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), "another imsflow dev (PID 1, NATS at nats://127.0.0.1:4222) is running on the data directory "+dir) ||
		!strings.Contains(err.Error(), "IMSFLOW_DATA") {
		t.Fatalf("second lock: %v", err)
	}
	first.release()
	second, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// A holder that dies leaves its notes, but not its lock.
	_ = second.f.Close()
	third, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	third.release()
}
