package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is one redis-server process (a server, a cluster node or a sentinel) on a loopback port.
type proc struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// startFree starts redis-server with the arguments args(port) on a free loopback port, trying
// another port when the chosen one was taken in the meantime.
func startFree(args func(port string) []string) (*proc, error) {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := launch(strconv.Itoa(port), args(strconv.Itoa(port)))
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// launch starts redis-server with args and waits until it accepts connections on the port. The
// process dies with the test binary, even when the binary is killed.
func launch(port string, args []string) (*proc, error) {
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &tail{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{Addr: net.JoinHostPort("127.0.0.1", port), cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return nil, fmt.Errorf("redis-server on port %s exited: %s", port, out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", p.Addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
			if p.answers() {
				return p, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()
	return nil, fmt.Errorf("redis-server on port %s did not start: %s", port, out.String())
}

// answers reports whether the server answering on p's port is p's process. A port found free a
// moment ago may have been taken since by another test's server (the same test binary runs many
// in parallel): this one then fails to bind it and exits, and until it does a connection to the
// port reaches the other server.
func (p *proc) answers() bool {
	c := redis.NewClient(&redis.Options{Addr: p.Addr, Protocol: 2, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: time.Second, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	info, err := c.Info(context.Background(), "server").Result()
	return err == nil && strings.Contains(info, "\nprocess_id:"+strconv.Itoa(p.cmd.Process.Pid)+"\r\n")
}

// kill stops the process at once (SIGKILL, as a crash would) and waits until it is gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Port is the process's port number.
func (p *proc) Port() string {
	_, port, _ := net.SplitHostPort(p.Addr)
	return port
}

// serverArgs are the flags of every data-holding redis-server the tests start: loopback only, no
// persistence, a replica's first sync at once (not after Redis' default 5 s wait for more
// replicas), and a dump file of its own (a replica writes the copy it receives there; pass --dir).
func serverArgs(port string, extra ...string) []string {
	return append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--repl-diskless-sync-delay", "0", "--dbfilename", "dump-" + port + ".rdb", "--loglevel", "warning"}, extra...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last few kilobytes a process wrote, for the message when it fails to start.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - 4096; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

var errNoRedis = errors.New("redis-server not found on PATH (install it: apt-get install redis-server, or run ./scripts/test)")
