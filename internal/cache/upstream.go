package cache

import (
	"context"
	"iter"
	"log/slog"
	"strconv"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// Upstream is the part of the upstream client that CachedUpstream wraps: the reads it caches,
// the paged session list it passes through, and the writes after which it drops a session's
// cached reads. *upstream.Client implements it.
type Upstream interface {
	AllSessions(ctx context.Context, limit int) iter.Seq2[upstream.Session, error]
	ListSessions(ctx context.Context, p upstream.ListSessionsParams) (upstream.Page[upstream.Session], error)
	GetSession(ctx context.Context, sessionID string) (upstream.Session, error)
	SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
	QR(ctx context.Context, sessionID string) (upstream.QR, error)
	Contacts(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Contact], error)
	Chats(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Chat], error)
	ChatMessages(ctx context.Context, sessionID, chatID string, p upstream.ListParams) (upstream.Page[upstream.Message], error)
	Connect(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
	Disconnect(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
	SendText(ctx context.Context, sessionID, toJID, text string) (upstream.Message, error)
}

// Kinds of cached values, as they appear in keys and in the kind label of the metrics.
const (
	KindSessions = "sessions"
	KindSession  = "session"
	KindStatus   = "status"
	KindQR       = "qr"
	KindContacts = "contacts"
	KindChats    = "chats"
	KindMessages = "messages"
)

// Policies are the freshness rules of each kind of upstream read.
type Policies struct {
	// Sessions is the list of sessions (AllSessions and ListSessions pages).
	Sessions Policy
	// Session is one session (GetSession) and Status its live state (SessionStatus).
	Session, Status Policy
	// QR.Fresh applies to a QR without an expiry; one with an expiry is fresh until QRMargin
	// before it. A QR is never served stale (an expired code cannot be scanned).
	QR Policy
	// QRMargin is how long before its expiry a QR stops being served from the cache, so that the
	// caller still has time to scan it.
	QRMargin time.Duration
	// Contacts, Chats and Messages are pages of those lists, keyed by their parameters.
	Contacts, Chats, Messages Policy
}

// DefaultPolicies: session state fresh 5 s, list pages 30 s, QR until its expiry; stale
// served while one refresh runs for a short while after that, and for 10 minutes when the
// upstream is down or over quota.
func DefaultPolicies() Policies {
	state := Policy{Fresh: 5 * time.Second, Revalidate: 10 * time.Second, StaleIfError: 10 * time.Minute}
	page := Policy{Fresh: 30 * time.Second, Revalidate: time.Minute, StaleIfError: 10 * time.Minute}
	return Policies{
		Sessions: state, Session: state, Status: state,
		QR:       Policy{Fresh: 20 * time.Second},
		QRMargin: 5 * time.Second,
		Contacts: page, Chats: page, Messages: page,
	}
}

// CachedUpstream is the upstream client with a read cache: it has the same methods with the
// same signatures, so handlers cannot tell it from the client (they declare the few methods they
// use, and either satisfies them). Reads go through a ReadThrough; writes go to the upstream and
// then drop the session's cached reads fleet-wide. Cache facts reach the handler through
// Track/InfoFrom, not through the signatures.
type CachedUpstream struct {
	up  Upstream
	rt  *ReadThrough
	pol Policies
	log *slog.Logger
}

// NewCachedUpstream wraps up with the read cache rt and the policies pol (DefaultPolicies for
// the defaults). logger receives failed invalidations; nil discards them.
func NewCachedUpstream(up Upstream, rt *ReadThrough, pol Policies, logger *slog.Logger) *CachedUpstream {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &CachedUpstream{up: up, rt: rt, pol: pol, log: logger}
}

// AllSessions yields every session from the cached full list (one upstream walk of all pages
// per freshness period, whatever the number of readers); limit is the page size of that walk.
func (c *CachedUpstream) AllSessions(ctx context.Context, limit int) iter.Seq2[upstream.Session, error] {
	return func(yield func(upstream.Session, error) bool) {
		key := Key{Scope: ScopeSessions, Kind: KindSessions, Name: "all"}
		list, err := Read(ctx, c.rt, key, c.pol.Sessions, func(ctx context.Context) ([]upstream.Session, error) {
			out := []upstream.Session{}
			for s, err := range c.up.AllSessions(ctx, limit) {
				if err != nil {
					return nil, err
				}
				out = append(out, s)
			}
			return out, nil
		})
		if err != nil {
			yield(upstream.Session{}, err)
			return
		}
		for _, s := range list {
			if !yield(s, nil) {
				return
			}
		}
	}
}

// ListSessions returns a cached page of sessions.
func (c *CachedUpstream) ListSessions(ctx context.Context, p upstream.ListSessionsParams) (upstream.Page[upstream.Session], error) {
	key := Key{Scope: ScopeSessions, Kind: KindSessions, Name: pageName(p.Page, p.Limit) + ":st=" + Part(p.Status)}
	return Read(ctx, c.rt, key, c.pol.Sessions, func(ctx context.Context) (upstream.Page[upstream.Session], error) {
		return c.up.ListSessions(ctx, p)
	})
}

// GetSession returns one session, cached.
func (c *CachedUpstream) GetSession(ctx context.Context, sessionID string) (upstream.Session, error) {
	key := Key{Scope: SessionScope(sessionID), Kind: KindSession}
	return Read(ctx, c.rt, key, c.pol.Session, func(ctx context.Context) (upstream.Session, error) {
		return c.up.GetSession(ctx, sessionID)
	})
}

// SessionStatus returns a session's live state, cached for a few seconds.
func (c *CachedUpstream) SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error) {
	key := Key{Scope: SessionScope(sessionID), Kind: KindStatus}
	return Read(ctx, c.rt, key, c.pol.Status, func(ctx context.Context) (upstream.SessionStatus, error) {
		return c.up.SessionStatus(ctx, sessionID)
	})
}

// QR returns the code to scan, cached until QRMargin before it expires (at most maxQRFresh)
// and never served stale: an expired code cannot be scanned. "Not ready yet" (404) is not
// cached: the next poll asks again.
func (c *CachedUpstream) QR(ctx context.Context, sessionID string) (upstream.QR, error) {
	key := Key{Scope: SessionScope(sessionID), Kind: KindQR}
	pol := Policy{Fresh: c.pol.QR.Fresh}
	return ReadUntil(ctx, c.rt, key, pol, func(ctx context.Context) (upstream.QR, error) {
		return c.up.QR(ctx, sessionID)
	}, func(q upstream.QR) time.Duration {
		if q.ExpiresAt.IsZero() {
			return pol.Fresh
		}
		return min(q.ExpiresAt.Sub(c.rt.now())-c.pol.QRMargin, maxQRFresh)
	})
}

// maxQRFresh caps a QR's freshness whatever expiry the upstream gives (a QR lives about 60 s).
const maxQRFresh = 2 * time.Minute

// Contacts returns a cached page of contacts, keyed by page, limit and a hash of the search.
func (c *CachedUpstream) Contacts(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Contact], error) {
	key := Key{Scope: SessionScope(sessionID), Kind: KindContacts, Name: listName(p)}
	return Read(ctx, c.rt, key, c.pol.Contacts, func(ctx context.Context) (upstream.Page[upstream.Contact], error) {
		return c.up.Contacts(ctx, sessionID, p)
	})
}

// Chats returns a cached page of chats.
func (c *CachedUpstream) Chats(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Chat], error) {
	key := Key{Scope: SessionScope(sessionID), Kind: KindChats, Name: listName(p)}
	return Read(ctx, c.rt, key, c.pol.Chats, func(ctx context.Context) (upstream.Page[upstream.Chat], error) {
		return c.up.Chats(ctx, sessionID, p)
	})
}

// ChatMessages returns a cached page of one chat's messages (the chat's JID is hashed in the key).
func (c *CachedUpstream) ChatMessages(ctx context.Context, sessionID, chatID string, p upstream.ListParams) (upstream.Page[upstream.Message], error) {
	key := Key{Scope: SessionScope(sessionID), Kind: KindMessages, Name: "c=" + Hash(chatID) + ":" + listName(p)}
	return Read(ctx, c.rt, key, c.pol.Messages, func(ctx context.Context) (upstream.Page[upstream.Message], error) {
		return c.up.ChatMessages(ctx, sessionID, chatID, p)
	})
}

// Connect starts (re)connecting a session and drops its cached reads.
func (c *CachedUpstream) Connect(ctx context.Context, sessionID string) (upstream.SessionStatus, error) {
	st, err := c.up.Connect(ctx, sessionID)
	if err == nil {
		c.invalidate(ctx, sessionID)
	}
	return st, err
}

// Disconnect disconnects a session and drops its cached reads.
func (c *CachedUpstream) Disconnect(ctx context.Context, sessionID string) (upstream.SessionStatus, error) {
	st, err := c.up.Disconnect(ctx, sessionID)
	if err == nil {
		c.invalidate(ctx, sessionID)
	}
	return st, err
}

// SendText sends a message and drops the session's cached contents (its chats and messages
// changed; the session list did not).
func (c *CachedUpstream) SendText(ctx context.Context, sessionID, toJID, text string) (upstream.Message, error) {
	m, err := c.up.SendText(ctx, sessionID, toJID, text)
	if err == nil {
		if err := c.InvalidateContent(ctx, sessionID); err != nil {
			c.log.WarnContext(ctx, "could not drop a session's cached reads; they expire on their own", "error", err.Error())
		}
	}
	return m, err
}

// Invalidate drops everything cached about a session, and the session list, fleet-wide. Call it
// when the session itself changed (its status: a confirmed session webhook, a status poll that saw
// a change, a connect or disconnect).
func (c *CachedUpstream) Invalidate(ctx context.Context, sessionID string) error {
	return c.rt.Invalidate(ctx, SessionScope(sessionID), ScopeSessions)
}

// InvalidateContent drops what is cached of one session's contents (its contacts, chats and
// messages pages, and its own entries), fleet-wide, but not the session list, which a message, a
// contact or a chat does not change. Call it for message, contact and conversation events and
// after a send: dropping the fleet-wide list on each of them made every list read an upstream
// call under webhook load, spending the read quota.
func (c *CachedUpstream) InvalidateContent(ctx context.Context, sessionID string) error {
	return c.rt.Invalidate(ctx, SessionScope(sessionID))
}

// invalidate is Invalidate after a write: a failure is logged (the values expire on their own).
func (c *CachedUpstream) invalidate(ctx context.Context, sessionID string) {
	if err := c.Invalidate(ctx, sessionID); err != nil {
		c.log.WarnContext(ctx, "could not drop a session's cached reads; they expire on their own", "error", err.Error())
	}
}

func pageName(page, limit int) string {
	return "p=" + strconv.Itoa(page) + ":l=" + strconv.Itoa(limit)
}

// listName keys a list page; a search term is free text, so it is always hashed.
func listName(p upstream.ListParams) string {
	n := pageName(p.Page, p.Limit)
	if p.Search != "" {
		n += ":q=" + Hash(p.Search)
	}
	return n
}
