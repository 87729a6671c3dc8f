package promreg

import (
	"sync"
	"sync/atomic"
)

// Children keeps the label children of a metric vector resolved, by a comparable key of their
// label values, so that a hot path does not resolve its child on every call (WithLabelValues
// hashes every label value and takes the vector's lock). At most Max children are kept (zero:
// DefaultMaxChildren), since some label sets are open-ended (callers' names); past that, Get
// resolves the child each time. The zero value is ready to use; it is safe for concurrent use.
type Children[K comparable, M any] struct {
	Max int

	resolved sync.Map // K -> M
	kept     atomic.Int64
}

// DefaultMaxChildren bounds the children a Children keeps when its Max is zero.
const DefaultMaxChildren = 4096

// Get returns the child of key, resolving it with resolve the first time.
func (c *Children[K, M]) Get(key K, resolve func(K) M) M {
	if v, ok := c.resolved.Load(key); ok {
		return v.(M)
	}
	child := resolve(key)
	limit := int64(c.Max)
	if limit <= 0 {
		limit = DefaultMaxChildren
	}
	if c.kept.Add(1) <= limit {
		c.resolved.Store(key, child)
	}
	return child
}
