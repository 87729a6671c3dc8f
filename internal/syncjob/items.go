package syncjob

import (
	"strconv"
	"strings"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// normalized is one item ready to be classified: its key in the session's hash store, its digest
// and its canonical JSON.
type normalized struct {
	key    string
	digest string
	json   []byte
}

// messageKey is a message's key in the session's message hashes: unique per chat.
func messageKey(m crm.Message) string { return m.ChatID + " " + m.ID }

// chatState is what decides whether a chat's messages must be read again: its message count and
// the time of its last message, as the chat list showed them.
func chatState(c upstream.Chat) string {
	var last int64
	if c.LastMessage != nil && !c.LastMessage.Timestamp.IsZero() {
		last = c.LastMessage.Timestamp.UnixNano()
	}
	return strconv.Itoa(c.MessageCount) + "|" + strconv.FormatInt(last, 10)
}

// lastAtOfState returns the last message time recorded in a chat state ("" gives zero).
func lastAtOfState(state string) time.Time {
	_, ns, ok := strings.Cut(state, "|")
	if !ok {
		return time.Time{}
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
