package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one process the benchmark started, pinned to a CPU with taskset
// (which execs the binary, so the PID is the binary's own).
type proc struct {
	name   string
	cmd    *exec.Cmd
	fields map[string]any // members of its "listening" line

	requestLines atomic.Int64 // access lines ("msg":"request") seen
	warnLines    atomic.Int64 // lines at WARN or above
	done         chan struct{}

	mu   sync.Mutex
	tail []string // start-up lines and later warnings, for error reports
}

// procs is every process started, so that each is stopped by its PID
// whatever path the benchmark leaves by.
var procs struct {
	mu  sync.Mutex
	all []*proc
}

// startProc runs bin pinned to cpu and waits for its "listening" line (JSON
// on stdout or stderr).
func startProc(name, cpu string, env []string, bin string, args ...string) (*proc, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpu, bin}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	// Its own process group, and SIGKILL if the benchmark dies first: no
	// process outlives the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: pipe: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	pw.Close()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	procs.mu.Lock()
	procs.all = append(procs.all, p)
	procs.mu.Unlock()

	ready := make(chan map[string]any, 1)
	go p.read(pr, ready)
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case f := <-ready:
		p.fields = f
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening:\n%s", name, p.lastLines())
	case <-time.After(20 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s did not announce its listener in 20s:\n%s", name, p.lastLines())
	}
}

func (p *proc) read(r io.ReadCloser, ready chan<- map[string]any) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	sent := false
	reqMsg := []byte(`"msg":"request"`)
	for sc.Scan() {
		line := sc.Bytes()
		// Keep this loop cheap: it shares the load CPU with wrk and the
		// upstream, and a reader that falls behind would block the
		// proxy's log writes.
		if sent && bytes.Contains(line, reqMsg) {
			p.requestLines.Add(1)
			continue
		}
		warn := bytes.Contains(line, []byte(`"level":"warn"`)) || bytes.Contains(line, []byte(`"level":"error"`))
		if warn {
			p.warnLines.Add(1)
		}
		if sent && !warn {
			continue
		}
		p.mu.Lock()
		p.tail = append(p.tail, string(line))
		if len(p.tail) > 20 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
		if !sent {
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "listening" {
				ready <- m
				sent = true
			}
		}
	}
}

func (p *proc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// addr returns a string member of the listening line.
func (p *proc) addr(name string) string {
	s, _ := p.fields[name].(string)
	return s
}

// stop sends SIGTERM to the PID, then SIGKILL after 10 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func stopAll() {
	procs.mu.Lock()
	all := procs.all
	procs.all = nil
	procs.mu.Unlock()
	for _, p := range all {
		p.stop()
	}
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
var clockTick = func() float64 {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
}()

// cpuTime is the process's user + system CPU time, all threads.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("cpu time: unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("cpu time: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		return 0, errors.New("cpu time: bad /proc stat numbers")
	}
	return time.Duration(float64(ut+st) / clockTick * float64(time.Second)), nil
}

// memKiB reads one Vm* line (VmRSS, VmHWM) of /proc/<pid>/status, in KiB.
func memKiB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("memory: %s: %w", key, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("memory: no %s in /proc/%d/status", key, pid)
}
