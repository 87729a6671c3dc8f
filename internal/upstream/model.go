package upstream

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// The upstream's answers vary between deployments and versions: ids come as numbers or strings,
// times as ISO strings or Unix seconds, message text as body or content. The types below decode
// every shape seen through small tolerant field types, and a value the client cannot read (a
// timestamp in an unknown format, say) is left zero rather than failing a whole page.

// Page is one page of a list. Total and Pages are 0 when the upstream did not say.
type Page[T any] struct {
	Items []T
	Total int
	Page  int
	Limit int
	Pages int
}

// MaxLimit is the largest page size the upstream accepts.
const MaxLimit = 100

// ListParams selects a page of contacts, chats or messages. Zero fields are not sent (the upstream
// then uses its defaults: page 1, limit 50 for contacts and 20 for chats).
type ListParams struct {
	Page   int
	Limit  int
	Search string // contacts only
}

// ListSessionsParams selects a page of sessions; Status filters by status when not empty.
type ListSessionsParams struct {
	Page   int
	Limit  int
	Status string
}

// Session is one WhatsApp number on the upstream, with both of its ids: ID (numeric, database id,
// used on /api/sessions/:id routes) and SessionID (the string callers use).
type Session struct {
	ID                int64          `json:"id"`
	SessionID         string         `json:"sessionId"`
	SessionName       string         `json:"sessionName"`
	UserID            string         `json:"userId"`
	PhoneNumber       string         `json:"phoneNumber"`
	PhoneNumberID     string         `json:"phoneNumberId"` // a JID such as 34657032985:71@s.whatsapp.net
	Status            string         `json:"status"`        // as sent; see NormalizeStatus
	IsConnected       bool           `json:"isConnected"`
	HasQR             bool           `json:"hasQR"`
	QRCode            string         `json:"qrCode"` // a data URL, or empty
	QRCodeGeneratedAt time.Time      `json:"qrCodeGeneratedAt"`
	QRCodeExpiresAt   time.Time      `json:"qrCodeExpiresAt"`
	LastActivity      time.Time      `json:"lastActivity"`
	CreatedAt         time.Time      `json:"createdAt"`
	UpdatedAt         time.Time      `json:"updatedAt"`
	Profile           SessionProfile `json:"profile"`
}

// SessionProfile is the WhatsApp profile of a session's number.
type SessionProfile struct {
	Name              string `json:"name"`
	About             string `json:"about"`
	ProfilePictureURL string `json:"profilePictureUrl"`
	IsBusiness        bool   `json:"isBusiness"`
}

// UnmarshalJSON reads a session in any of the upstream's shapes.
func (s *Session) UnmarshalJSON(b []byte) error {
	var w struct {
		ID                flexInt    `json:"id"`
		SessionID         flexString `json:"sessionId"`
		SessionName       flexString `json:"sessionName"`
		UserID            flexString `json:"userId"`
		PhoneNumber       flexString `json:"phoneNumber"`
		PhoneNumberID     flexString `json:"phoneNumberId"`
		Status            flexString `json:"status"`
		IsConnected       flexBool   `json:"isConnected"`
		HasQR             flexBool   `json:"hasQR"`
		QRCode            flexString `json:"qrCode"`
		QRCodeGeneratedAt flexTime   `json:"qrCodeGeneratedAt"`
		QRCodeExpiresAt   flexTime   `json:"qrCodeExpiresAt"`
		LastActivity      flexTime   `json:"lastActivity"`
		CreatedAt         flexTime   `json:"createdAt"`
		UpdatedAt         flexTime   `json:"updatedAt"`
		Profile           *struct {
			Name              flexString `json:"name"`
			About             flexString `json:"about"`
			ProfilePictureURL flexString `json:"profilePictureUrl"`
			IsBusiness        flexBool   `json:"isBusiness"`
		} `json:"profile"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = Session{
		ID: int64(w.ID), SessionID: string(w.SessionID), SessionName: string(w.SessionName),
		UserID: string(w.UserID), PhoneNumber: string(w.PhoneNumber), PhoneNumberID: string(w.PhoneNumberID),
		Status: string(w.Status), IsConnected: bool(w.IsConnected), HasQR: bool(w.HasQR),
		QRCode: string(w.QRCode), QRCodeGeneratedAt: w.QRCodeGeneratedAt.time(),
		QRCodeExpiresAt: w.QRCodeExpiresAt.time(), LastActivity: w.LastActivity.time(),
		CreatedAt: w.CreatedAt.time(), UpdatedAt: w.UpdatedAt.time(),
	}
	if w.Profile != nil {
		s.Profile = SessionProfile{Name: string(w.Profile.Name), About: string(w.Profile.About),
			ProfilePictureURL: string(w.Profile.ProfilePictureURL), IsBusiness: bool(w.Profile.IsBusiness)}
	}
	return nil
}

// SessionStatus is the live state of a session (GET /api/sessions/:id/status, and the answers of
// connect and disconnect, which fill SessionID and Status only).
type SessionStatus struct {
	ID           int64     `json:"id"`
	SessionID    string    `json:"sessionId"`
	Status       string    `json:"status"`
	PhoneNumber  string    `json:"phoneNumber"`
	LastActivity time.Time `json:"lastActivity"`
	IsConnected  bool      `json:"isConnected"`
	HasQR        bool      `json:"hasQR"`
}

// UnmarshalJSON reads a session status in any of the upstream's shapes.
func (s *SessionStatus) UnmarshalJSON(b []byte) error {
	var w struct {
		ID           flexInt    `json:"id"`
		SessionID    flexString `json:"sessionId"`
		Status       flexString `json:"status"`
		PhoneNumber  flexString `json:"phoneNumber"`
		LastActivity flexTime   `json:"lastActivity"`
		IsConnected  flexBool   `json:"isConnected"`
		HasQR        flexBool   `json:"hasQR"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = SessionStatus{ID: int64(w.ID), SessionID: string(w.SessionID), Status: string(w.Status),
		PhoneNumber: string(w.PhoneNumber), LastActivity: w.LastActivity.time(),
		IsConnected: bool(w.IsConnected), HasQR: bool(w.HasQR)}
	return nil
}

// QR is the code to scan to link a session: Code is a data URL (data:image/png;base64,...). A QR
// lives about 60 seconds.
type QR struct {
	SessionID string    `json:"sessionId"`
	Code      string    `json:"qrCode"`
	ExpiresAt time.Time `json:"expiresAt"`
	Status    string    `json:"status"`
}

// UnmarshalJSON reads a QR answer.
func (q *QR) UnmarshalJSON(b []byte) error {
	var w struct {
		SessionID flexString `json:"sessionId"`
		Code      flexString `json:"qrCode"`
		ExpiresAt flexTime   `json:"expiresAt"`
		Status    flexString `json:"status"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*q = QR{SessionID: string(w.SessionID), Code: string(w.Code), ExpiresAt: w.ExpiresAt.time(), Status: string(w.Status)}
	return nil
}

// Contact is a WhatsApp contact; ID is its JID (...@s.whatsapp.net, ...@g.us or ...@lid).
type Contact struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	VerifiedName string `json:"verifiedName"`
	Notify       string `json:"notify"`
	ImgURL       string `json:"imgUrl"`
	IsUser       bool   `json:"isUser"`
	IsGroup      bool   `json:"isGroup"`
	IsWAContact  bool   `json:"isWAContact"`
}

// UnmarshalJSON reads a contact in any of the upstream's shapes.
func (c *Contact) UnmarshalJSON(b []byte) error {
	var w struct {
		ID           flexString `json:"id"`
		Name         flexString `json:"name"`
		VerifiedName flexString `json:"verifiedName"`
		Notify       flexString `json:"notify"`
		ImgURL       flexString `json:"imgUrl"`
		IsUser       flexBool   `json:"isUser"`
		IsGroup      flexBool   `json:"isGroup"`
		IsWAContact  flexBool   `json:"isWAContact"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Contact{ID: string(w.ID), Name: string(w.Name), VerifiedName: string(w.VerifiedName),
		Notify: string(w.Notify), ImgURL: string(w.ImgURL), IsUser: bool(w.IsUser),
		IsGroup: bool(w.IsGroup), IsWAContact: bool(w.IsWAContact)}
	return nil
}

// Chat is a conversation; ChatID is the JID of the other party or group.
type Chat struct {
	ChatID       string       `json:"chatId"`
	Name         string       `json:"name"`
	IsGroup      bool         `json:"isGroup"`
	LastMessage  *LastMessage `json:"lastMessage"` // nil when the upstream sent none
	UnreadCount  int          `json:"unreadCount"`
	MessageCount int          `json:"messageCount"`
}

// LastMessage is the summary of a chat's latest message.
type LastMessage struct {
	Body      string    `json:"body"`
	Timestamp time.Time `json:"timestamp"`
	FromMe    bool      `json:"fromMe"`
}

// UnmarshalJSON reads a chat in any of the upstream's shapes (chatId or id; body or content).
func (c *Chat) UnmarshalJSON(b []byte) error {
	var w struct {
		ChatID      flexString `json:"chatId"`
		ID          flexString `json:"id"`
		Name        flexString `json:"name"`
		IsGroup     flexBool   `json:"isGroup"`
		LastMessage *struct {
			Body      flexString `json:"body"`
			Content   flexString `json:"content"`
			Timestamp flexTime   `json:"timestamp"`
			FromMe    flexBool   `json:"fromMe"`
		} `json:"lastMessage"`
		UnreadCount  flexInt `json:"unreadCount"`
		MessageCount flexInt `json:"messageCount"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Chat{ChatID: firstNonEmpty(string(w.ChatID), string(w.ID)), Name: string(w.Name),
		IsGroup: bool(w.IsGroup), UnreadCount: clampInt(w.UnreadCount), MessageCount: clampInt(w.MessageCount)}
	if w.LastMessage != nil {
		c.LastMessage = &LastMessage{Body: firstNonEmpty(string(w.LastMessage.Body), string(w.LastMessage.Content)),
			Timestamp: w.LastMessage.Timestamp.time(), FromMe: bool(w.LastMessage.FromMe)}
	}
	return nil
}

// Message is a WhatsApp message. Body holds the text whether the upstream called it body or
// content; Timestamp was sent as an ISO string or as Unix seconds.
type Message struct {
	ID                string    `json:"id"`
	WhatsappMessageID string    `json:"whatsappMessageId"`
	ChatID            string    `json:"chatId"`
	From              string    `json:"from"`
	To                string    `json:"to"`
	FromMe            bool      `json:"fromMe"`
	Type              string    `json:"type"`
	Body              string    `json:"body"`
	Timestamp         time.Time `json:"timestamp"`
	Status            string    `json:"status"`
	IsRead            bool      `json:"isRead"`
}

// UnmarshalJSON reads a message in any of the upstream's shapes.
func (m *Message) UnmarshalJSON(b []byte) error {
	var w struct {
		ID                flexString `json:"id"`
		WhatsappMessageID flexString `json:"whatsappMessageId"`
		ChatID            flexString `json:"chatId"`
		From              flexString `json:"from"`
		To                flexString `json:"to"`
		FromMe            flexBool   `json:"fromMe"`
		Type              flexString `json:"type"`
		Body              flexString `json:"body"`
		Content           flexString `json:"content"`
		Timestamp         flexTime   `json:"timestamp"`
		Status            flexString `json:"status"`
		IsRead            flexBool   `json:"isRead"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Message{ID: string(w.ID), WhatsappMessageID: string(w.WhatsappMessageID), ChatID: string(w.ChatID),
		From: string(w.From), To: string(w.To), FromMe: bool(w.FromMe), Type: string(w.Type),
		Body: firstNonEmpty(string(w.Body), string(w.Content)), Timestamp: w.Timestamp.time(),
		Status: string(w.Status), IsRead: bool(w.IsRead)}
	return nil
}

// User is the upstream account the gateway logs in as.
type User struct {
	ID         string `json:"id"`
	Username   string `json:"username"`
	Email      string `json:"email"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	GlobalRole string `json:"globalRole"`
	Role       string `json:"role"`
	IsActive   bool   `json:"isActive"`
}

// UnmarshalJSON reads a user in any of the upstream's shapes.
func (u *User) UnmarshalJSON(b []byte) error {
	var w struct {
		ID         flexString `json:"id"`
		Username   flexString `json:"username"`
		Email      flexString `json:"email"`
		FirstName  flexString `json:"firstName"`
		LastName   flexString `json:"lastName"`
		GlobalRole flexString `json:"globalRole"`
		Role       flexString `json:"role"`
		IsActive   flexBool   `json:"isActive"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*u = User{ID: string(w.ID), Username: string(w.Username), Email: string(w.Email),
		FirstName: string(w.FirstName), LastName: string(w.LastName), GlobalRole: string(w.GlobalRole),
		Role: string(w.Role), IsActive: bool(w.IsActive)}
	return nil
}

// Health is the answer of GET /health.
type Health struct {
	Success     bool      `json:"success"`
	Message     string    `json:"message"`
	Timestamp   time.Time `json:"timestamp"`
	Version     string    `json:"version"`
	Environment string    `json:"environment"`
}

// UnmarshalJSON reads the health answer.
func (h *Health) UnmarshalJSON(b []byte) error {
	var w struct {
		Success     flexBool   `json:"success"`
		Message     flexString `json:"message"`
		Timestamp   flexTime   `json:"timestamp"`
		Version     flexString `json:"version"`
		Environment flexString `json:"environment"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*h = Health{Success: bool(w.Success), Message: string(w.Message), Timestamp: w.Timestamp.time(),
		Version: string(w.Version), Environment: string(w.Environment)}
	return nil
}

// Session statuses, as NormalizeStatus returns them.
const (
	StatusPending      = "pending"
	StatusConnecting   = "connecting"
	StatusConnected    = "connected"
	StatusDisconnected = "disconnected"
	StatusQRCode       = "qr_code"
	StatusError        = "error"
	StatusRateLimited  = "rate_limited"
)

// NormalizeStatus maps an upstream session status, compared case-insensitively and with "-" or
// spaces read as "_", to one of the Status constants. Baileys' own connection words are accepted
// (open -> connected, close -> disconnected, qr -> qr_code). Anything else, empty included, is
// StatusError: a state the gateway cannot interpret is not one it may call working, and callers
// get a closed set of values.
func NormalizeStatus(s string) string {
	switch s { // the common case: already canonical, nothing to allocate
	case StatusPending, StatusConnecting, StatusConnected, StatusDisconnected, StatusQRCode,
		StatusError, StatusRateLimited:
		return s
	}
	k := statusSeparators.Replace(strings.ToLower(strings.TrimSpace(s)))
	switch k {
	case StatusPending, StatusConnecting, StatusConnected, StatusDisconnected, StatusQRCode,
		StatusError, StatusRateLimited:
		return k
	case "open":
		return StatusConnected
	case "close", "closed":
		return StatusDisconnected
	case "qr", "qrcode", "qr_pending":
		return StatusQRCode
	case "ratelimited":
		return StatusRateLimited
	}
	return StatusError
}

// statusSeparators turns the separators seen in status values into underscores.
var statusSeparators = strings.NewReplacer("-", "_", " ", "_")

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func clampInt(v flexInt) int {
	if v < 0 {
		return 0
	}
	if int64(v) > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(v)
}

// flexString accepts a JSON string, a number or a boolean (as its text), an older message id
// object {"_serialized": "..."}, and null; anything else decodes to "".
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*f = ""
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case '{':
		var o struct {
			Serialized string `json:"_serialized"`
		}
		if json.Unmarshal(b, &o) == nil {
			*f = flexString(o.Serialized)
		}
	case '[', 'n':
	default:
		*f = flexString(b)
	}
	return nil
}

// flexInt accepts a JSON number (decimals truncated), a numeric string, and null.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	*f = 0
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	if s == "" || s == "null" {
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*f = flexInt(n)
		return nil
	}
	if x, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(x) && math.Abs(x) < 1<<62 {
		*f = flexInt(x)
	}
	return nil
}

// flexBool accepts true/false, 0/1, "true"/"false"/"1"/"0", and null (false).
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	s := strings.ToLower(strings.Trim(string(bytes.TrimSpace(b)), `"`))
	*f = s == "true" || s == "1"
	return nil
}

// flexTime accepts an RFC 3339 string (with or without fraction or zone), Unix seconds as a
// number or numeric string (milliseconds when the value is too large to be seconds), and null.
type flexTime time.Time

func (f flexTime) time() time.Time { return time.Time(f) }

// unixMillisAbove: a Unix time above this (year 5138 in seconds) is taken as milliseconds.
const unixMillisAbove = 1e11

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	time.RFC1123,
	time.RFC1123Z,
	time.DateOnly,
}

func (f *flexTime) UnmarshalJSON(b []byte) error {
	*f = flexTime{}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return nil
		}
		s = strings.TrimSpace(s)
	}
	if x, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(x) || math.IsInf(x, 0) || x <= 0 || x > 1e15 {
			return nil
		}
		if x > unixMillisAbove {
			*f = flexTime(time.UnixMilli(int64(x)).UTC())
		} else {
			sec, frac := math.Modf(x)
			*f = flexTime(time.Unix(int64(sec), int64(frac*1e9)).UTC())
		}
		return nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			*f = flexTime(t)
			return nil
		}
	}
	return nil
}

// flexDuration is a token lifetime: a duration string ("24h", "7d") kept as is, or a number of
// seconds, turned into "<n>s".
type flexDuration string

func (f *flexDuration) UnmarshalJSON(b []byte) error {
	*f = ""
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexDuration(s)
		return nil
	}
	var n flexInt
	_ = n.UnmarshalJSON(b)
	if n > 0 {
		*f = flexDuration(strconv.FormatInt(int64(n), 10) + "s")
	}
	return nil
}
