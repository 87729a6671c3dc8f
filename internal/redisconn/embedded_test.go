package redisconn

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmbeddedStoreHasNoListener opens the embedded store and uses it, and finds no new listening
// socket (TCP, TCP6 or unix) owned by this process: nothing but the gateway's own client can reach
// the store, which holds the upstream token and the cache. Its startup warning names no address.
func TestEmbeddedStoreHasNoListener(t *testing.T) {
	before := listeningSockets(t)
	var logs bytes.Buffer
	s, err := Open(context.Background(), "", slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("open embedded: %v", err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	if err := s.Client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := s.Client.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v", got, err)
	}

	for l := range listeningSockets(t) {
		if !before[l] {
			t.Errorf("the embedded store opened a listener: %s", l)
		}
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &line); err != nil {
		t.Fatalf("startup log is not one JSON line: %q", logs.String())
	}
	if _, ok := line["addr"]; ok || strings.Contains(logs.String(), "127.0.0.1") {
		t.Errorf("the startup warning names an address: %s", logs.String())
	}
}

// TestEmbeddedStoreLongPipeline sends a pipeline whose commands and answers are far larger than
// any read buffer of the in-memory connection: it completes (the server's answers never wait for
// the client, which reads only after writing the whole pipeline), and so does a transaction.
func TestEmbeddedStoreLongPipeline(t *testing.T) {
	s, err := Open(context.Background(), "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open embedded: %v", err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	const n = 5000
	value := strings.Repeat("v", 64)
	pipe := s.Client.Pipeline()
	for i := range n {
		pipe.Set(ctx, fmt.Sprintf("key-%d", i), value, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("pipeline of %d SETs: %v", n, err)
	}
	get := s.Client.TxPipeline()
	cmds := make([]interface{ Val() string }, 0, n)
	for i := range n {
		cmds = append(cmds, get.Get(ctx, fmt.Sprintf("key-%d", i)))
	}
	if _, err := get.Exec(ctx); err != nil {
		t.Fatalf("transaction of %d GETs: %v", n, err)
	}
	for i, c := range cmds {
		if c.Val() != value {
			t.Fatalf("GET key-%d = %q", i, c.Val())
		}
	}
}

// listeningSockets lists the listening sockets this process owns, as "proto local-address"
// (TCP and TCP6 in state LISTEN, unix sockets accepting connections).
func listeningSockets(t *testing.T) map[string]bool {
	t.Helper()
	owned := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			owned[strings.TrimSuffix(inode, "]")] = true
		}
	}
	found := map[string]bool{}
	for _, proto := range []string{"tcp", "tcp6"} {
		for _, f := range procNetRows(t, proto) { // sl local rem st tx:rx tr:when retr uid timeout inode
			if len(f) > 9 && f[3] == "0A" && owned[f[9]] {
				found[proto+" "+f[1]] = true
			}
		}
	}
	for _, f := range procNetRows(t, "unix") { // Num RefCount Protocol Flags Type St Inode [Path]
		if len(f) > 6 && f[3] == "00010000" && owned[f[6]] {
			found["unix "+strings.Join(f[7:], " ")+" inode "+f[6]] = true
		}
	}
	return found
}

// procNetRows reads /proc/self/net/<proto> as whitespace-separated fields, header dropped.
func procNetRows(t *testing.T, proto string) [][]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/net/" + proto)
	if err != nil {
		if proto == "tcp6" && os.IsNotExist(err) {
			return nil
		}
		t.Skipf("no /proc/self/net/%s: %v", proto, err)
	}
	var rows [][]string
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if i > 0 {
			rows = append(rows, strings.Fields(line))
		}
	}
	return rows
}
