package main

import (
	"archive/tar"
	"errors"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestLayerDeterministic: the same files give the same layer whatever
// order the map yields them in, and the layer's entries have the owners,
// modes and times the images rely on.
func TestLayerDeterministic(t *testing.T) {
	date := time.Date(2026, 12, 1, 9, 22, 22, 0, time.UTC)
	files := func() map[string][]byte {
		return map[string][]byte{"imsflow": []byte("binary"), "etc/passwd": []byte("root\n"), "etc/group": []byte("root\n")}
	}
	a, err := layerOf(files(), []string{"tmp", "data"}, date)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := layerOf(files(), []string{"tmp", "data"}, date)
		if err != nil {
			t.Fatal(err)
		}
		da, _ := a.DiffID()
		db, _ := b.DiffID()
		if da != db {
			t.Fatalf("two layers of the same files: %s and %s", da, db)
		}
	}
	later, _ := layerOf(files(), []string{"tmp", "data"}, date.Add(time.Second))
	if d1, d2 := mustDiffID(t, a), mustDiffID(t, later); d1 == d2 {
		t.Error("a layer dated a second later has the same digest: the date is not in it")
	}

	r, err := a.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	type entry struct {
		mode     int64
		uid, gid int
	}
	want := map[string]entry{
		"data/":      {0o755, nonroot, nonroot},
		"etc/":       {0o755, 0, 0},
		"tmp/":       {0o1777, 0, 0},
		"etc/group":  {0o644, 0, 0},
		"etc/passwd": {0o644, 0, 0},
		"imsflow":    {0o755, 0, 0},
	}
	var order []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, h.Name)
		w, ok := want[h.Name]
		if !ok {
			t.Errorf("unexpected entry %q", h.Name)
			continue
		}
		if h.Mode != w.mode || h.Uid != w.uid || h.Gid != w.gid || !h.ModTime.Equal(date) {
			t.Errorf("%s: mode %o uid %d gid %d time %s; want %o %d %d %s", h.Name, h.Mode, h.Uid, h.Gid, h.ModTime, w.mode, w.uid, w.gid, date)
		}
		delete(want, h.Name)
	}
	for name := range want {
		t.Errorf("no entry %q", name)
	}
	if order[0] != "data/" || order[len(order)-1] != "imsflow" {
		t.Errorf("entries in order %q: want directories sorted first, then files sorted", order)
	}
}

func mustDiffID(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	d, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
