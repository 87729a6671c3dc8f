// Package jid owns the reading of WhatsApp ids (JIDs: <user>[:<device>]@<server>) and their stable
// form: the device part dropped, the server lower-cased, the older server @c.us rewritten as
// the newer @s.whatsapp.net. The CRM item schema, the send route's recipient check, the session
// answers and the webhook events all read ids through it.
//
// It is a leaf: it imports no other package of the gateway, decides nothing about what an id may
// be in a request (callers check that on the parts Parse gives), and never logs (a JID carries a
// phone number).
package jid

import "strings"

// Servers of the JIDs the upstream uses.
const (
	// ServerPhone is the server of phone JIDs: <msisdn>[:<device>]@s.whatsapp.net.
	ServerPhone = "s.whatsapp.net"
	// ServerLegacyPhone is the older server of phone JIDs, rewritten as ServerPhone.
	ServerLegacyPhone = "c.us"
	// ServerLID is the server of linked ids, which hide the phone number.
	ServerLID = "lid"
	// ServerGroup is the server of group JIDs: <digits>[-<digits>]@g.us.
	ServerGroup = "g.us"
)

// Kinds of ids, as Kind reports them.
const (
	// KindPhone is a phone JID whose user part is digits: the phone is known.
	KindPhone = "phone"
	// KindLID is a linked id (@lid): kept as the id only.
	KindLID = "lid"
	// KindGroup is a group JID (@g.us): no phone.
	KindGroup = "group"
	// KindOther is anything else (broadcast lists, newsletters, unknown servers, no server).
	KindOther = "other"
)

// JID is a WhatsApp id split into its parts.
type JID struct {
	// User is the part before the "@", without the device part for phone and @lid ids.
	User string
	// Device is the device suffix of a phone or @lid id (after ":"), "" when none.
	Device string
	// Server is the lower-cased part after the first "@", as written (c.us is kept: see Stable).
	Server string
	// device: the id had a ":" after the user (Device may still be empty).
	device bool
}

// Parse splits s, spaces around it removed, at its first "@"; ok is false when it has none (then
// User is the whole trimmed s).
func Parse(s string) (j JID, ok bool) {
	s = strings.TrimSpace(s)
	user, server, ok := strings.Cut(s, "@")
	if !ok {
		return JID{User: s}, false
	}
	j = JID{User: user, Server: strings.ToLower(server)}
	switch j.Server {
	case ServerPhone, ServerLegacyPhone, ServerLID:
		j.User, j.Device, j.device = strings.Cut(user, ":") // a device names one linked device, not the person
	}
	return j, true
}

// HasDevice reports whether a phone or @lid id named a device: a ":" after the user part, even
// with nothing after it.
func (j JID) HasDevice() bool { return j.device }

// IsPhone reports whether j is at a phone server (s.whatsapp.net or c.us), whatever its user part.
func (j JID) IsPhone() bool { return j.Server == ServerPhone || j.Server == ServerLegacyPhone }

// Kind says what j is: KindPhone needs a phone server and a user part of ASCII digits.
func (j JID) Kind() string {
	switch {
	case j.IsPhone() && Digits(j.User, 1, len(j.User)):
		return KindPhone
	case j.Server == ServerLID:
		return KindLID
	case j.Server == ServerGroup:
		return KindGroup
	}
	return KindOther
}

// Stable is the stable form of a parsed JID: the device part dropped, c.us rewritten as
// s.whatsapp.net.
func (j JID) Stable() string {
	if j.IsPhone() {
		return j.User + "@" + ServerPhone
	}
	return j.User + "@" + j.Server
}

// Phone is the phone number of a phone JID (its digits, country code first), "" for any other id.
func (j JID) Phone() string {
	if j.Kind() != KindPhone {
		return ""
	}
	return j.User
}

// Normalize returns the stable form of a WhatsApp id (see Parse and Stable), its kind and the
// phone number it carries (phone JIDs only). An id without "@" is kept as it is (trimmed), of
// KindOther.
func Normalize(s string) (id, kind, phone string) {
	j, ok := Parse(s)
	if !ok {
		return j.User, KindOther, ""
	}
	return j.Stable(), j.Kind(), j.Phone()
}

// Phone is the phone number carried by the WhatsApp id s ("" unless it is a phone JID).
func Phone(s string) string {
	j, _ := Parse(s)
	return j.Phone()
}

// Digits reports whether s is lo to hi ASCII digits (never other Unicode digits).
func Digits(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
