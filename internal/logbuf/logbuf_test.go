package logbuf

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// output records what reaches the real output, write by write.
type output struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes++
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func (o *output) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writes
}

// TestWriterBatchesInOrder: lines written from many goroutines all arrive, whole and in the
// order of their writes per goroutine, in far fewer writes than lines; nothing reaches the output
// before the delay or a Flush.
func TestWriterBatchesInOrder(t *testing.T) {
	out := &output{}
	w := New(out, time.Hour, 0) // only Flush writes
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 250 {
				fmt.Fprintf(w, "g%d line %03d\n", g, i)
			}
		})
	}
	wg.Wait()
	if out.count() != 0 {
		t.Fatalf("%d writes reached the output before the delay", out.count())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	next := map[string]int{}
	for _, l := range lines {
		var g string
		var i int
		if _, err := fmt.Sscanf(l, "%s line %d", &g, &i); err != nil {
			t.Fatalf("line %q torn: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("%s: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	if out.count() != 1 {
		t.Errorf("%d writes for 1000 lines, want 1", out.count())
	}
}

// TestWriterFlushesAfterTheDelay: a line reaches the output by itself, without Flush.
func TestWriterFlushesAfterTheDelay(t *testing.T) {
	out := &output{}
	w := New(out, time.Millisecond, 0)
	fmt.Fprintln(w, "hello")
	wait.UntilShowing(t, 10*time.Second, "the line reaches the output", func() bool { return out.String() == "hello\n" },
		func() string { return fmt.Sprintf("%q", out.String()) })
}

// TestWriterFullBufferWritesThrough: a write that does not fit writes the buffer and itself at
// once, in order, so memory stays bounded and nothing is dropped.
func TestWriterFullBufferWritesThrough(t *testing.T) {
	out := &output{}
	w := New(out, time.Hour, 16)
	fmt.Fprint(w, "0123456789\n")
	fmt.Fprint(w, "abcdefghij\n")
	if got := out.String(); got != "0123456789\nabcdefghij\n" {
		t.Fatalf("output %q", got)
	}
	fmt.Fprint(w, "x\n")
	if got := out.String(); got != "0123456789\nabcdefghij\n" {
		t.Fatalf("a small line was not buffered: %q", got)
	}
}

// TestWriterClose: Close writes what is buffered, and later writes go straight through.
func TestWriterClose(t *testing.T) {
	out := &output{}
	w := New(out, time.Hour, 0)
	fmt.Fprint(w, "a\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\n" {
		t.Fatalf("after Close: %q", out.String())
	}
	fmt.Fprint(w, "b\n")
	if out.String() != "a\nb\n" {
		t.Fatalf("a write after Close: %q", out.String())
	}
}
