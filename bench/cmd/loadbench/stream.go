package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	streamBytes       = 10 << 20
	streamConcurrency = 4
)

// runStreams pushes 10 MiB bodies through the bare proxy and composio-guard,
// four at a time, and records how far each process's resident memory rose
// above its idle level: a proxy that buffered a body would rise by at least
// 40 MiB.
func (b *bench) runStreams(ctx context.Context, kind string) error {
	name := "stream_" + kind
	b.order = append(b.order, name)
	b.whats[name] = fmt.Sprintf("10 MiB %s through the proxy, %d at a time (RSS growth must not follow the body)", kind, streamConcurrency)
	b.results[name] = map[string]*row{}
	n := 8 * streamConcurrency
	if b.o.short {
		n = 2 * streamConcurrency
	}
	for _, tn := range []string{targetBare, targetGuard} {
		t, err := b.startTarget(tn)
		if err != nil {
			return err
		}
		r, err := b.streamTarget(ctx, t, kind, n)
		b.stopTarget(t)
		if err != nil {
			return fmt.Errorf("%s: %w", tn, err)
		}
		b.results[name][tn] = r
	}
	return nil
}

func (b *bench) streamTarget(ctx context.Context, t *target, kind string, n int) (*row, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: streamConcurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	one := func() (time.Duration, error) {
		start := time.Now()
		var req *http.Request
		var err error
		if kind == "download" {
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/download?bytes=%d", t.url, streamBytes), nil)
		} else {
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/upload", io.LimitReader(zeros{}, streamBytes))
			if req != nil {
				req.ContentLength = streamBytes
				req.Header.Set("Content-Type", "application/octet-stream")
			}
		}
		if err != nil {
			return 0, err
		}
		req.Header.Set("X-Api-Key", "bench-key")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer closeQuietly(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s answered %d", kind, resp.StatusCode)
		}
		if kind == "download" {
			got, err := io.Copy(io.Discard, resp.Body)
			if err != nil || got != streamBytes {
				return 0, fmt.Errorf("download: %d bytes of %d: %v", got, streamBytes, err)
			}
		} else {
			var a struct{ Bytes int64 }
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.Bytes != streamBytes {
				return 0, fmt.Errorf("upload: upstream got %d bytes of %d: %v", a.Bytes, streamBytes, err)
			}
		}
		return time.Since(start), nil
	}
	// A small request first: the idle level includes a warm connection.
	warm, err := c.Get(t.url + "/api/v3/toolkits")
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, warm.Body)
	closeQuietly(warm.Body)
	idle, err := memKiB(t.p.pid(), "VmRSS")
	if err != nil {
		return nil, err
	}
	c0, err := cpuTime(t.p.pid())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	times := make([]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range streamConcurrency {
		wg.Go(func() {
			for i := range jobs {
				d, err := one()
				if err != nil {
					errs <- err
					continue
				}
				times[i] = d
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	c1, err := cpuTime(t.p.pid())
	if err != nil {
		return nil, err
	}
	hwm, err := memKiB(t.p.pid(), "VmHWM")
	if err != nil {
		return nil, err
	}
	slices.Sort(times)
	return &row{
		rps:    float64(n) / elapsed.Seconds(),
		p50:    float64(times[n/2].Microseconds()),
		p99:    float64(times[min(n-1, n*99/100)].Microseconds()),
		cpuUS:  float64(c1-c0) / float64(time.Microsecond) / float64(n),
		rssKiB: hwm,
		note:   fmt.Sprintf("idle %.1f MiB, peak +%.1f MiB", float64(idle)/1024, float64(hwm-idle)/1024),
		growth: hwm - idle,
	}, nil
}

// zeros is an endless source of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
