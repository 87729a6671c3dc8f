package redisconn

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// embeddedStore is the in-process Redis-compatible server of a store opened without REDIS_URL.
// It has no listener at all (no port, no socket file): the only way in is dial, which hands the
// gateway's own Redis client one end of an in-memory connection and serves the other end, so no
// other process can read the token or write into the cache.
type embeddedStore struct {
	mr  *miniredis.Miniredis
	srv *server.Server
}

// startEmbedded starts the in-process server without a listener.
func startEmbedded() (*embeddedStore, error) {
	mr := miniredis.NewMiniRedis()
	// Dial starts a server that was never started without any listener; that first connection
	// is not needed.
	first, err := mr.Dial()
	if err != nil {
		return nil, fmt.Errorf("start embedded store: %w", err)
	}
	_ = first.Close()
	return &embeddedStore{mr: mr, srv: mr.Server()}, nil
}

// dial is the go-redis Dialer of the embedded store: a fresh in-memory connection per call.
func (e *embeddedStore) dial(context.Context, string, string) (net.Conn, error) {
	client, served := net.Pipe()
	e.srv.ServeConn(newQueuedWriter(served))
	return newQueuedWriter(client), nil
}

// close stops the server and ends its connections.
func (e *embeddedStore) close() { e.mr.Close() }

// queuedWriter wraps each end of an embedded connection. net.Pipe has no buffer: a write waits
// until the other end reads. The server answers each command as soon as it has read it, and
// go-redis reads a pipeline's answers only after writing the whole pipeline, so over a bare pipe a
// pipeline longer than the server's read buffer would block both ends until the write timeout;
// and a slow server (a loaded machine) would make the client's write of a long pipeline time out
// where a kernel socket buffer would have absorbed it. A queuedWriter never blocks its writer: the
// writes are queued in memory and a pump copies them into the pipe as the other end reads. Writes
// therefore have no deadline; read deadlines still bound every wait for an answer.
type queuedWriter struct {
	net.Conn

	mu     sync.Mutex
	queued []byte
	closed bool
	more   chan struct{} // one pending wake-up for the pump
	done   chan struct{} // closed by Close
	once   sync.Once
}

func newQueuedWriter(c net.Conn) *queuedWriter {
	q := &queuedWriter{Conn: c, more: make(chan struct{}, 1), done: make(chan struct{})}
	go q.pump()
	return q
}

// Write queues p for the client and returns at once.
func (q *queuedWriter) Write(p []byte) (int, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, net.ErrClosed
	}
	q.queued = append(q.queued, p...)
	q.mu.Unlock()
	select {
	case q.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

// pump copies queued bytes into the pipe until the connection is closed from either end.
func (q *queuedWriter) pump() {
	for {
		select {
		case <-q.done:
			return
		case <-q.more:
		}
		q.mu.Lock()
		b := q.queued
		q.queued = nil
		q.mu.Unlock()
		if _, err := q.Conn.Write(b); err != nil {
			_ = q.Close()
			return
		}
	}
}

// SetDeadline bounds reads only: a queued write never waits.
func (q *queuedWriter) SetDeadline(t time.Time) error { return q.Conn.SetReadDeadline(t) }

// SetWriteDeadline is a no-op: a queued write never waits, and the pump must not fail a write
// the caller has already been told succeeded.
func (q *queuedWriter) SetWriteDeadline(time.Time) error { return nil }

// Close ends the connection; the server's reader then sees the pipe closed.
func (q *queuedWriter) Close() error {
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.done)
	})
	return q.Conn.Close()
}
