package cache

import (
	"hash/maphash"
	"strconv"
	"testing"
	"time"
)

func TestLocalLayerBounds(t *testing.T) {
	t.Parallel()
	now := time.Now()
	l := newLocal(3, time.Second)
	for i := range 5 {
		l.put(l.generation("", ""), "k"+strconv.Itoa(i), "s", []byte("v"), now, now.Add(time.Hour), now, "")
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
	l.put(l.generation("", ""), "short", "s", []byte("v"), now, now.Add(100*time.Millisecond), now, "")
	if _, ok := l.get([]byte("short"), now.Add(200*time.Millisecond)); ok {
		t.Error("an entry outlived its freshness")
	}

	big := make([]byte, maxLocalValue+1)
	l.put(l.generation("", ""), "big", "s", big, now, now.Add(time.Hour), now, "")
	if _, ok := l.get([]byte("big"), now); ok {
		t.Error("a value over maxLocalValue was kept in process")
	}
	b := newLocal(1000, time.Second)
	half := make([]byte, maxLocalValue)
	for i := range localBudget/maxLocalValue + 10 {
		b.put(b.generation("", ""), strconv.Itoa(i), "s", half, now, now.Add(time.Hour), now, "")
	}
	if b.bytes > localBudget {
		t.Errorf("layer holds %d bytes, over its budget of %d", b.bytes, localBudget)
	}

}

// An invalidation that overtakes a read keeps its value out of the layer; one of another key or
// scope does not.
func TestLocalLayerGenerations(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name   string
		change func(*local)
		kept   bool
	}{
		{"nothing", func(*local) {}, true},
		{"another key written", func(l *local) { l.drop("other-key") }, true},
		{"another scope invalidated", func(l *local) { l.dropScope("other-scope") }, true},
		{"the key written", func(l *local) { l.drop("key") }, false},
		{"the scope invalidated", func(l *local) { l.dropScope("scope") }, false},
		{"the subscription lost", (*local).reset, false},
	} {
		l := newLocal(10, time.Hour)
		for !apart(l, "key", "scope", "other-key", "other-scope") {
			l.seed = maphash.MakeSeed() // two of them share a stripe: the case would prove nothing
		}
		gen := l.generation("key", "scope")
		tc.change(l)
		l.put(gen, "key", "scope", []byte("v"), now, now.Add(time.Hour), now, "")
		if _, ok := l.get([]byte("key"), now); ok != tc.kept {
			t.Errorf("%s while the value was read: kept %v, want %v", tc.name, ok, tc.kept)
		}
	}
}

// apart reports whether each of names has a generation stripe of its own in l.
func apart(l *local, names ...string) bool {
	seen := map[*uint64]bool{}
	for _, n := range names {
		if seen[l.stripe(n)] {
			return false
		}
		seen[l.stripe(n)] = true
	}
	return true
}
