// Package childproc owns starting and ending the child processes of the repository's command-line
// tools (internal/tools: the chaos soak, the flat-cost measurements): a child started with its
// output in a log file and dying with the tool (Pdeathsig), ended by a signal and killed when it
// does not end in time, its CPU time and resident set read from /proc and from its rusage, a free
// loopback address to give it, the wait until it answers over HTTP, and obviously fake secrets to
// configure it with.
//
// It must not know what the children are (gateway, simulator, redis-server): their flags,
// environment and readiness routes stay with the tools. It is for those tools only, never for the
// gateway or its tests (redistest starts its Redis servers itself), and it depends on no package
// of the repository.
package childproc

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a child process that dies with this one (Pdeathsig).
type Process struct {
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
}

// Start starts bin with args and env (exactly these variables), its standard output and error
// appended to the file at logPath (created 0600 when missing).
func Start(bin string, args, env []string, logPath string) (*Process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		_ = lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process' id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Env is the environment the process was started with.
func (p *Process) Env() []string { return p.cmd.Env }

// Wait waits until the process has ended and returns how it ended.
func (p *Process) Wait() *os.ProcessState {
	<-p.done
	return p.state
}

// Signal sends sig and waits up to wait for the process to end, then kills it (SIGKILL) and waits
// for that. A process that has already ended is left as it is.
func (p *Process) Signal(sig os.Signal, wait time.Duration) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Stop ends the process gracefully: SIGTERM, then SIGKILL when it has not ended after wait.
func (p *Process) Stop(wait time.Duration) { p.Signal(syscall.SIGTERM, wait) }

// MaxRSS waits until the process has ended and returns its peak resident set (getrusage's
// ru_maxrss of the ended child), in bytes.
func (p *Process) MaxRSS() int64 {
	if ru, ok := p.Wait().SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024
	}
	return 0
}

// Status reads a field of /proc/PID/status in bytes (VmHWM, VmRSS); 0 once the process has ended.
func (p *Process) Status(field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// CPU is the process' user plus system CPU time so far, from /proc/PID/stat (clock ticks of
// 10 ms); 0 once the process has ended.
func (p *Process) CPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	// Fields after the command name (which is in parentheses): utime and stime are the 12th and
	// 13th of them.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// FreeAddr is a loopback address (127.0.0.1:port) free at the time of the call, for a child to
// listen on.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitHTTP polls url every 100 ms until it answers 200, for at most limit.
func WaitHTTP(ctx context.Context, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v", url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Fake returns an obviously fake secret: prefix and 26 random characters (crypto/rand's Text).
func Fake(prefix string) string { return prefix + crand.Text() }
