// Package cache keeps the gateway's cached state in Redis (the connection is package redisconn's).
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
