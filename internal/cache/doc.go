// Package cache opens the gateway's Redis connection and keeps the gateway's cached state in it.
//
// The connection (store.go): with REDIS_URL set it connects to one Redis server, a
// Sentinel-managed master or a Redis Cluster (the URL is read by package redisurl); without it, it
// starts an embedded in-process Redis-compatible server (miniredis) with no listener and connects
// to it over in-memory connections (embedded.go), so no other process can reach it. Either way the
// rest of the program holds one redis.UniversalClient and only ever speaks Redis, so there is a
// single code path to test. (The connection is to move to a package of its
// own.)
//
// The read cache (readthrough.go, upstream.go, local.go): ReadThrough keeps upstream answers in
// Redis, shared by every replica, with fresh, stale-while-revalidate and stale-if-error windows
// (Policy), one upstream load per key fleet-wide for concurrent misses, fleet-wide invalidation by
// scope, and a small in-process layer in front. CachedUpstream wraps the upstream client with it,
// method for method, and drops a session's cached reads after writes.
//
// It must not cache an error or a Redis failure, fail a read because Redis failed (the read goes
// to the upstream), put caller identity or raw caller text into a key, serve a QR code stale, or
// let a load that began before an invalidation store its value after it.
package cache
