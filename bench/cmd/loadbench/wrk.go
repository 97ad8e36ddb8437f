package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// wrkResult is the line bench/wrk/report.lua prints.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	P50US      int64   `json:"p50_us"`
	P99US      int64   `json:"p99_us"`
	MeanUS     float64 `json:"mean_us"`
	MaxUS      int64   `json:"max_us"`
	ErrConnect int64   `json:"err_connect"`
	ErrRead    int64   `json:"err_read"`
	ErrWrite   int64   `json:"err_write"`
	ErrStatus  int64   `json:"err_status"` // answers with a status of 400 or more
	ErrTimeout int64   `json:"err_timeout"`
}

func (r wrkResult) socketErrors() int64 {
	return r.ErrConnect + r.ErrRead + r.ErrWrite + r.ErrTimeout
}

func (r wrkResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// runWrk runs one wrk thread pinned to cpu for d against url with the
// workload script. The run is bounded: it is killed by PID 30 s after d.
func runWrk(ctx context.Context, o *options, script, url string, conns int, d time.Duration, args ...string) (wrkResult, error) {
	secs := max(1, int(math.Ceil(d.Seconds())))
	argv := []string{"-c", o.loadCPU, o.wrk, "-t1", "-c", fmt.Sprint(conns), "-d", fmt.Sprintf("%ds", secs),
		"--timeout", "10s", "-s", o.scriptDir + "/" + script, url}
	if len(args) > 0 {
		argv = append(append(argv, "--"), args...)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s%s", script, err, stdout.String(), stderr.String())
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "BENCHJSON "); ok {
			var r wrkResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return wrkResult{}, fmt.Errorf("wrk %s: report line: %w", script, err)
			}
			return r, nil
		}
	}
	return wrkResult{}, fmt.Errorf("wrk %s printed no report line:\n%s%s", script, stdout.String(), stderr.String())
}
