// Package testproc builds the project's binaries and runs them as real
// processes for the end-to-end, SDK, replica, fault, hostile, soak and
// deploy suites: start, wait for the "listening" log line, stop by PID.
// StartProxy and StartFake start the proxy and the fake Composio with one
// base environment; the fake's control API is reached through
// testproc/fakectl.
package testproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// RepoRoot returns the module root (the folder holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testproc: cannot locate source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles the main package pkg (e.g. "./cmd/proxy") once per test
// binary and returns the path of the executable. Extra go build flags (such
// as -race) may be given.
func Build(t testing.TB, pkg string, flags ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + " " + strings.Join(flags, " ")
	if p, ok := built[key]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "composio-guard-bin-")
		if err != nil {
			t.Fatalf("testproc: temp dir: %v", err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, fmt.Sprintf("%s-%d", filepath.Base(pkg), len(built)))
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testproc: go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	built[key] = out
	return out
}

// Proc is a running binary.
type Proc struct {
	Cmd *exec.Cmd
	// Fields holds the JSON members of the line that announced the listener
	// (for the proxy: proxy_addr, admin_addr; for the fake: addr).
	Fields map[string]any

	mu   sync.Mutex
	logs bytes.Buffer // every line, or (keep > 0) unused
	ring []string     // the last keep lines, oldest at next
	next int
	keep int
	done chan struct{}
	err  error
}

func (p *Proc) addLine(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.keep == 0:
		p.logs.Write(line)
		p.logs.WriteByte('\n')
	case len(p.ring) < p.keep:
		p.ring = append(p.ring, string(line))
	default:
		p.ring[p.next] = string(line)
		p.next = (p.next + 1) % p.keep
	}
}

// PID is the process id (e.g. for /proc/PID/status).
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Addr returns a string member of the listening line, e.g. "proxy_addr".
func (p *Proc) Addr(name string) string {
	s, _ := p.Fields[name].(string)
	return s
}

// Logs returns everything the process wrote to stdout and stderr so far
// (the last lines only, for a process started with KeepLines).
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keep == 0 {
		return p.logs.String()
	}
	var b strings.Builder
	for i := range len(p.ring) {
		b.WriteString(p.ring[(p.next+i)%len(p.ring)])
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitLogs polls Logs until ok holds or within has passed, and returns the
// last Logs it read. A line the process has written may still be in the pipe
// when a test looks: an access line is written after its answer may already
// have reached the client, and the reader of the pipe runs when it is
// scheduled.
func (p *Proc) WaitLogs(within time.Duration, ok func(logs string) bool) string {
	deadline := time.Now().Add(within)
	for {
		logs := p.Logs()
		if ok(logs) || time.Now().After(deadline) {
			return logs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Start runs bin with env added to a minimal environment and waits (up to
// 20 s) for a JSON line whose "msg" is "listening". The process is stopped
// when the test ends.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	return start(t, bin, env, args, 0)
}

// start is Start keeping only the last keep log lines (all when 0).
func start(t testing.TB, bin string, env, args []string, keep int) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("testproc: start %s: %v", bin, err)
	}
	p := &Proc{Cmd: cmd, keep: keep, done: make(chan struct{})}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			p.addLine(line)
			if !sent {
				var m map[string]any
				if json.Unmarshal(line, &m) == nil && m["msg"] == "listening" {
					ready <- m
					sent = true
				}
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.Kill() })
	select {
	case m := <-ready:
		p.Fields = m
	case <-p.done:
		t.Fatalf("testproc: %s exited before listening: %v\n%s", bin, p.err, p.Logs())
	case <-time.After(20 * time.Second):
		p.Kill()
		t.Fatalf("testproc: %s did not announce its listener in 20s\n%s", bin, p.Logs())
	}
	return p
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to d for the process to exit and returns its exit code
// (-1 when it did not exit in time or was killed by a signal).
func (p *Proc) Wait(d time.Duration) int {
	select {
	case <-p.done:
		if p.Cmd.ProcessState == nil {
			return -1
		}
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// Stop sends SIGTERM and waits up to 30 s; it kills the process after that.
func (p *Proc) Stop() int {
	_ = p.Signal(syscall.SIGTERM)
	code := p.Wait(30 * time.Second)
	if code == -1 {
		p.Kill()
	}
	return code
}

// Kill ends the process group at once; safe to call more than once.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
