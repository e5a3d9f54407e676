package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process the harness runs: a NATS node, the emulator or
// a function replica. Its output goes to one log file, appended across
// restarts, with a marker line at each start and exit.
type proc struct {
	name    string
	bin     string
	args    []string
	env     []string
	logPath string
	// restartOnCrash: an exit the harness did not cause is followed by a
	// restart, as a process supervisor (Kubernetes, systemd) would do.
	restartOnCrash bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run has exited
	running bool
	killing bool // the harness killed it: the exit is expected
	starts  int
	crashes []crash
}

// crash is an exit the harness did not cause.
type crash struct {
	at     time.Time
	status string
	tail   []string // the log's last lines before the exit
}

func (p *proc) isRunning() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// supervisor starts, kills and restarts the children, and kills them all
// when the harness ends.
type supervisor struct {
	t0    time.Time
	notes io.Writer // the timeline: every start, kill and exit

	mu      sync.Mutex
	procs   []*proc
	closing bool
}

func (s *supervisor) note(format string, args ...any) {
	line := fmt.Sprintf("[%s] %s\n", since(s.t0), fmt.Sprintf(format, args...))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notes != nil {
		_, _ = io.WriteString(s.notes, line)
	}
}

func (s *supervisor) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *supervisor) add(p *proc) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
	return p
}

// start runs p unless it runs already.
func (s *supervisor) start(p *proc) error {
	if s.isClosing() {
		return errors.New("shutting down")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return nil
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "--- chaos: start #%d of %s at %s (+%s) ---\n", p.starts, p.name, time.Now().UTC().Format(time.RFC3339Nano), since(s.t0))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own, so that Ctrl-C in the terminal reaches
	// the harness only (which kills everything), and SIGKILL if the
	// harness itself dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.running, p.killing = cmd, done, true, false
	s.note("start %s (pid %d)", p.name, cmd.Process.Pid)
	go s.wait(p, cmd, f, done)
	return nil
}

func (s *supervisor) wait(p *proc, cmd *exec.Cmd, f *os.File, done chan struct{}) {
	err := cmd.Wait()
	status := exitStatus(err)
	tail := tailLines(p.logPath, 4)
	fmt.Fprintf(f, "--- chaos: %s (pid %d) exited: %s at %s (+%s) ---\n", p.name, cmd.Process.Pid, status, time.Now().UTC().Format(time.RFC3339Nano), since(s.t0))
	f.Close()
	p.mu.Lock()
	expected := p.killing
	p.running = false
	if !expected && !s.isClosing() {
		p.crashes = append(p.crashes, crash{at: time.Now(), status: status, tail: tail})
	}
	n := len(p.crashes)
	close(done)
	p.mu.Unlock()
	if expected || s.isClosing() {
		return
	}
	s.note("UNEXPECTED EXIT of %s (pid %d): %s", p.name, cmd.Process.Pid, status)
	if !p.restartOnCrash {
		return
	}
	// Restart as a supervisor would, backing off on a crash loop.
	wait := min(time.Duration(1<<min(n-1, 4))*time.Second, 10*time.Second)
	time.Sleep(wait)
	if err := s.start(p); err != nil && !s.isClosing() {
		s.note("restart of %s failed: %v", p.name, err)
	}
}

// kill sends SIGKILL to p and waits for its exit (kill -9: no drain).
func (s *supervisor) kill(p *proc) (pid int, err error) {
	p.mu.Lock()
	if !p.running {
		p.mu.Unlock()
		return 0, fmt.Errorf("%s is not running", p.name)
	}
	p.killing = true
	pid, done := p.cmd.Process.Pid, p.done
	p.mu.Unlock()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return pid, fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pid)
	}
	return pid, nil
}

// stopAll kills every child; nothing restarts afterwards.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	s.closing = true
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	var dones []chan struct{}
	for _, p := range procs {
		p.mu.Lock()
		if p.running {
			p.killing = true
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
			dones = append(dones, p.done)
		}
		p.mu.Unlock()
	}
	deadline := time.After(10 * time.Second)
	for _, d := range dones {
		select {
		case <-d:
		case <-deadline:
			return
		}
	}
}

// crashes returns every unexpected exit so far, by process.
func (s *supervisor) crashes() map[string][]crash {
	s.mu.Lock()
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	out := map[string][]crash{}
	for _, p := range procs {
		p.mu.Lock()
		if len(p.crashes) > 0 {
			out[p.name] = append([]crash(nil), p.crashes...)
		}
		p.mu.Unlock()
	}
	return out
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	return err.Error()
}

// tailLines returns the last n non-empty lines of a file (from its last
// 16 KiB).
func tailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(st.Size()-16<<10, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	var lines []string
	for l := range bytes.SplitSeq(buf, []byte("\n")) {
		if s := strings.TrimSpace(string(l)); s != "" {
			lines = append(lines, s)
		}
	}
	return lines[max(len(lines)-n, 0):]
}

func since(t0 time.Time) string {
	if t0.IsZero() {
		return "0s"
	}
	return fmt.Sprintf("%5.1fs", time.Since(t0).Seconds())
}
