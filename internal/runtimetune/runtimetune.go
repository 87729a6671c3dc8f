// Package runtimetune sets the Go runtime's memory policy of a gateway replica, once, at start:
// a garbage-collection target above Go's default, so that the collector runs less often and adds
// less to the tail of request latency, held in check by a soft memory limit at 90% of the
// container's memory limit (its cgroup's), so that the larger heap the target allows cannot push
// a replica into its OOM kill: near the limit, the collector runs as often as it must. An
// operator's GOGC, GOMEMLIMIT or AUTOMEMLIMIT (the library's ratio, or "off") wins over both.
//
// Why 400: on the miss path, the collector was the largest part of the p99 that the gateway adds
// over a bare proxy (docs/benchmarks.md, "2026-12-06 05:00"); a target of 400 took 0.3-0.5 ms off
// it, for about 12 MiB more at peak under that load and nothing at idle.
//
// It reads the cgroup with KimMachineGun/automemlimit rather than by hand: cgroup v1 and v2, nested
// hierarchies and mount namespaces are that library's concern.
package runtimetune

import (
	"math"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// DefaultGCPercent is the collector's target when GOGC is not set (Go's own default is 100).
const DefaultGCPercent = 400

// memoryLimitRatio is the share of the container's memory limit used as the soft limit.
const memoryLimitRatio = 0.9

// Policy is the runtime's memory policy in force.
type Policy struct {
	// GCPercent is the collector's target (GOGC): the heap grows by this percentage of the live
	// heap between two collections; negative when the collector is off.
	GCPercent int `json:"gcPercent"`
	// MemoryLimit is the soft memory limit in bytes; 0 when there is none.
	MemoryLimit int64 `json:"memoryLimit"`
}

// Apply sets the policy: DefaultGCPercent unless GOGC is set, and a soft memory limit of 90% of
// what limit reports unless GOMEMLIMIT is set (memlimit.FromCgroup in production; no limit when
// it reports none). It returns the policy in force; on error (the limit could not be read) the
// collector's target is set all the same.
func Apply(limit memlimit.Provider) (Policy, error) {
	gc := DefaultGCPercent
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gc)
	} else {
		gc = debug.SetGCPercent(100) // read what the runtime took from GOGC, and put it back
		debug.SetGCPercent(gc)
	}
	bytes, err := memlimit.Set(memlimit.WithProvider(limit), memlimit.WithRatio(memoryLimitRatio))
	if bytes == math.MaxInt64 {
		bytes = 0
	}
	return Policy{GCPercent: gc, MemoryLimit: bytes}, err
}
