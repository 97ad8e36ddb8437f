package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// longResult is the soak's memory series.
type longResult struct {
	every   time.Duration
	rssKiB  []int64 // VmRSS, one sample per `every`
	hwmKiB  int64
	reqs    int64
	cpuUS   float64
	linkErr int64
}

// runLong keeps composio-guard busy with pass-through GETs (96 connections)
// and guarded links (32 connections, users cycling over 10,000 ids) for
// -long-duration, sampling its resident memory every 10 s.
func (b *bench) runLong(ctx context.Context) error {
	t, err := b.startTarget(targetGuard)
	if err != nil {
		return err
	}
	defer b.stopTarget(t)
	res := &longResult{every: 10 * time.Second}
	c0, err := cpuTime(t.p.pid())
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var getRes, linkRes wrkResult
	var getErr, linkErr error
	wg.Go(func() { getRes, getErr = runWrk(ctx, b.o, "get.lua", t.url, 96, b.o.longDuration) })
	wg.Go(func() { linkRes, linkErr = runWrk(ctx, b.o, "link.lua", t.url, 32, b.o.longDuration, "ac_bench") })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(res.every)
	defer tick.Stop()
sampling:
	for {
		select {
		case <-done:
			break sampling
		case <-tick.C:
			v, err := memKiB(t.p.pid(), "VmRSS")
			if err != nil {
				return err
			}
			res.rssKiB = append(res.rssKiB, v)
		}
	}
	if getErr != nil {
		return getErr
	}
	if linkErr != nil {
		return linkErr
	}
	c1, err := cpuTime(t.p.pid())
	if err != nil {
		return err
	}
	if res.hwmKiB, err = memKiB(t.p.pid(), "VmHWM"); err != nil {
		return err
	}
	res.reqs = getRes.Requests + linkRes.Requests
	res.linkErr = linkRes.ErrStatus + linkRes.socketErrors() + getRes.ErrStatus + getRes.socketErrors()
	if res.reqs > 0 {
		res.cpuUS = float64(c1-c0) / float64(time.Microsecond) / float64(res.reqs)
	}
	b.longRes = res
	b.checks = append(b.checks, verdict{name: "long: every request answered", measured: fmt.Sprintf("%d errors in %d requests", res.linkErr, res.reqs),
		limit: "0 errors", pass: res.linkErr == 0})
	return nil
}

// flat compares the highest RSS of the last third of the soak with the
// highest of the middle third (the first third is warm-up: leases filling,
// heap finding its size).
func (l *longResult) flat() (early, late int64, ok bool) {
	n := len(l.rssKiB)
	if n < 3 {
		return 0, 0, false
	}
	for _, v := range l.rssKiB[n/3 : 2*n/3] {
		early = max(early, v)
	}
	for _, v := range l.rssKiB[2*n/3:] {
		late = max(late, v)
	}
	slack := max(2048, early/20) // 2 MiB or 5%
	return early, late, late <= early+slack
}

func (l *longResult) String() string {
	s := ""
	for i, v := range l.rssKiB {
		if i%6 == 5 { // one value a minute
			s += fmt.Sprintf(" %.1f", float64(v)/1024)
		}
	}
	return s
}
