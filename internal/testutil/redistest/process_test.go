package redistest

import (
	"os/exec"
	"testing"
)

// TestLaunchRefusesAPortAnotherServerHolds: a server launched on a port that another server took
// in the meantime fails to bind it and exits; launch must report that, not hand back the other
// server's address as its own (a later kill of the other server then left the test with a dead
// node: "Could not connect to Redis ... Connection refused" in a cluster's creation).
func TestLaunchRefusesAPortAnotherServerHolds(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	first, err := startFree(func(port string) []string { return serverArgs(port) })
	if err != nil {
		t.Fatal(err)
	}
	defer first.kill()
	if second, err := launch(first.Port(), serverArgs(first.Port())); err == nil {
		second.kill()
		t.Fatalf("a second server was launched on %s, which the first one holds", first.Addr)
	}
	if !first.answers() {
		t.Error("the first server does not answer as itself")
	}
}
