// Package crm owns what the CRM receives from the gateway and how it gets there.
//
// The shape: the item schema of contacts, chats and messages (Contact, Chat, Message, normalised
// from the upstream's by NormalizeContact, NormalizeChat and NormalizeMessage, their ids by
// package jid), the same in the v1 lists, the sync items and the webhook events, so that the CRM
// upserts all of them through one code path; the canonical JSON of an item or event
// (CanonicalJSON: the same value always gives the same bytes) and its digest (Digest).
//
// The delivery: every push to the CRM is an HTTP POST signed with X-Gateway-Timestamp and
// X-Gateway-Signature (Sign, Verify: HMAC-SHA256 of timestamp + "." + body under the signing
// secret), sent by PostSigned through a client that never follows a redirect; Sink delivers the
// sync's batches (Batch) with exponential backoff and full jitter, honouring Retry-After.
//
// It must not decide what is sent or when (the sync engine and the event forwarder do), keep any
// state (no Redis, no queue), read the upstream, or put a secret, a URL (which may carry a token)
// or a redirect's Location into an error.
package crm
