package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// devLockFile is the file in the data directory that "imsflow dev" holds
// locked while it runs, and in which it notes its PID and addresses.
const devLockFile = "imsflow-dev.lock"

// devLock is the lock of a running "imsflow dev" on its data directory:
// a second one there would share the embedded NATS's store. The kernel
// releases it when the process ends, however it ends, so a crashed
// instance does not block the next.
type devLock struct {
	f *os.File
}

// errLocked is tryLock's answer when another process holds the lock.
var errLocked = errors.New("locked")

// dataDirInUseError is a data directory locked by another "imsflow dev".
type dataDirInUseError struct {
	// Dir is the data directory; Holder what the running instance noted
	// about itself ("PID 1234, NATS at nats://...").
	Dir, Holder string
}

func (e *dataDirInUseError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "its PID not yet noted"
	}
	return fmt.Sprintf("another imsflow dev (%s) is running on the data directory %s; stop it, or give this one a directory of its own with -data or IMSFLOW_DATA", holder, e.Dir)
}

// lockDataDir creates dir if need be and locks it for this process, or
// returns a *dataDirInUseError naming the instance that holds it.
func lockDataDir(dir string) (*devLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, devLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	if err := tryLock(f); err != nil {
		defer f.Close()
		if errors.Is(err, errLocked) {
			b, _ := io.ReadAll(io.LimitReader(f, 4096))
			return nil, &dataDirInUseError{Dir: dir, Holder: strings.TrimSpace(string(b))}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l := &devLock{f: f}
	if err := l.note(fmt.Sprintf("PID %d", os.Getpid())); err != nil {
		_ = f.Close()
		return nil, err
	}
	return l, nil
}

// note replaces what the lock file says about this instance.
func (l *devLock) note(about string) error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("lock file: %w", err)
	}
	if _, err := l.f.WriteAt([]byte(about+"\n"), 0); err != nil {
		return fmt.Errorf("lock file: %w", err)
	}
	return nil
}

// release empties the lock file and unlocks it. The file stays: removing
// it could let two instances lock two different files of one name.
func (l *devLock) release() {
	_ = l.f.Truncate(0)
	_ = l.f.Close()
}
