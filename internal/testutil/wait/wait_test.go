package wait

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf records the message and ends the goroutine, as the real
// one does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder in a goroutine of its own and returns what it failed with ("" if
// it did not fail).
func run(f func(t testing.TB)) string {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	polls := 0
	if msg := run(func(t testing.TB) {
		Until(t, 5*time.Second, "the third poll", func() bool { polls++; return polls == 3 })
	}); msg != "" || polls != 3 {
		t.Errorf("failed with %q after %d polls, want no failure after 3", msg, polls)
	}
}

func TestUntilFailsNamingWhatWasAwaited(t *testing.T) {
	msg := run(func(t testing.TB) { Until(t, 30*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(msg, "never") || !strings.Contains(msg, "30ms") {
		t.Errorf("failure %q does not name what was awaited and for how long", msg)
	}
}

func TestUntilShowingShowsTheStateSeen(t *testing.T) {
	msg := run(func(t testing.TB) {
		UntilShowing(t, 30*time.Millisecond, "never", func() bool { return false }, func() string { return "state 42" })
	})
	if !strings.Contains(msg, "never") || !strings.Contains(msg, "state 42") {
		t.Errorf("failure %q does not show what was seen", msg)
	}
}
