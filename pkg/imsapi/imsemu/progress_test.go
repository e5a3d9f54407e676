package imsemu

import (
	"math"
	"testing"
)

// TestProgressAt: from 0 to 1, rising strictly, through the phases'
// corners, and not a straight line; progressTime inverts it.
func TestProgressAt(t *testing.T) {
	if ProgressAt(0) != 0 || ProgressAt(1) != 1 || ProgressAt(-1) != 0 || ProgressAt(2) != 1 {
		t.Error("ProgressAt outside (0, 1)")
	}
	for _, c := range []struct{ x, want float64 }{{setupEnd, setupPercent}, {copyEnd, copyPercent}} {
		if got := ProgressAt(c.x); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ProgressAt(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	prev := 0.0
	straight := true
	for i := 1; i < 1000; i++ {
		x := float64(i) / 1000
		p := ProgressAt(x)
		if p <= prev {
			t.Fatalf("ProgressAt(%v) = %v, not above %v", x, p, prev)
		}
		if math.Abs(p-x) > 0.02 {
			straight = false
		}
		if back := ProgressAt(progressTime(p)); math.Abs(back-p) > 1e-12 {
			t.Errorf("ProgressAt(progressTime(%v)) = %v", p, back)
		}
		prev = p
	}
	if straight {
		t.Error("ProgressAt is a straight line")
	}
}
