package retrydelay_test

import (
	"math"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/retrydelay"
)

func TestExponential(t *testing.T) {
	for _, tc := range []struct {
		first, limit time.Duration
		n            int
		want         time.Duration
	}{
		{time.Second, time.Minute, 0, time.Second},
		{time.Second, time.Minute, 1, time.Second},
		{time.Second, time.Minute, 2, 2 * time.Second},
		{time.Second, time.Minute, 6, 32 * time.Second},
		{time.Second, time.Minute, 7, time.Minute}, // 64 s, capped
		{time.Second, time.Minute, math.MaxInt, time.Minute},
		{time.Hour, time.Duration(math.MaxInt64), 200, time.Duration(math.MaxInt64)}, // no overflow
		{time.Minute, time.Second, 1, time.Second},                                   // a first wait over the cap is capped
		{0, time.Second, math.MaxInt, 0},
	} {
		if got := retrydelay.Exponential(tc.first, tc.limit, tc.n); got != tc.want {
			t.Errorf("Exponential(%v, %v, %d) = %v, want %v", tc.first, tc.limit, tc.n, got, tc.want)
		}
	}
}

// TestJitterBounds: every wait is within its range, and over many draws the range is used from
// near its bottom to near its top (the chance of failing by bad luck is below 2^-500).
func TestJitterBounds(t *testing.T) {
	const d = time.Second
	for _, tc := range []struct {
		name   string
		jitter func(time.Duration) time.Duration
		lo     time.Duration
	}{
		{"FullJitter", retrydelay.FullJitter, 0},
		{"EqualJitter", retrydelay.EqualJitter, d / 2},
	} {
		least, most := d, time.Duration(0)
		for range 1000 {
			w := tc.jitter(d)
			if w < tc.lo || w > d {
				t.Fatalf("%s(%v) = %v, outside [%v, %v]", tc.name, d, w, tc.lo, d)
			}
			least, most = min(least, w), max(most, w)
		}
		if quarter := (d - tc.lo) / 4; least > tc.lo+quarter || most < d-quarter {
			t.Errorf("%s(%v) drew only from [%v, %v]", tc.name, d, least, most)
		}
		if got := tc.jitter(0); got != 0 {
			t.Errorf("%s(0) = %v, want 0", tc.name, got)
		}
	}
}
