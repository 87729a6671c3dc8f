package jsonbody

import (
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// sendBody is a target with the shapes the routes decode into.
type sendBody struct {
	To      string   `json:"to"`
	Text    string   `json:"text"`
	Tags    []string `json:"tags"`
	Full    bool     `json:"full"`
	Profile struct {
		Name string `json:"name"`
	} `json:"profile"`
}

// refusal returns the 400 problem of err, failing the test when err is something else.
func refusal(t *testing.T, err error) *problem.Error {
	t.Helper()
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Code != problem.CodeInvalidRequest {
		t.Fatalf("error = %v, want a 400 INVALID_REQUEST problem", err)
	}
	return pe
}

func TestCheckRefusesBodiesThatReadTwoWays(t *testing.T) {
	cases := []struct {
		name, body, field string
	}{
		{"duplicate key", `{"to":"a","to":"b"}`, "to"},
		{"case variant", `{"to":"a","TO":"b"}`, "TO"},
		{"mixed case variant", `{"webhookUrl":"a","WebhookURL":"b"}`, "WebhookURL"},
		{"escaped duplicate", `{"to":"a","\u0074o":"b"}`, "to"},
		{"escaped case variant", `{"to":"a","\u0054o":"b"}`, "To"},
		{"kelvin sign folds to k", `{"k":1,"\u212a":2}`, "\u212a"},
		{"long s folds to s", `{"s":1,"\u017f":2}`, "\u017f"},
		{"nested duplicate", `{"profile":{"name":"a","Name":"b"}}`, "profile/Name"},
		{"duplicate inside an array", `{"items":[{"id":1},{"id":2,"ID":3}]}`, "items/1/ID"},
		{"two values", `{"to":"a"} {"to":"b"}`, "body"},
		{"value then garbage", `{"to":"a"} x`, "body"},
		{"two scalars", `1 2`, "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pe := refusal(t, Check([]byte(tc.body)))
			if len(pe.Fields) != 1 || pe.Fields[0].Field != tc.field {
				t.Errorf("fields = %+v, want one naming %q", pe.Fields, tc.field)
			}
			// The decoder of every route refuses it the same way.
			var v sendBody
			refusal(t, Decode([]byte(tc.body), &v))
		})
	}
}

func TestCheckRefusesWhatIsNotJSON(t *testing.T) {
	for name, body := range map[string]string{
		"empty": "", "blank": " \n\t", "truncated": `{"to":"a`, "trailing comma": `{"to":"a",}`,
		"single quotes": `{'to':'a'}`, "invalid UTF-8": "{\"to\":\"\xff\"}", "bare word": `hola`,
		"unquoted name": `{to:"a"}`, "NaN": `{"n":NaN}`, "comment": `{"n":1 /* c */}`,
	} {
		t.Run(name, func(t *testing.T) {
			refusal(t, Check([]byte(body)))
		})
	}
}

func TestCheckAcceptsOrdinaryJSON(t *testing.T) {
	for _, body := range []string{
		`{}`, `[]`, `null`, `"hola"`, `12.5e3`, ` {"to":"a"} `,
		`{"to":"a","text":"b","tags":["x","x"]}`,                // repeated values are fine
		`{"a":{"id":1},"b":{"id":2}}`,                           // the same name in two objects
		`[{"id":1},{"id":1}]`,                                   // and in two array elements
		`{"sessionId":"s1","webhookUrl":"https://x.example/h"}`, // names that share a prefix
		`{"ñ":1,"Ñ́":2}`,                                        // different letters after folding
		`{"deep":[[[[{"x":[1,{"y":null}]}]]]],"Deep2":true}`,
	} {
		if err := Check([]byte(body)); err != nil {
			t.Errorf("Check(%s) = %v, want nil", body, err)
		}
	}
}

func TestDecodeMatchesFieldsExactly(t *testing.T) {
	var ok sendBody
	if err := Decode([]byte(`{"to":"34600111222","text":"hola","tags":["a"],"full":true,"profile":{"name":"n"}}`), &ok); err != nil {
		t.Fatal(err)
	}
	if ok.To != "34600111222" || ok.Text != "hola" || !ok.Full || ok.Profile.Name != "n" || len(ok.Tags) != 1 {
		t.Errorf("decoded %+v", ok)
	}
	// encoding/json would take "TO" for "to"; this decoder does not.
	var std sendBody
	if err := stdjson.Unmarshal([]byte(`{"TO":"x"}`), &std); err != nil || std.To != "x" {
		t.Fatalf("encoding/json no longer folds case (%v, %+v): this test's premise changed", err, std)
	}
	cases := []struct {
		name, body, field, detail string
	}{
		{"case variant of a field", `{"TO":"34600111222","text":"hola"}`, "TO", "unknown field"},
		{"unknown member", `{"to":"a","text":"b","media":{"url":"x"}}`, "media", "unknown field"},
		{"unknown nested member", `{"profile":{"nick":"x"}}`, "profile/nick", "unknown field"},
		{"wrong type", `{"to":34600111222}`, "to", "must be a JSON string"},
		{"wrong type in an array", `{"tags":[1]}`, "tags/0", "must be a JSON string"},
		{"bool as string", `{"full":"true"}`, "full", "must be a JSON boolean"},
		{"not an object", `["a","b"]`, "", ""},
		{"a string", `"hola"`, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v sendBody
			pe := refusal(t, Decode([]byte(tc.body), &v))
			if tc.field == "" {
				return
			}
			if len(pe.Fields) != 1 || pe.Fields[0].Field != tc.field || !strings.Contains(pe.Fields[0].Message, tc.detail) {
				t.Errorf("fields = %+v, want %q: %q", pe.Fields, tc.field, tc.detail)
			}
		})
	}
}

func TestRefusalsDoNotRepeatValues(t *testing.T) {
	secret := "s3cr3t-value-0123456789"
	for _, body := range []string{
		`{"to":"` + secret + `","to":"x"}`,
		`{"to":["` + secret + `"]}`,
		`{"to":"` + secret + `","extra":"` + secret + `"}`,
		`{"to":"` + secret + `"`,
	} {
		var v sendBody
		pe := refusal(t, Decode([]byte(body), &v))
		if strings.Contains(pe.Detail, secret) || strings.Contains(fmtFields(pe), secret) {
			t.Errorf("refusal of %s repeats a value: %+v", body, pe)
		}
	}
	// A long member name is cut before it is named.
	long := strings.Repeat("n", 500)
	pe := refusal(t, Check([]byte(`{"`+long+`":1,"`+long+`":2}`)))
	if len(pe.Fields[0].Field) > maxEchoedName+3 {
		t.Errorf("a %d-byte name was echoed", len(pe.Fields[0].Field))
	}
}

func fmtFields(pe *problem.Error) string {
	var b strings.Builder
	for _, f := range pe.Fields {
		b.WriteString(f.Field + " " + f.Message + ";")
	}
	return b.String()
}

// FuzzDecode checks the decoder against encoding/json on arbitrary bodies: no panic; a body
// Check accepts is valid JSON with no member named twice in any case; a plain body that is valid
// JSON with no such names is accepted; and what Decode accepts, encoding/json (with unknown
// fields refused) reads the same way. The seeds run as a normal test.
// Run: go test -run '^$' -fuzz FuzzDecode ./internal/jsonbody/
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"to":"34600111222","text":"hola"}`, `{"to":"a","to":"b"}`, `{"to":"a","TO":"b"}`,
		`{"profile":{"name":"a","Name":"b"}}`, `{"tags":["a",1]}`, `{"k":1,"\u212a":2}`,
		`{"full":true,"tags":[],"profile":{}}`, `[{"a":1},{"a":1}]`, `{} {}`, `null`, `"x"`,
		`{"to":"\ud800"}`, "{\"to\":\"\xff\"}", `{"a":[[[[[[[[[[]]]]]]]]]]}`, `{"TEXT":"x","text":"y"}`,
		`{"webhookUrl":"https://evil.example","WEBHOOKURL":"x"}`, `{"to":"a"`, ``, `   `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkErr := Check(b)
		var v sendBody
		decodeErr := Decode(b, &v)
		for _, err := range []error{checkErr, decodeErr} {
			var pe *problem.Error
			if err != nil && (!errors.As(err, &pe) || pe.Status != http.StatusBadRequest) {
				t.Fatalf("error %v is not a 400 problem", err)
			}
		}
		dup, single := foldDuplicates(b)
		if checkErr == nil {
			if !stdjson.Valid(b) || dup || !single {
				t.Fatalf("Check accepted %q (valid %v, duplicate names %v, one value %v)", b, stdjson.Valid(b), dup, single)
			}
		} else if stdjson.Valid(b) && single && !dup && utf8Plain(b) {
			t.Fatalf("Check refused %q: %v", b, checkErr)
		}
		if decodeErr != nil {
			return
		}
		var std sendBody
		dec := stdjson.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("Decode accepted %q, encoding/json refuses it: %v", b, err)
		}
		if fmt.Sprintf("%#v", std) != fmt.Sprintf("%#v", v) {
			t.Fatalf("%q decodes to %#v here and %#v with encoding/json", b, v, std)
		}
	})
}

// foldDuplicates walks b with encoding/json's tokenizer: dup says whether some object names two
// members that are equal under Unicode case folding, single whether b is exactly one value.
func foldDuplicates(b []byte) (dup, single bool) {
	dec := stdjson.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber() // a valid number too large for float64 is one value, not an error
	type frame struct {
		object bool
		names  []string
		name   bool // the next string token is a name
	}
	var stack []*frame
	values := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return dup, values == 1 && errors.Is(err, io.EOF)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tv := tok.(type) {
		case stdjson.Delim:
			switch tv {
			case '{', '[':
				stack = append(stack, &frame{object: tv == '{', name: tv == '{'})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.name {
				for _, n := range top.names {
					if strings.EqualFold(n, tv) {
						dup = true
					}
				}
				top.names = append(top.names, tv)
				top.name = false
				continue
			}
		}
		// A value ended.
		if len(stack) == 0 {
			values++
		} else if p := stack[len(stack)-1]; p.object {
			p.name = true
		}
	}
}

// utf8Plain reports whether b is valid UTF-8 without escapes, where the two decoders are known to
// differ (encoding/json accepts lone surrogate escapes and invalid UTF-8).
func utf8Plain(b []byte) bool {
	return utf8.Valid(b) && !strings.Contains(string(b), `\`)
}
