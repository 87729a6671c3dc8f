package sim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// webhookQueueSize bounds the deliveries waiting to be sent; beyond it they are dropped, as
// the upstream loses webhooks.
const webhookQueueSize = 256

// webhookTimeout is how long the upstream waits for a webhook receiver.
const webhookTimeout = 7 * time.Second

// delivery is one webhook POST, ready to send.
type delivery struct {
	url, secret      string
	event, sessionID string
	timestamp        time.Time
	body             []byte
}

// webhookSender posts deliveries from a bounded queue on one goroutine, so a slow receiver
// never slows a request down. Deliveries are not retried.
type webhookSender struct {
	queue    chan delivery
	client   *http.Client
	log      *slog.Logger
	counters *counterSet
}

func newWebhookSender(log *slog.Logger, counters *counterSet) *webhookSender {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: webhookTimeout,
	}
	return &webhookSender{
		queue:    make(chan delivery, webhookQueueSize),
		client:   &http.Client{Timeout: webhookTimeout, Transport: transport},
		log:      log,
		counters: counters,
	}
}

// enqueue queues d without blocking, dropping it when the queue is full.
func (w *webhookSender) enqueue(d delivery) {
	select {
	case w.queue <- d:
	default:
		w.counters.add(func(c *Counters) { c.WebhooksDropped++ })
		w.log.Warn("sim: webhook queue full, delivery dropped", "event", d.event, "session", d.sessionID)
	}
}

// run delivers queued webhooks until ctx ends; what is still queued then is dropped.
func (w *webhookSender) run(ctx context.Context) {
	defer w.client.CloseIdleConnections()
	for {
		select {
		case <-ctx.Done():
			w.dropQueued()
			return
		case d := <-w.queue:
			w.deliver(ctx, d)
		}
	}
}

// dropQueued empties the queue, counting what it held as dropped.
func (w *webhookSender) dropQueued() {
	for {
		select {
		case <-w.queue:
			w.counters.add(func(c *Counters) { c.WebhooksDropped++ })
		default:
			return
		}
	}
}

func (w *webhookSender) deliver(ctx context.Context, d delivery) {
	err := w.post(ctx, d)
	w.counters.add(func(c *Counters) {
		if err != nil {
			c.WebhookFailures++
		} else {
			c.WebhooksSent++
		}
	})
	if err != nil {
		w.log.Warn("sim: webhook delivery failed", "event", d.event, "session", d.sessionID, "err", err)
	}
}

// errWebhookStatus is a receiver's non-2xx answer.
type errWebhookStatus int

func (e errWebhookStatus) Error() string { return "webhook receiver answered " + strconv.Itoa(int(e)) }

func (w *webhookSender) post(ctx context.Context, d delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "InboxHub-Webhook/2.0 (simulator)")
	req.Header.Set("X-Webhook-Event", d.event)
	req.Header.Set("X-Webhook-Session", d.sessionID)
	req.Header.Set("X-Webhook-Timestamp", strconv.FormatInt(d.timestamp.UnixMilli(), 10))
	if d.secret != "" {
		req.Header.Set("X-Webhook-Signature", Sign(d.secret, d.body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return errWebhookStatus(resp.StatusCode)
	}
	return nil
}

// Sign is the X-Webhook-Signature value of body under secret: "sha256=" and the hex
// HMAC-SHA256 of the raw body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// emitSession sends a session event (session.connected, session.disconnected, session.qr)
// with fields added to its data; the caller holds s.mu.
func (s *Server) emitSession(ss *session, event string, fields map[string]any) {
	data := map[string]any{"sessionId": ss.sid, "session_db_id": ss.id}
	for k, v := range fields {
		data[k] = v
	}
	if !s.opts.LegacyWebhooks {
		s.emit(ss, event, map[string]any{"event": event, "data": data})
		return
	}
	data["status"] = strings.TrimPrefix(event, "session.")
	s.emit(ss, event, map[string]any{"event": "session_status", "sessionId": ss.sid, "data": data,
		"timestamp": s.clock().UnixMilli()})
}

// emitMessage sends message.received or message.sent for m; the caller holds s.mu.
func (s *Server) emitMessage(ss *session, event string, m *message) {
	if !s.opts.LegacyWebhooks {
		to := ss.sid // as the upstream writes it for received messages
		if m.fromMe {
			to = m.to
		}
		s.emit(ss, event, map[string]any{"event": event, "data": map[string]any{
			"sessionId": ss.sid, "session_db_id": ss.id,
			"message": map[string]any{"whatsappMessageId": m.waID, "content": m.body, "chatId": m.chatID,
				"from": m.from, "to": to, "fromMe": m.fromMe, "timestamp": m.at.Unix(), "type": m.kind,
				"has_attachment": m.kind != "text", "media": nil}}})
		return
	}
	cus := func(jid string) string { return strings.Replace(jid, "@s.whatsapp.net", "@c.us", 1) }
	s.emit(ss, event, map[string]any{"event": "message", "sessionId": ss.sid, "timestamp": s.clock().UnixMilli(),
		"data": map[string]any{
			"id":   map[string]any{"_serialized": strconv.FormatBool(m.fromMe) + "_" + cus(m.chatID) + "_" + m.waID},
			"body": m.body, "from": cus(m.from), "fromMe": m.fromMe, "hasMedia": m.kind != "text", "timestamp": m.at.Unix()}})
}

// emit queues payload for the session's webhook URL (or the default one), if the session
// wants the event; the caller holds s.mu. Legacy payloads carry the old event names.
func (s *Server) emit(ss *session, event string, payload map[string]any) {
	target, secret := s.opts.WebhookURL, s.opts.WebhookSecret
	if ss.webhookURL != "" {
		target, secret = ss.webhookURL, ss.webhookSecret
	}
	if target == "" || (len(ss.webhookEvents) > 0 && !slices.Contains(ss.webhookEvents, event)) {
		return
	}
	body, err := json.Marshal(payload)
	if err != nil {
		s.log.Error("sim: webhook payload", "event", event, "err", err)
		return
	}
	if name, ok := payload["event"].(string); ok {
		event = name
	}
	s.hooks.enqueue(delivery{url: target, secret: secret, event: event, sessionID: ss.sid,
		timestamp: s.clock(), body: body})
}
