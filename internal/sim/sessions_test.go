package sim

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

type sessionData struct {
	ID            int     `json:"id"`
	SessionID     string  `json:"sessionId"`
	SessionName   string  `json:"sessionName"`
	UserID        int     `json:"userId"`
	PhoneNumber   *string `json:"phoneNumber"`
	PhoneNumberID *string `json:"phoneNumberId"`
	Status        string  `json:"status"`
	IsConnected   bool    `json:"isConnected"`
	HasQR         bool    `json:"hasQR"`
	QRCode        *string `json:"qrCode"`
}

type qrData struct {
	QRCode    string `json:"qrCode"`
	SessionID string `json:"sessionId"`
	ExpiresAt string `json:"expiresAt"`
	Status    string `json:"status"`
}

func TestSessionListPaginatesOverEveryPage(t *testing.T) {
	o := testOptions()
	o.Sessions = 7
	_, c := startSim(t, o)
	seen := map[string]bool{}
	for page := 1; ; page++ {
		var d struct {
			Sessions   []sessionData `json:"sessions"`
			Pagination pageInfo      `json:"pagination"`
		}
		c.get(fmt.Sprintf("/api/sessions?page=%d&limit=3", page)).must(t, http.StatusOK, &d)
		if d.Pagination != (pageInfo{Total: 7, Page: page, Limit: 3, Pages: 3}) {
			t.Fatalf("page %d: pagination %+v", page, d.Pagination)
		}
		for _, ss := range d.Sessions {
			seen[ss.SessionID] = true
		}
		if len(d.Sessions) == 0 || page == d.Pagination.Pages {
			break
		}
	}
	if len(seen) != 7 {
		t.Errorf("saw %d distinct sessions over all pages, want 7", len(seen))
	}
}

func TestSessionListStatusFilterIgnoresCase(t *testing.T) {
	_, c := startSim(t, testOptions())
	var d struct {
		Sessions []sessionData `json:"sessions"`
	}
	c.get("/api/sessions?status=qr_code").must(t, http.StatusOK, &d)
	if len(d.Sessions) != 1 || d.Sessions[0].SessionID != "sales_team" || d.Sessions[0].Status != "Qr_Code" {
		t.Fatalf("status filter: %+v", d.Sessions)
	}
	if !d.Sessions[0].HasQR || d.Sessions[0].QRCode == nil {
		t.Errorf("the Qr_Code session shows no QR: %+v", d.Sessions[0])
	}
}

func TestSessionIdentifiers(t *testing.T) {
	_, c := startSim(t, testOptions())
	tests := []struct {
		name   string
		path   string
		status int
		code   string
	}{
		{"numeric id", "/api/sessions/91", http.StatusOK, ""},
		{"sessionId", "/api/sessions/demo_session", http.StatusOK, ""},
		{"status by numeric id", "/api/sessions/91/status", http.StatusOK, ""},
		{"status by sessionId", "/api/sessions/demo_session/status", http.StatusOK, ""},
		{"unknown numeric id", "/api/sessions/1", http.StatusNotFound, codeSessionNotFound},
		{"unknown sessionId", "/api/sessions/nope_session", http.StatusNotFound, codeSessionNotFound},
		{"contacts by sessionId", "/api/contacts/demo_session", http.StatusOK, ""},
		{"contacts by numeric id", "/api/contacts/91", http.StatusNotFound, codeSessionNotFound},
		{"chats of a disconnected session", "/api/messages/support_desk/chats", http.StatusBadRequest, codeSessionNotConn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.get(tt.path)
			if tt.code != "" {
				r.mustError(t, tt.status, tt.code)
				return
			}
			r.must(t, tt.status, nil)
		})
	}
	var byID, bySID struct {
		Session sessionData `json:"session"`
	}
	c.get("/api/sessions/91").must(t, http.StatusOK, &byID)
	c.get("/api/sessions/demo_session").must(t, http.StatusOK, &bySID)
	if !reflect.DeepEqual(byID.Session, bySID.Session) || byID.Session.SessionID != "demo_session" || !byID.Session.IsConnected {
		t.Errorf("numeric and string ids disagree: %+v vs %+v", byID.Session, bySID.Session)
	}
	if p := byID.Session.PhoneNumberID; p == nil || !strings.HasSuffix(*p, "@s.whatsapp.net") || !strings.Contains(*p, ":") {
		t.Errorf("phoneNumberId %v, want a device JID", p)
	}
}

func TestNotConnectedMessage(t *testing.T) {
	_, c := startSim(t, testOptions())
	r := c.get("/api/contacts/support_desk")
	r.mustError(t, http.StatusBadRequest, codeSessionNotConn)
	if r.env.Error != "La sesión debe estar conectada" {
		t.Errorf("error text %q", r.env.Error)
	}
}

// decodeQR checks that a data URL holds a PNG.
func decodeQR(t *testing.T, dataURL string) {
	t.Helper()
	b64, ok := strings.CutPrefix(dataURL, "data:image/png;base64,")
	if !ok {
		t.Fatalf("qrCode is not a PNG data URL: %.40q", dataURL)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("qrCode base64: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("qrCode PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("QR image is %v, too small to scan", b)
	}
}

func TestQRFlow(t *testing.T) {
	clock := newTestClock()
	o := testOptions()
	o.Clock, o.QRDelay = clock.Now, 2*time.Second
	_, c := startSim(t, o)
	const id = "93" // support_desk, disconnected

	var conn map[string]string
	c.do(http.MethodPost, "/api/sessions/"+id+"/connect", map[string]any{}).must(t, http.StatusOK, &conn)
	if conn["status"] != "connecting" || conn["sessionId"] != "support_desk" {
		t.Fatalf("connect answered %v", conn)
	}
	c.get("/api/sessions/"+id+"/qr").mustError(t, http.StatusNotFound, codeQRNotReady)

	clock.Advance(2 * time.Second)
	var qr qrData
	c.get("/api/sessions/"+id+"/qr").must(t, http.StatusOK, &qr)
	decodeQR(t, qr.QRCode)
	exp, err := time.Parse(time.RFC3339, qr.ExpiresAt)
	if err != nil || exp.Sub(clock.Now()) != 60*time.Second {
		t.Errorf("expiresAt %q, want 60 s from now (%v)", qr.ExpiresAt, err)
	}
	var st sessionData
	c.get("/api/sessions/"+id+"/status").must(t, http.StatusOK, &st)
	if !strings.EqualFold(st.Status, "qr_code") || !st.HasQR || st.IsConnected {
		t.Errorf("status while the QR shows: %+v", st)
	}
	c.get("/api/contacts/support_desk").mustError(t, http.StatusBadRequest, codeSessionNotConn)

	clock.Advance(61 * time.Second)
	var next qrData
	c.get("/api/sessions/"+id+"/qr").must(t, http.StatusOK, &next)
	if next.QRCode == qr.QRCode || next.ExpiresAt == qr.ExpiresAt {
		t.Error("the QR was not regenerated after it expired")
	}

	c.do(http.MethodPost, "/_sim/sessions/support_desk/scan", nil).must(t, http.StatusOK, nil)
	c.get("/api/sessions/"+id+"/status").must(t, http.StatusOK, &st)
	if st.Status != "connected" || !st.IsConnected || st.HasQR || st.PhoneNumber == nil {
		t.Errorf("status after the scan: %+v", st)
	}
	c.get("/api/contacts/support_desk").must(t, http.StatusOK, nil)
	c.get("/api/sessions/"+id+"/qr").mustError(t, http.StatusNotFound, codeQRNotAvailable)

	c.do(http.MethodPost, "/api/sessions/"+id+"/connect", nil).must(t, http.StatusOK, &conn)
	if conn["status"] != "connected" {
		t.Errorf("connect on a connected session answered %v", conn)
	}
	c.do(http.MethodPost, "/api/sessions/"+id+"/disconnect", nil).must(t, http.StatusOK, &conn)
	if conn["status"] != "disconnected" {
		t.Errorf("disconnect answered %v", conn)
	}
	c.get("/api/contacts/support_desk").mustError(t, http.StatusBadRequest, codeSessionNotConn)
}

func TestQRAppearsWithoutPolling(t *testing.T) {
	s, c := startSim(t, testOptions()) // real clock, QRDelay 50 ms
	c.do(http.MethodPost, "/api/sessions/support_desk/connect", nil).must(t, http.StatusOK, nil)
	wait.Until(t, 2*time.Second, "the QR to be scannable", func() bool { return s.ScanQR("support_desk") == nil })
	if err := s.ScanQR("support_desk"); err == nil {
		t.Error("a connected session accepted a second scan")
	}
}

func TestCreateAndDeleteSession(t *testing.T) {
	_, c := startSim(t, testOptions())
	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"new", map[string]any{"sessionId": "crm_test-1", "sessionName": "CRM test"}, http.StatusCreated, ""},
		{"exists", map[string]any{"sessionId": "crm_test-1", "sessionName": "again"}, http.StatusConflict, codeSessionExists},
		{"bad sessionId", map[string]any{"sessionId": "no spaces!", "sessionName": "x"}, http.StatusBadRequest, codeValidation},
		{"short sessionId", map[string]any{"sessionId": "ab", "sessionName": "x"}, http.StatusBadRequest, codeValidation},
		{"no name", map[string]any{"sessionId": "abc"}, http.StatusBadRequest, codeValidation},
		{"short secret", map[string]any{"sessionId": "abc", "sessionName": "x", "webhookSecret": "short"}, http.StatusBadRequest, codeValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.do(http.MethodPost, "/api/sessions", tt.body)
			if tt.code != "" {
				r.mustError(t, tt.status, tt.code)
				return
			}
			var d sessionData
			r.must(t, tt.status, &d)
			if d.ID == 0 || d.SessionID != "crm_test-1" || d.Status != "disconnected" {
				t.Errorf("created %+v", d)
			}
		})
	}
	c.get("/api/sessions/crm_test-1").must(t, http.StatusOK, nil)
	c.do(http.MethodDelete, "/api/sessions/crm_test-1", nil).must(t, http.StatusOK, nil)
	c.get("/api/sessions/crm_test-1").mustError(t, http.StatusNotFound, codeSessionNotFound)
}

func TestSetSessionStatus(t *testing.T) {
	s, c := startSim(t, testOptions())
	if err := s.SetSessionStatus("demo_session", "Disconnected"); err != nil {
		t.Fatal(err)
	}
	c.get("/api/contacts/demo_session").mustError(t, http.StatusBadRequest, codeSessionNotConn)
	if err := s.SetSessionStatus("91", "connected"); err != nil {
		t.Fatal(err)
	}
	c.get("/api/contacts/demo_session").must(t, http.StatusOK, nil)
	if err := s.SetSessionStatus("demo_session", "sleeping"); err == nil {
		t.Error("an unknown status was accepted")
	}
	if err := s.SetSessionStatus("nobody", "connected"); err != ErrUnknownSession {
		t.Errorf("unknown session: %v", err)
	}
}
