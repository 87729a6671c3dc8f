// Package wait owns the one way tests wait for something to happen: Until polls a condition
// until it holds or the time allowed runs out. It must not be used to let time pass (a test that
// needs time to pass, e.g. for a TTL to expire, sleeps and says so).
package wait

import (
	"testing"
	"time"
)

// Until polls cond every 10 ms until it returns true, and fails the test (naming what was awaited)
// when it has not within the given time.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	UntilShowing(t, within, what, cond, nil)
}

// UntilShowing is Until whose failure also shows what state returns at the deadline (the logs so
// far, the object as last read), so that a timeout says what was seen instead. A nil state shows
// nothing more.
func UntilShowing(t testing.TB, within time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			if state != nil {
				t.Fatalf("not within %s: %s; seen instead:\n%s", within, what, state())
			}
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // the polling interval, not a synchronisation
	}
}
