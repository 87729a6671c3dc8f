package frappe_test

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/webhooks"
)

// kitSchema is what the kit's Python knows of the gateway's schemas (mapping.py).
type kitSchema struct {
	Items    map[string]map[string]string `json:"items"`
	Events   []string                     `json:"events"`
	Statuses []string                     `json:"statuses"`
}

func readKitSchema(t *testing.T) kitSchema {
	t.Helper()
	script := `
import json, sys
sys.path.insert(0, "inboxhub_gateway")
from inboxhub_gateway import mapping
names = {str: "string", bool: "bool", int: "int", dict: "object"}
print(json.dumps({
    "items": {k: {f: names[t[0]] for f, t in v.items()} for k, v in mapping.ITEM_FIELDS.items()},
    "events": sorted(mapping.LOG_EVENT_TYPES),
    "statuses": sorted(mapping.SESSION_STATUS),
}))`
	out, err := exec.Command(python3(t), "-B", "-c", script).Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var k kitSchema
	if err := json.Unmarshal(out, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// jsonFields lists a struct's JSON members and their JSON types.
func jsonFields(v any) map[string]string {
	out := map[string]string{}
	typ := reflect.TypeOf(v)
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeOf(time.Time{}), ft.Kind() == reflect.String:
			out[name] = "string"
		case ft.Kind() == reflect.Bool:
			out[name] = "bool"
		case ft.Kind() == reflect.Int:
			out[name] = "int"
		case ft.Kind() == reflect.Struct:
			out[name] = "object"
		default:
			out[name] = ft.Kind().String()
		}
	}
	return out
}

// TestKitReadsTheGatewaysSchema: the kit checks every item it receives against the gateway's
// item and event schemas; those checks must be exactly the schemas the gateway sends, and the kit
// must map every event type and session status the gateway forwards (rate_limited is a state of
// the gateway's quota, not of the session, and changes nothing in the app).
func TestKitReadsTheGatewaysSchema(t *testing.T) {
	t.Parallel()
	k := readKitSchema(t)
	for name, v := range map[string]any{
		"contacts": crm.Contact{}, "chats": crm.Chat{}, "messages": crm.Message{},
		"lastMessage": crm.ChatSnippet{}, "media": crm.Media{},
		"session": webhooks.SessionChange{}, "ack": webhooks.Ack{},
	} {
		if got, want := k.Items[name], jsonFields(v); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the kit checks %v, the gateway sends %v", name, got, want)
		}
	}
	types := slices.Clone(webhooks.Types)
	slices.Sort(types)
	if !slices.Equal(k.Events, types) {
		t.Errorf("the kit maps the events %v, the gateway forwards %v", k.Events, types)
	}
	statuses := []string{webhooks.StatusConnected, webhooks.StatusConnecting, webhooks.StatusQRPending,
		webhooks.StatusDisconnected, webhooks.StatusError}
	slices.Sort(statuses)
	if !slices.Equal(k.Statuses, statuses) {
		t.Errorf("the kit maps the session statuses %v, want %v", k.Statuses, statuses)
	}
}
