package redisconn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits points at the timeout and retry fields that every kind of go-redis options has, so the
// gateway's bounds are written once for all of them.
type Limits struct {
	Dial, Read, Write *time.Duration
	Retries           *int
	ContextTimeout    *bool
}

// Fill sets the gateway's bounds on every field the URL left unset (zero): a second to dial, two
// to read or write, one retry, so that an unreachable Redis costs a request a bounded wait. A value
// the URL gives, including a negative "disabled", is kept. Deadlines of the caller's context
// always apply.
func (l Limits) Fill() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(l.Dial, time.Second)
	def(l.Read, 2*time.Second)
	def(l.Write, 2*time.Second)
	if *l.Retries == 0 {
		*l.Retries = 1
	}
	*l.ContextTimeout = true
}

// Target is a parsed REDIS_URL: the go-redis options of exactly one kind of client.
type Target struct {
	Single   *redis.Options         // redis://, rediss://, unix://
	Cluster  *redis.ClusterOptions  // redis-cluster://, rediss-cluster://
	Failover *redis.FailoverOptions // redis-sentinel://, rediss-sentinel://
}

// NewClient builds the target's client with the gateway's timeouts wherever the URL set none.
func (t *Target) NewClient() redis.UniversalClient {
	switch {
	case t.Cluster != nil:
		o := t.Cluster
		Limits{Dial: &o.DialTimeout, Read: &o.ReadTimeout, Write: &o.WriteTimeout, Retries: &o.MaxRetries, ContextTimeout: &o.ContextTimeoutEnabled}.Fill()
		return redis.NewClusterClient(o)
	case t.Failover != nil:
		o := t.Failover
		Limits{Dial: &o.DialTimeout, Read: &o.ReadTimeout, Write: &o.WriteTimeout, Retries: &o.MaxRetries, ContextTimeout: &o.ContextTimeoutEnabled}.Fill()
		return redis.NewFailoverClient(o)
	default:
		o := t.Single
		Limits{Dial: &o.DialTimeout, Read: &o.ReadTimeout, Write: &o.WriteTimeout, Retries: &o.MaxRetries, ContextTimeout: &o.ContextTimeoutEnabled}.Fill()
		return redis.NewClient(o)
	}
}

// Parse turns REDIS_URL into client options with go-redis' own parsers (redis.ParseURL,
// redis.ParseClusterURL, redis.ParseFailoverURL), so every query option they document (timeouts,
// pool sizes, protocol, client_name, skip_verify, ...) works as documented there. Accepted forms:
//
//	redis://[[user]:password@]host:port[/db][?option=value...]        one server; rediss:// for TLS
//	redis-cluster://[[user]:password@]h1:port[,h2:port...][?addr=h3:port...]
//	                                                                  Redis Cluster; rediss-cluster:// for TLS
//	redis-sentinel://[[sentinel_user]:sentinel_password@]s1:port[,s2:port...][/db]?master_name=name[&username=u][&password=pw]
//	                                                                  Sentinel; rediss-sentinel:// for TLS to sentinels and servers
//
// In the sentinel form the user information is the sentinels' own credentials (go-redis'
// convention); the master's credentials are the username and password options. Extra nodes may
// be listed after the first host, separated by commas, or as repeated addr options. Options that
// would send reads to replicas are refused: the gateway reads its own writes. Errors never repeat
// a password.
func Parse(raw string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("REDIS_URL is not a URL")
	}
	t, err := parseTarget(u)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %s", scrub(err, u))
	}
	return t, nil
}

func parseTarget(u *url.URL) (*Target, error) {
	switch u.Scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, err
		}
		return &Target{Single: o}, nil
	case "redis-cluster", "rediss-cluster":
		if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
			return nil, errors.New("a cluster has only database 0: drop the path")
		}
		u.Path = ""
		if err := hostsToAddrs(u, "cluster"); err != nil {
			return nil, err
		}
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		if o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, errors.New("read_only, route_by_latency and route_randomly send reads to replicas, which the gateway does not allow (it reads its own writes)")
		}
		return &Target{Cluster: o}, nil
	case "redis-sentinel", "rediss-sentinel":
		if u.Query().Has("master") {
			return nil, errors.New("the sentinel option is master_name=<name>, not master; the user information names the sentinels' credentials, the master's go in the username and password options")
		}
		if err := hostsToAddrs(u, "sentinel"); err != nil {
			return nil, err
		}
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, err
		}
		if o.MasterName == "" {
			return nil, errors.New("a redis-sentinel URL needs ?master_name=<name>")
		}
		if o.RouteByLatency || o.RouteRandomly || o.ReplicaOnly {
			return nil, errors.New("route_by_latency, route_randomly and replica_only send commands to replicas, which the gateway does not allow (it reads its own writes)")
		}
		return &Target{Failover: o}, nil
	default:
		return nil, fmt.Errorf("scheme %q is not redis, rediss, unix, redis-cluster, rediss-cluster, redis-sentinel or rediss-sentinel", u.Scheme)
	}
}

// hostsToAddrs rewrites a multi-node URL into the form go-redis' parsers read: the scheme becomes
// redis or rediss, the first of the comma-separated host:port pairs stays the host and the others
// become addr options.
func hostsToAddrs(u *url.URL, kind string) error {
	u.Scheme = strings.TrimSuffix(u.Scheme, "-"+kind)
	hosts := strings.Split(u.Host, ",")
	for _, h := range hosts {
		if host, port, err := net.SplitHostPort(h); err != nil || host == "" || port == "" {
			return fmt.Errorf("%q is not host:port", h)
		}
	}
	if len(hosts) > 1 {
		q := u.Query()
		q["addr"] = append(hosts[1:], q["addr"]...)
		u.Host, u.RawQuery = hosts[0], q.Encode()
	}
	return nil
}

// scrub removes the URL's passwords (its user information's and the password options') from a
// parser error, should the parser have quoted them.
func scrub(err error, u *url.URL) string {
	msg := err.Error()
	secrets := u.Query()["password"]
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw)
		}
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}
