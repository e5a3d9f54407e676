package imsemu

import "math"

// ProgressAt is the process_percent of a job (before IMS's cut to two
// decimals) at fraction x of its RUNNING phase: IMS publishes no curve,
// so the emulator's has the shape of the work an import does, and it is
// deliberately not a straight line, which would flatter any poller that
// extrapolates one:
//
//   - 0 to 4 % of the time: to 5 %, quickly (the task is set up; the
//     file's header is read);
//   - 4 to 85 %: to 90 %, the conversion and copy of the data, whose pace
//     grows as it goes (the exponent 1.15: a slow start, a faster end, the
//     case that makes a linear forecast late rather than early);
//   - 85 to 100 %: to the end, slowly: the image is registered and its
//     snapshot made, work that does not follow the bytes. A job still
//     RUNNING reports at most 0.99 (1 is SUCCESS).
//
// Before it comes INIT (Config.InitDuration), at 0.
func ProgressAt(x float64) float64 {
	switch {
	case x <= 0:
		return 0
	case x < setupEnd:
		return setupPercent * x / setupEnd
	case x < copyEnd:
		u := (x - setupEnd) / (copyEnd - setupEnd)
		return setupPercent + (copyPercent-setupPercent)*math.Pow(u, copyExponent)
	case x < 1:
		return copyPercent + (1-copyPercent)*(x-copyEnd)/(1-copyEnd)
	}
	return 1
}

// The phases of ProgressAt.
const (
	setupEnd, setupPercent = 0.04, 0.05
	copyEnd, copyPercent   = 0.85, 0.90
	copyExponent           = 1.15
)

// progressTime is the inverse of ProgressAt: the least fraction of the
// RUNNING phase at which it reaches p (0 <= p <= 1).
func progressTime(p float64) float64 {
	if p <= 0 {
		return 0
	}
	lo, hi := 0.0, 1.0
	for range 60 { // ProgressAt rises strictly: bisection to 1e-18
		mid := (lo + hi) / 2
		if ProgressAt(mid) >= p {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}
