package jid_test

import (
	"strings"
	"testing"

	"github.com/inboxhub-gateway/gateway/internal/jid"
)

// TestNormalize is the table of the stable form, kind and phone of WhatsApp ids, hostile ones
// included: no server, empty parts, dots, Unicode digits, control and direction characters, very
// long ids.
func TestNormalize(t *testing.T) {
	long := strings.Repeat("9", 100_000)
	for _, tc := range []struct{ in, id, kind, phone string }{
		{"34657032985@s.whatsapp.net", "34657032985@s.whatsapp.net", jid.KindPhone, "34657032985"},
		{"34657032985:71@s.whatsapp.net", "34657032985@s.whatsapp.net", jid.KindPhone, "34657032985"},
		{" 5215512345678@c.us ", "5215512345678@s.whatsapp.net", jid.KindPhone, "5215512345678"},
		{"34657032985@S.WhatsApp.NET", "34657032985@s.whatsapp.net", jid.KindPhone, "34657032985"},
		{"34657032985:@s.whatsapp.net", "34657032985@s.whatsapp.net", jid.KindPhone, "34657032985"},
		{"123456789012345@lid", "123456789012345@lid", jid.KindLID, ""},
		{"123456789012345:3@LID", "123456789012345@lid", jid.KindLID, ""},
		{"120363012345678901@g.us", "120363012345678901@g.us", jid.KindGroup, ""},
		{"34600000000-1600000000@g.us", "34600000000-1600000000@g.us", jid.KindGroup, ""},
		{"1203:2@g.us", "1203:2@g.us", jid.KindGroup, ""}, // a group has no device part to drop
		{"status@broadcast", "status@broadcast", jid.KindOther, ""},
		{"12:3@newsletter", "12:3@newsletter", jid.KindOther, ""},
		{"abc@s.whatsapp.net", "abc@s.whatsapp.net", jid.KindOther, ""},
		{"34657032985", "34657032985", jid.KindOther, ""},

		{"", "", jid.KindOther, ""},
		{"   ", "", jid.KindOther, ""},
		{"@", "@", jid.KindOther, ""},
		{"@s.whatsapp.net", "@s.whatsapp.net", jid.KindOther, ""},
		{":71@s.whatsapp.net", "@s.whatsapp.net", jid.KindOther, ""},
		{"34657032985@", "34657032985@", jid.KindOther, ""},
		{"..", "..", jid.KindOther, ""},
		{"..@s.whatsapp.net", "..@s.whatsapp.net", jid.KindOther, ""},
		{"../../etc@lid", "../../etc@lid", jid.KindLID, ""},
		{"1@2@s.whatsapp.net", "1@2@s.whatsapp.net", jid.KindOther, ""}, // the first @ splits
		{"３４６５７０３２９８５@s.whatsapp.net", "３４６５７０３２９８５@s.whatsapp.net", jid.KindOther, ""},
		{"٣٤٦٥٧٠٣٢٩٨٥@c.us", "٣٤٦٥٧٠٣٢٩٨٥@s.whatsapp.net", jid.KindOther, ""},
		{"34657032985\x00@s.whatsapp.net", "34657032985\x00@s.whatsapp.net", jid.KindOther, ""},
		{"34657032985@s.whatsapp.net\u202e", "34657032985@s.whatsapp.net\u202e", jid.KindOther, ""},
		{"+34657032985@s.whatsapp.net", "+34657032985@s.whatsapp.net", jid.KindOther, ""},
		{long + "@s.whatsapp.net", long + "@s.whatsapp.net", jid.KindPhone, long},
		{long, long, jid.KindOther, ""},
	} {
		id, kind, phone := jid.Normalize(tc.in)
		if id != tc.id || kind != tc.kind || phone != tc.phone {
			t.Errorf("Normalize(%.40q) = %.40q %q %.40q, want %.40q %q %.40q", tc.in, id, kind, phone, tc.id, tc.kind, tc.phone)
		}
		if p := jid.Phone(tc.in); p != tc.phone {
			t.Errorf("Phone(%.40q) = %.40q, want %.40q", tc.in, p, tc.phone)
		}
		if again, againKind, _ := jid.Normalize(id); again != id || againKind != kind {
			t.Errorf("Normalize(%.40q) again = %.40q %q: not stable", id, again, againKind)
		}
	}
}

// TestParse: the parts, the device (even an empty one) only for phone and @lid ids.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in        string
		user, dev string
		server    string
		hasDevice bool
		ok        bool
	}{
		{"34657032985:71@c.us", "34657032985", "71", "c.us", true, true},
		{"12345:@LID", "12345", "", "lid", true, true},
		{"12345@lid", "12345", "", "lid", false, true},
		{"1:2@g.us", "1:2", "", "g.us", false, true},
		{" no-server ", "no-server", "", "", false, false},
		{"", "", "", "", false, false},
	} {
		j, ok := jid.Parse(tc.in)
		if ok != tc.ok || j.User != tc.user || j.Device != tc.dev || j.Server != tc.server || j.HasDevice() != tc.hasDevice {
			t.Errorf("Parse(%q) = %+v %v (device %v), want %q %q %q %v (device %v)", tc.in, j, ok, j.HasDevice(),
				tc.user, tc.dev, tc.server, tc.ok, tc.hasDevice)
		}
	}
}

// TestDigits: ASCII digits only, within the bounds.
func TestDigits(t *testing.T) {
	for _, tc := range []struct {
		s      string
		lo, hi int
		want   bool
	}{
		{"12345", 5, 20, true},
		{"1234", 5, 20, false},
		{strings.Repeat("1", 21), 5, 20, false},
		{"", 0, 3, true},
		{"", 1, 3, false},
		{"12a45", 1, 9, false},
		{"１２３", 1, 9, false},
		{"٣٤٦", 1, 9, false},
		{"-12", 1, 9, false},
	} {
		if got := jid.Digits(tc.s, tc.lo, tc.hi); got != tc.want {
			t.Errorf("Digits(%q, %d, %d) = %v, want %v", tc.s, tc.lo, tc.hi, got, tc.want)
		}
	}
}

// FuzzNormalize: never a panic, and the stable form is stable.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"34657032985:7@c.us", "1-2@g.us", "1:@lid", "@", "", "\x00@lid", "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		id, kind, phone := jid.Normalize(in)
		if again, againKind, againPhone := jid.Normalize(id); again != id || againKind != kind || againPhone != phone {
			t.Fatalf("Normalize(%q) = %q %q %q, again %q %q %q", in, id, kind, phone, again, againKind, againPhone)
		}
		if phone != "" && (kind != jid.KindPhone || !jid.Digits(phone, 1, len(phone))) {
			t.Fatalf("Normalize(%q): phone %q of kind %q", in, phone, kind)
		}
	})
}
