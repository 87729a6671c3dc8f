package redisconn

import (
	"strings"
	"testing"
	"time"
)

// fakePW is an obviously fake password; no error may repeat it.
const fakePW = "fake-pw-19"

func hide(s string) string { return strings.ReplaceAll(s, fakePW, "***") }

func TestParseSingle(t *testing.T) {
	tg, err := Parse("rediss://app:" + fakePW + "@r.example.invalid:6380/2?pool_size=7&client_name=gw")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	o := tg.Single
	if o == nil || tg.Cluster != nil || tg.Failover != nil {
		t.Fatalf("Parse gave %+v, want one server", tg)
	}
	if o.Addr != "r.example.invalid:6380" || o.DB != 2 || o.Username != "app" || o.Password != fakePW {
		t.Errorf("addr %q db %d user %q", o.Addr, o.DB, o.Username)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "r.example.invalid" {
		t.Errorf("rediss:// gave no TLS config for the host: %+v", o.TLSConfig)
	}
	if o.PoolSize != 7 || o.ClientName != "gw" {
		t.Errorf("query options not applied: pool_size %d client_name %q", o.PoolSize, o.ClientName)
	}
}

func TestParseCluster(t *testing.T) {
	for _, in := range []string{
		"redis-cluster://:" + fakePW + "@n1:7000,n2:7001,n3:7002?max_redirects=5",
		"redis-cluster://:" + fakePW + "@n1:7000?addr=n2:7001&addr=n3:7002&max_redirects=5",
		"redis-cluster://:" + fakePW + "@n1:7000,n2:7001/0?addr=n3:7002&max_redirects=5",
	} {
		tg, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", hide(in), err)
			continue
		}
		o := tg.Cluster
		if o == nil || tg.Single != nil || tg.Failover != nil {
			t.Errorf("Parse(%q) gave %+v, want a cluster", hide(in), tg)
			continue
		}
		if got := strings.Join(o.Addrs, ","); got != "n1:7000,n2:7001,n3:7002" {
			t.Errorf("Parse(%q) addrs = %s", hide(in), got)
		}
		if o.Password != fakePW || o.MaxRedirects != 5 || o.TLSConfig != nil {
			t.Errorf("Parse(%q): password set %v, max_redirects %d, tls %v", hide(in), o.Password == fakePW, o.MaxRedirects, o.TLSConfig != nil)
		}
	}
	tg, err := Parse("rediss-cluster://n1:7000,n2:7000")
	if err != nil || tg.Cluster == nil || tg.Cluster.TLSConfig == nil || tg.Cluster.TLSConfig.ServerName != "n1" {
		t.Errorf("rediss-cluster:// gave no TLS: %+v, %v", tg, err)
	}
}

func TestParseSentinel(t *testing.T) {
	const masterPW = "fake-master-pw-23"
	in := "rediss-sentinel://sentuser:" + fakePW + "@s1:26379,s2:26379/3?addr=s3:26379&master_name=mymaster&username=app&password=" + masterPW
	tg, err := Parse(in)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	o := tg.Failover
	if o == nil || tg.Single != nil || tg.Cluster != nil {
		t.Fatalf("Parse gave %+v, want sentinel", tg)
	}
	if got := strings.Join(o.SentinelAddrs, ","); got != "s1:26379,s2:26379,s3:26379" {
		t.Errorf("sentinel addrs = %s", got)
	}
	if o.MasterName != "mymaster" || o.DB != 3 {
		t.Errorf("master %q db %d", o.MasterName, o.DB)
	}
	if o.SentinelUsername != "sentuser" || o.SentinelPassword != fakePW {
		t.Errorf("the user information is not the sentinels' credentials (user %q)", o.SentinelUsername)
	}
	if o.Username != "app" || o.Password != masterPW {
		t.Errorf("the username/password options are not the master's credentials (user %q)", o.Username)
	}
	if o.TLSConfig == nil {
		t.Error("rediss-sentinel:// gave no TLS config (it serves sentinels and servers alike)")
	}
	tg, err = Parse("redis-sentinel://s1:26379?master_name=m")
	if err != nil || tg.Failover.TLSConfig != nil || tg.Failover.SentinelPassword != "" {
		t.Errorf("plain sentinel URL: %+v, %v", tg, err)
	}
}

func TestParseRefuses(t *testing.T) {
	cases := []struct{ in, want string }{
		{"memcached://x:1", "scheme"},
		{"redis://:" + fakePW + "@h:6379/notadb", "database"},
		{"redis://:" + fakePW + "@h:6379/0?no_such_option=1", "no_such_option"},
		{"redis-cluster://:" + fakePW + "@n1,n2:7000", "host:port"},
		{"redis-cluster://n1:7000/2", "database 0"},
		{"redis-cluster://:" + fakePW + "@n1:7000?read_only=true", "replicas"},
		{"redis-cluster://n1:7000?addr=bad", "addr"},
		{"redis-sentinel://s1:26379", "master_name"},
		{"redis-sentinel://:" + fakePW + "@s1:26379/1?master=mymaster", "master_name"},
		{"redis-sentinel://s1:26379/x?master_name=m", "database"},
		{"redis-sentinel://s1:26379?master_name=m&replica_only=true", "replicas"},
		{"redis-sentinel://s1:26379?master_name=m&password=" + fakePW + "&dial_timeout=" + fakePW, "dial_timeout"},
		{"redis://h:6379/%zz" + fakePW, "not a URL"},
	}
	for _, tc := range cases {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want one mentioning %q", hide(tc.in), err, tc.want)
		}
		if err != nil {
			if strings.Contains(err.Error(), fakePW) {
				t.Errorf("Parse(%q): the error repeats the password: %s", hide(tc.in), hide(err.Error()))
			}
			if !strings.HasPrefix(err.Error(), "REDIS_URL") {
				t.Errorf("Parse(%q): the error does not name REDIS_URL: %v", hide(tc.in), err)
			}
		}
	}
}

func TestNewClientBounds(t *testing.T) {
	// Unset in the URL: the gateway's bounds.
	tg, err := Parse("redis-sentinel://s1:26379?master_name=m")
	if err != nil {
		t.Fatal(err)
	}
	c := tg.NewClient()
	_ = c.Close()
	o := tg.Failover
	if o.DialTimeout != time.Second || o.ReadTimeout != 2*time.Second || o.WriteTimeout != 2*time.Second || o.MaxRetries != 1 || !o.ContextTimeoutEnabled {
		t.Errorf("defaults not applied: dial %v read %v write %v retries %d ctx %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.ContextTimeoutEnabled)
	}
	// Set in the URL: kept, including "disabled" (-1).
	tg, err = Parse("redis-cluster://n1:7000?dial_timeout=3s&read_timeout=0&max_retries=4")
	if err != nil {
		t.Fatal(err)
	}
	c = tg.NewClient()
	_ = c.Close()
	co := tg.Cluster
	// (read_timeout=0 means "none": go-redis stores it as -1, then 0 once the client is built.)
	if co.DialTimeout != 3*time.Second || co.ReadTimeout > 0 || co.MaxRetries != 4 || co.WriteTimeout != 2*time.Second {
		t.Errorf("URL values not kept: dial %v read %v retries %d write %v", co.DialTimeout, co.ReadTimeout, co.MaxRetries, co.WriteTimeout)
	}
	tg, err = Parse("redis://h:6379")
	if err != nil {
		t.Fatal(err)
	}
	c = tg.NewClient()
	_ = c.Close()
	if tg.Single.MaxRetries != 1 || tg.Single.DialTimeout != time.Second {
		t.Errorf("single: retries %d dial %v", tg.Single.MaxRetries, tg.Single.DialTimeout)
	}
}
