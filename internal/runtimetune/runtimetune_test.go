package runtimetune

import (
	"errors"
	"math"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// restore puts the runtime's policy back as it was when the test began.
func restore(t *testing.T) {
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	lim := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(lim)
	})
}

func TestApply(t *testing.T) {
	const container = 256 << 20
	cases := []struct {
		name      string
		env       map[string]string
		limit     memlimit.Provider
		wantGC    int
		wantLimit int64
		wantErr   bool
	}{
		{"defaults in a container", nil, memlimit.Limit(container), DefaultGCPercent, container * 9 / 10, false},
		{"no container limit", nil, func() (uint64, error) { return 0, memlimit.ErrNoLimit }, DefaultGCPercent, 0, false},
		{"the operator's GOGC", map[string]string{"GOGC": "150"}, memlimit.Limit(container), 150, container * 9 / 10, false},
		{"the operator's GOMEMLIMIT", map[string]string{"GOMEMLIMIT": "100MiB"}, memlimit.Limit(container), DefaultGCPercent, -1, false},
		{"the limit unreadable", nil, func() (uint64, error) { return 0, errors.New("no cgroup") }, DefaultGCPercent, -1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			restore(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if v, ok := tc.env["GOGC"]; ok && v == "150" {
				debug.SetGCPercent(150) // what the runtime reads from GOGC at start
			}
			before := debug.SetMemoryLimit(-1)
			p, err := Apply(tc.limit)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want one: %v", err, tc.wantErr)
			}
			if got := debug.SetGCPercent(100); got != tc.wantGC || p.GCPercent != tc.wantGC {
				t.Errorf("GC target = %d (reported %d), want %d", got, p.GCPercent, tc.wantGC)
			}
			got := debug.SetMemoryLimit(-1)
			want := tc.wantLimit
			switch want {
			case -1: // left as it was
				want = before
			case 0:
				want = math.MaxInt64
			}
			if got != want {
				t.Errorf("memory limit = %d, want %d", got, want)
			}
			if tc.wantLimit > 0 && p.MemoryLimit != tc.wantLimit {
				t.Errorf("reported memory limit = %d, want %d", p.MemoryLimit, tc.wantLimit)
			}
		})
	}
}
