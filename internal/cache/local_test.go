package cache

import (
	"strconv"
	"testing"
	"time"
)

func TestLocalLayerBounds(t *testing.T) {
	t.Parallel()
	now := time.Now()
	l := newLocal(3, time.Second)
	for i := range 5 {
		l.put(l.generation(), "k"+strconv.Itoa(i), "s", []byte("v"), now, now.Add(time.Hour), now, "")
	}
	if l.len() != 3 {
		t.Fatalf("entries = %d, want 3 (the size bound)", l.len())
	}
	if _, ok := l.get([]byte("k0"), now); ok {
		t.Error("the least recently used entry was kept")
	}
	if _, ok := l.get([]byte("k4"), now.Add(2*time.Second)); ok {
		t.Error("an entry outlived the layer's max age")
	}
	l.put(l.generation(), "short", "s", []byte("v"), now, now.Add(100*time.Millisecond), now, "")
	if _, ok := l.get([]byte("short"), now.Add(200*time.Millisecond)); ok {
		t.Error("an entry outlived its freshness")
	}

	big := make([]byte, maxLocalValue+1)
	l.put(l.generation(), "big", "s", big, now, now.Add(time.Hour), now, "")
	if _, ok := l.get([]byte("big"), now); ok {
		t.Error("a value over maxLocalValue was kept in process")
	}
	b := newLocal(1000, time.Second)
	half := make([]byte, maxLocalValue)
	for i := range localBudget/maxLocalValue + 10 {
		b.put(b.generation(), strconv.Itoa(i), "s", half, now, now.Add(time.Hour), now, "")
	}
	if b.bytes > localBudget {
		t.Errorf("layer holds %d bytes, over its budget of %d", b.bytes, localBudget)
	}

	gen := l.generation()
	l.dropScope("other")
	l.put(gen, "late", "s", []byte("v"), now, now.Add(time.Hour), now, "")
	if _, ok := l.get([]byte("late"), now); ok {
		t.Error("a value read before an invalidation was put after it")
	}
}
