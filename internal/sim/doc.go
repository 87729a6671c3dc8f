// Package sim simulates the Inbox Hub WhatsApp API (as docs/upstream.md describes it), in
// process, for development, demos, tests and benchmarks: the gateway cannot reach the real one.
//
// Start one with New and serve Handler (tests use httptest.NewServer(s.Handler())); Close it when
// done. What it reproduces:
//
//   - The envelopes: {"success": true, "message"?, "data"} and {"success": false, "error",
//     "code", "details"?, "timestamp"} (the text in "message" under Faults.UseMessageField).
//   - Login, refresh (optionally rotating, optionally answering only accessToken), profile and
//     logout, with HS256 JWTs carrying sub, iat, exp and a unique jti. Tokens are remembered
//     so that logout, rotation and RevokeAllTokens can kill them: a dead, expired or foreign
//     Bearer answers 401 INVALID_TOKEN.
//   - X-API-Key on the WhatsApp routes (401 MISSING_API_KEY / INVALID_API_KEY); a Bearer sent
//     alongside must be valid too.
//   - Sessions addressed by numeric id or sessionId on /api/sessions/{id}/...; the contacts and
//     messages routes take the string sessionId only (a numeric id there is 404
//     SESSION_NOT_FOUND), as the upstream does. Seeded session ids start at 91.
//   - The connect flow: connect moves a session to "connecting"; after Options.QRDelay it shows
//     a QR (status qr_code, a PNG data URL) that is replaced every Options.QRLifetime until
//     ScanQR connects the session. GET .../qr answers 404 QR_NOT_READY until then. Connect on a
//     session already connected, connecting or showing a QR changes nothing and answers 200
//     with its status.
//   - Contacts (generation order), chats (newest message first) and messages (newest first, by
//     id) with page and limit (1..100; 400 VALIDATION_ERROR beyond); 400 SESSION_NOT_CONNECTED
//     "La sesión debe estar conectada" when the session is not connected.
//   - Rate limits per caller (the X-API-Key, else the client address) in fixed windows: auth
//     (login and refresh-token), reads (the GETs of sessions, contacts and messages), sends, and
//     a global one over every /api request. Refusals are 429 RATE_LIMIT_EXCEEDED
//     (MESSAGE_RATE_LIMIT_EXCEEDED for sends) with RateLimit-*, X-RateLimit-* and Retry-After;
//     allowed answers carry the RateLimit-* headers of the narrowest limit.
//   - Webhooks signed with X-Webhook-Signature (see Sign), sent from a bounded queue by one
//     goroutine, never retried.
//
// Generated data is deterministic for a given Options.Seed: JIDs at s.whatsapp.net, about 10%
// at lid and 3% groups (g.us); names in many scripts, some empty (answered as "" or null);
// message timestamps as ISO strings or unix seconds; about one message in ten carries its
// text in "content" instead of "body". A session's data is generated on first use.
//
// Route keys: Counters.Requests and Faults.RouteStatus use the route pattern exactly as
// registered, "METHOD /api/path/{param}", for example "GET /api/contacts/{sessionId}",
// "GET /api/messages/{sessionId}/chats", "POST /api/sessions/{id}/connect". Requests to no
// known route count under "/api/".
//
// Injected 500s use the upstream's codes (CONNECTION_ERROR on connect, QR_GENERATION_ERROR on
// qr, INTERNAL_ERROR elsewhere); injected 502 and 504 answer nginx's HTML page, as the real
// deployment does when the app behind it is down. An AllStatus of 502, 503 or 504 is an outage
// of the whole server: GET /health fails with it too (and every /health is counted).
//
// It must not be lenient, since tests that pass against a forgiving fake prove nothing: it
// enforces the upstream's rules (credentials, rate limits, id forms, connected sessions) as
// strictly as the real service. The gateway uses it only in tests and the demo mode, never in
// front of real traffic.
//
// The admin API, in plain JSON, guarded by X-Sim-Admin-Key when Options.AdminKey is set:
//
//	GET  /_sim/counters                                 Counters
//	POST /_sim/counters/reset
//	GET  /_sim/faults                                   current Faults
//	PUT  /_sim/faults                                   Faults, latency as "200ms"
//	POST /_sim/revoke                                   RevokeAllTokens
//	POST /_sim/ratelimits/reset                         ResetRateLimits
//	POST /_sim/sessions/{sessionId}/status              {"status": "disconnected"}
//	POST /_sim/sessions/{sessionId}/scan                ScanQR (409 if no QR is showing)
//	POST /_sim/sessions/{sessionId}/mutate-contacts     {"n": 50} -> {"ids": [...]}
//	POST /_sim/sessions/{sessionId}/chats/{chatId}/messages  {"n": 5}
package sim
