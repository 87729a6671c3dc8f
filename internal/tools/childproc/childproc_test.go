package childproc_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/tools/childproc"
)

// sh starts /bin/sh -c script with no environment but env, its output in a log file of the test.
func sh(t *testing.T, script string, env ...string) (*childproc.Process, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "child.log")
	p, err := childproc.Start("/bin/sh", []string{"-c", script}, env, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Signal(syscall.SIGKILL, time.Minute) })
	return p, log
}

// endedBy is the signal that ended the process, or -1 when it exited on its own.
func endedBy(st *os.ProcessState) syscall.Signal {
	ws := st.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		return -1
	}
	return ws.Signal()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStopEndsAProcessWithSIGTERMWithinTheWait(t *testing.T) {
	p, _ := sh(t, "exec sleep 30")
	p.Stop(time.Minute)
	if sig := endedBy(p.Wait()); sig != syscall.SIGTERM {
		t.Fatalf("ended by %v, want SIGTERM (a graceful end, before the kill)", sig)
	}
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	p, log := sh(t, "trap '' TERM; echo ignoring; exec sleep 30")
	wait.Until(t, 30*time.Second, "the child ignores SIGTERM", func() bool {
		return strings.Contains(readFile(t, log), "ignoring")
	})
	p.Stop(200 * time.Millisecond)
	if sig := endedBy(p.Wait()); sig != syscall.SIGKILL {
		t.Fatalf("ended by %v, want SIGKILL after the wait", sig)
	}
}

func TestSignalSendsTheGivenSignal(t *testing.T) {
	p, _ := sh(t, "exec sleep 30")
	p.Signal(syscall.SIGINT, time.Minute)
	if sig := endedBy(p.Wait()); sig != syscall.SIGINT {
		t.Fatalf("ended by %v, want SIGINT", sig)
	}
}

func TestStartAppendsTheChildsOutputToTheLogFile(t *testing.T) {
	log := filepath.Join(t.TempDir(), "child.log")
	if err := os.WriteFile(log, []byte("earlier run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"CHILDPROC_GREETING=hello"}
	p, err := childproc.Start("/bin/sh", []string{"-c", `echo "out $CHILDPROC_GREETING"; echo err >&2; exit 3`}, env, log)
	if err != nil {
		t.Fatal(err)
	}
	if code := p.Wait().ExitCode(); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	if got, want := readFile(t, log), "earlier run\nout hello\nerr\n"; got != want {
		t.Fatalf("log file %q, want %q", got, want)
	}
	if got := p.Env(); len(got) != 1 || got[0] != env[0] {
		t.Fatalf("Env() = %q, want %q", got, env)
	}
	p.Stop(time.Hour) // an ended process: returns at once
}

func TestStartCreatesAPrivateLogFile(t *testing.T) {
	log := filepath.Join(t.TempDir(), "new.log")
	p, err := childproc.Start("/bin/sh", []string{"-c", "echo x"}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	fi, err := os.Stat(log)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("log file mode %v, want 0600", perm)
	}
}

func TestStartFailsForAMissingBinaryOrLogDirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := childproc.Start(filepath.Join(dir, "no-such-binary"), nil, nil, filepath.Join(dir, "a.log")); err == nil {
		t.Fatal("a missing binary started")
	}
	if _, err := childproc.Start("/bin/sh", []string{"-c", "true"}, nil, filepath.Join(dir, "no-dir", "a.log")); err == nil {
		t.Fatal("started without its log file")
	}
}

func TestCPUAndResidentSetOfABusyChild(t *testing.T) {
	p, _ := sh(t, "while :; do :; done")
	wait.Until(t, 60*time.Second, "the busy child has used CPU time", func() bool { return p.CPU() > 0 })
	for _, field := range []string{"VmRSS", "VmHWM"} {
		if v := p.Status(field); v <= 0 || v%1024 != 0 {
			t.Fatalf("Status(%q) = %d, want a positive number of bytes (kB * 1024)", field, v)
		}
	}
	if v := p.Status("NoSuchField"); v != 0 {
		t.Fatalf("Status of a missing field = %d, want 0", v)
	}
	p.Stop(time.Minute)
	if v := p.MaxRSS(); v <= 0 || v%1024 != 0 {
		t.Fatalf("MaxRSS() of the ended child = %d, want a positive number of bytes", v)
	}
	if cpu, rss := p.CPU(), p.Status("VmRSS"); cpu != 0 || rss != 0 {
		t.Fatalf("after the end CPU() = %v and Status(VmRSS) = %d, want 0 and 0", cpu, rss)
	}
}

// TestChildDiesWithItsParent starts this test binary as a helper that starts a child, kills the
// helper (SIGKILL: it can do nothing about it) and waits for the child to be gone too (Pdeathsig).
func TestChildDiesWithItsParent(t *testing.T) {
	dir := t.TempDir()
	helperLog := filepath.Join(dir, "helper.log")
	helper, err := childproc.Start(os.Args[0], []string{"-test.run=^TestHelperParent$", "-test.count=1"},
		append(os.Environ(), "CHILDPROC_HELPER_DIR="+dir), helperLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Signal(syscall.SIGKILL, time.Minute) })
	pid := 0
	wait.UntilShowing(t, 30*time.Second, "the helper has started its child", func() bool {
		for line := range strings.Lines(readFile(t, helperLog)) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "child pid "); ok {
				pid, _ = strconv.Atoi(rest)
			}
		}
		return pid != 0
	}, func() string { return readFile(t, helperLog) })
	if !running(pid) {
		t.Fatalf("child %d is not running before its parent is killed", pid)
	}
	helper.Signal(syscall.SIGKILL, time.Minute)
	wait.Until(t, 20*time.Second, "the child is gone with its parent", func() bool { return !running(pid) })
}

// running reports whether pid is a live process (not gone, not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// TestHelperParent is the parent process of TestChildDiesWithItsParent, not a test of its own.
func TestHelperParent(t *testing.T) {
	dir := os.Getenv("CHILDPROC_HELPER_DIR")
	if dir == "" {
		t.Skip("the helper process of TestChildDiesWithItsParent")
	}
	p, err := childproc.Start("/bin/sh", []string{"-c", "exec sleep 30"}, nil, filepath.Join(dir, "child.log"))
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("child pid " + strconv.Itoa(p.Pid()) + "\n")
	p.Wait() // until the test kills this process
}

func TestWaitHTTPWaitsForA200(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := childproc.WaitHTTP(context.Background(), srv.URL, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3 (two 503s, then 200)", n)
	}
}

func TestWaitHTTPGivesUpSayingWhatItSaw(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	err := childproc.WaitHTTP(context.Background(), srv.URL, time.Second)
	if err == nil || !strings.Contains(err.Error(), "answered 503") {
		t.Fatalf("err = %v, want one naming the last answer (503)", err)
	}
}

func TestFreeAddrCanBeListenedOn(t *testing.T) {
	addr, err := childproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Fatalf("FreeAddr() = %q, want a loopback address", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
}

func TestFakeIsPrefixedAndRandom(t *testing.T) {
	a, b := childproc.Fake("test-fake-"), childproc.Fake("test-fake-")
	if !strings.HasPrefix(a, "test-fake-") || len(a) != len("test-fake-")+26 || a == b {
		t.Fatalf("Fake gave %q and %q, want the prefix and 26 random characters, different each time", a, b)
	}
}
