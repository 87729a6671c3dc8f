package upstream

import (
	"encoding/json"
	"testing"
	"time"
)

func TestMessageTimestampAndBody(t *testing.T) {
	want := time.Date(2023, 11, 7, 4, 45, 4, 0, time.UTC)
	tests := []struct {
		json     string
		wantTime time.Time
		wantBody string
	}{
		{`{"timestamp": 1699332304, "body": "a"}`, want, "a"},
		{`{"timestamp": "1699332304", "content": "b"}`, want, "b"},
		{`{"timestamp": 1699332304000}`, want, ""},
		{`{"timestamp": 1699332304.5}`, want.Add(500 * time.Millisecond), ""},
		{`{"timestamp": "2023-11-07T04:45:04.000Z"}`, want, ""},
		{`{"timestamp": "2023-11-07T05:45:04+01:00"}`, want, ""},
		{`{"timestamp": "2023-11-07 04:45:04"}`, want, ""},
		{`{"timestamp": null, "body": "x", "content": "y"}`, time.Time{}, "x"},
		{`{"timestamp": "yesterday"}`, time.Time{}, ""},
		{`{"timestamp": {"seconds": 1}}`, time.Time{}, ""},
		{`{"timestamp": -5}`, time.Time{}, ""},
		{`{"body": {"caption": "media"}, "content": "text"}`, time.Time{}, "text"},
	}
	for _, tt := range tests {
		var m Message
		if err := json.Unmarshal([]byte(tt.json), &m); err != nil {
			t.Errorf("%s: %v", tt.json, err)
			continue
		}
		if !m.Timestamp.Equal(tt.wantTime) || m.Body != tt.wantBody {
			t.Errorf("%s: time %v body %q, want %v %q", tt.json, m.Timestamp, m.Body, tt.wantTime, tt.wantBody)
		}
	}
}

func TestTolerantFields(t *testing.T) {
	var m Message
	if err := json.Unmarshal([]byte(`{"id": {"_serialized": "false_346@c.us_3EB0"}, "fromMe": "true", "isRead": 1, "status": 2}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.ID != "false_346@c.us_3EB0" || !m.FromMe || !m.IsRead || m.Status != "2" {
		t.Errorf("message %+v", m)
	}
	var s Session
	if err := json.Unmarshal([]byte(`{"id": "93", "sessionId": "abc_123", "userId": 7, "qrCode": null, "profile": null}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.ID != 93 || s.UserID != "7" || s.QRCode != "" {
		t.Errorf("session %+v", s)
	}
	var ch Chat
	if err := json.Unmarshal([]byte(`{"chatId": "1@g.us", "lastMessage": {"content": "hi", "timestamp": 1699332304}, "messageCount": "12"}`), &ch); err != nil {
		t.Fatal(err)
	}
	if ch.LastMessage == nil || ch.LastMessage.Body != "hi" || ch.MessageCount != 12 {
		t.Errorf("chat %+v", ch)
	}
}

func TestNormalizeStatus(t *testing.T) {
	tests := map[string]string{
		"connected": StatusConnected, "CONNECTED": StatusConnected, " Connected ": StatusConnected,
		"Qr_Code": StatusQRCode, "qr-code": StatusQRCode, "QR": StatusQRCode,
		"pending": StatusPending, "connecting": StatusConnecting, "disconnected": StatusDisconnected,
		"error": StatusError, "rate_limited": StatusRateLimited, "Rate-Limited": StatusRateLimited,
		"open": StatusConnected, "close": StatusDisconnected,
		"": StatusError, "banana": StatusError,
	}
	for in, want := range tests {
		if got := NormalizeStatus(in); got != want {
			t.Errorf("NormalizeStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecodeList feeds arbitrary data to the list decoding: no panic, and a page it accepts has
// sane numbers.
func FuzzDecodeList(f *testing.F) {
	f.Add([]byte(`{"contacts":[{"id":"1@s.whatsapp.net"}],"pagination":{"total":1,"page":1,"limit":50,"pages":1}}`))
	f.Add([]byte(`{"messages":[{"timestamp":"x","body":1,"id":{"_serialized":"a"}}],"pagination":{"total":"9e99"}}`))
	f.Add([]byte(`[{"id":1}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"contacts":null,"pagination":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := decodeList[Contact](data, "contacts", 1, 50); err == nil {
			if p.Total < 0 || p.Pages < 0 || p.Page < 1 || p.Items == nil {
				t.Fatalf("page %+v", p)
			}
		}
		_, _ = decodeList[Message](data, "messages", 1, 50)
		_, _ = decodeList[Chat](data, "chats", 1, 50)
		_, _ = decodeList[Session](data, "sessions", 1, 50)
	})
}
