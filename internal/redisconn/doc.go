// Package redisconn owns the gateway's one Redis connection: reading REDIS_URL (url.go) and
// opening the client (store.go).
//
// With REDIS_URL set it connects to one Redis server, a Sentinel-managed master or a Redis
// Cluster. The URL is read by go-redis' own parsers (ParseURL, ParseClusterURL,
// ParseFailoverURL): this package only picks the parser by scheme, accepts comma-separated node
// lists, refuses options that would break read-your-writes, and applies the gateway's bounds on
// timeouts and retries. Without REDIS_URL it starts an embedded in-process Redis-compatible server
// (miniredis) with no listener and connects to it over in-memory connections (embedded.go), so no
// other process can reach it. Either way the rest of the program holds one
// redis.UniversalClient and only ever speaks Redis, so there is a single code path to test.
//
// It must not keep any state of the gateway's own (tokens, quotas, cache entries, jobs belong to
// their packages), open a listener, or repeat a password in an error or a log line. It imports
// nothing of the gateway, so that configuration checks (Parse, without opening anything), the
// replica's wiring and the test helpers all read REDIS_URL the same way.
package redisconn
