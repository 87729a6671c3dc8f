// Package logbuf owns the buffering of the gateway's log output: a Writer copies each line into
// memory and writes the lines to the real output (stdout) in batches, from a timer, so that a
// request never waits on a write system call or on a slow reader of stdout (a container
// runtime's log pipe). Lines keep their order; they reach the output at most a Writer's delay
// late, at once when its buffer fills (then the writer that filled it waits for that write, so
// that a stuck output slows requests down rather than losing lines or memory), and on Flush or
// Close.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// Defaults of New.
const (
	DefaultDelay    = 50 * time.Millisecond
	DefaultMaxBytes = 256 << 10
)

// Writer buffers writes to an io.Writer; it is safe for concurrent use. Each Write is kept whole,
// so the lines of a logger that writes one line per call are never interleaved.
type Writer struct {
	out      io.Writer
	delay    time.Duration
	maxBytes int

	wmu sync.Mutex // serialises the writes to out, in order

	mu      sync.Mutex
	buf     []byte
	spare   []byte
	pending bool // a timed flush is scheduled
	closed  bool
}

// New returns a Writer that writes to out at most delay after a write (DefaultDelay when zero or
// less) or as soon as maxBytes are buffered (DefaultMaxBytes when zero or less).
func New(out io.Writer, delay time.Duration, maxBytes int) *Writer {
	if delay <= 0 {
		delay = DefaultDelay
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &Writer{out: out, delay: delay, maxBytes: maxBytes}
}

// Write buffers p. It writes to the output itself only when the buffer is full or the Writer
// is closed. It never fails: an error of the output is the output's (stdout has no one to tell).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed || len(w.buf)+len(p) > w.maxBytes {
		w.mu.Unlock()
		w.wmu.Lock()
		defer w.wmu.Unlock()
		w.writeBuffered()
		_, _ = w.out.Write(p)
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if !w.pending {
		w.pending = true
		time.AfterFunc(w.delay, func() { _ = w.Flush() })
	}
	w.mu.Unlock()
	return len(p), nil
}

// Flush writes what is buffered now.
func (w *Writer) Flush() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.writeBuffered()
}

// Close flushes, and makes later writes go straight to the output.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	return w.Flush()
}

// writeBuffered writes the buffer out; w.wmu is held. Writes go on into the spare buffer
// meanwhile.
func (w *Writer) writeBuffered() error {
	w.mu.Lock()
	b := w.buf
	w.buf, w.spare, w.pending = w.spare[:0], nil, false
	w.mu.Unlock()
	if len(b) == 0 {
		w.mu.Lock()
		w.spare = b
		w.mu.Unlock()
		return nil
	}
	_, err := w.out.Write(b)
	w.mu.Lock()
	w.spare = b[:0]
	w.mu.Unlock()
	return err
}
