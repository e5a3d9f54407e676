package testenv

import "encoding/json"

// RunnerLine is one line of internal/runner's log: "message" (one per
// settled message, with its outcome) or "drained".
type RunnerLine struct {
	Message   string `json:"message"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason"`
	Subject   string `json:"subject"`
	Delivery  uint64 `json:"delivery"`
	StreamSeq uint64 `json:"stream_seq"`
}

// RunnerLog is a zerolog writer that passes the runner's "message" and
// "drained" lines to the channel, the tests' synchronisation point. A line
// that finds the channel full is dropped rather than block the runner, so
// give it room for every line a test reads.
type RunnerLog chan RunnerLine

// NewRunnerLog returns a RunnerLog with room for size lines.
func NewRunnerLog(size int) RunnerLog { return make(RunnerLog, size) }

// Write implements io.Writer.
func (l RunnerLog) Write(p []byte) (int, error) {
	var line RunnerLine
	if json.Unmarshal(p, &line) == nil && (line.Message == "message" || line.Message == "drained") {
		select {
		case l <- line:
		default:
		}
	}
	return len(p), nil
}
