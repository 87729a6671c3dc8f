package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLoadOperations: the admin listener is on loopback unless told otherwise and "off" turns it
// off; the drain delay may be zero; the auth-failure rate has its default; bad values are named.
func TestLoadOperations(t *testing.T) {
	c, err := Load(env(validEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminAddr != "127.0.0.1:9090" || c.DrainDelay != 5*time.Second || c.AuthFailureRate != (Rate{N: 30, Per: time.Minute}) {
		t.Errorf("defaults: admin %q, drain %s, auth failures %s", c.AdminAddr, c.DrainDelay, c.AuthFailureRate)
	}

	m := validEnv()
	m["GATEWAY_ADMIN_ADDR"], m["GATEWAY_DRAIN_DELAY"], m["GATEWAY_AUTH_FAILURE_RATE"] = AdminAddrOff, "0s", "0"
	if c, err = Load(env(m)); err != nil {
		t.Fatal(err)
	}
	if c.AdminAddr != "" || c.DrainDelay != 0 || c.AuthFailureRate != (Rate{}) {
		t.Errorf("off/zero: admin %q, drain %s, auth failures %s", c.AdminAddr, c.DrainDelay, c.AuthFailureRate)
	}

	for _, tc := range []struct{ name, value, want string }{
		{"GATEWAY_ADMIN_ADDR", "9090", "listen address"},
		{"GATEWAY_ADMIN_ADDR", ":8080", "same address"}, // GATEWAY_ADDR's default
		{"GATEWAY_DRAIN_DELAY", "-1s", "duration"},
		{"GATEWAY_DRAIN_DELAY", "soon", "duration"},
		{"GATEWAY_AUTH_FAILURE_RATE", "many", "N/duration"},
	} {
		m := validEnv()
		m[tc.name] = tc.value
		_, err := Load(env(m))
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Var != tc.name || !strings.Contains(ce.Problems[0].Msg, tc.want) {
			t.Errorf("%s=%q: %v, want one problem naming it (%q)", tc.name, tc.value, err, tc.want)
		}
	}
}

// TestGetenvAdminAddrSetEmpty: GATEWAY_ADMIN_ADDR set to the empty string turns the admin listener
// off, while unset keeps the default.
func TestGetenvAdminAddrSetEmpty(t *testing.T) {
	t.Setenv("GATEWAY_ADMIN_ADDR", "")
	if got := Getenv("GATEWAY_ADMIN_ADDR"); got != AdminAddrOff {
		t.Errorf("set empty: Getenv = %q, want %q", got, AdminAddrOff)
	}
	t.Setenv("GATEWAY_DRAIN_DELAY", "")
	if got := Getenv("GATEWAY_DRAIN_DELAY"); got != "" {
		t.Errorf("another variable set empty: Getenv = %q", got)
	}
}
