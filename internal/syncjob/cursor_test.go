package syncjob

import (
	"errors"
	"testing"
)

func TestCursor(t *testing.T) {
	t.Parallel()
	job := "0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11"
	c := encodeCursor(job, ResourceChats, 1200)
	if n, err := decodeCursor(job, ResourceChats, c); err != nil || n != 1200 {
		t.Fatalf("round trip: %d %v", n, err)
	}
	for _, bad := range []struct{ job, res, cursor string }{
		{job, ResourceContacts, c},                                 // another resource
		{"0193a5e4-7c1e-7a51-9d1e-3f0c2b7e0000", ResourceChats, c}, // another job
		{job, ResourceChats, "not base64!"},
		{job, ResourceChats, encodeCursor(job, ResourceChats, 1) + "x"},
	} {
		if _, err := decodeCursor(bad.job, bad.res, bad.cursor); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("decodeCursor(%q, %q, %q) = %v", bad.job, bad.res, bad.cursor, err)
		}
	}
}

// FuzzDecodeCursor: a cursor from a caller never panics and never gives a negative index.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor("job-1", ResourceMessages, 5))
	f.Add("")
	f.Add("aTEubWVzc2FnZXMuLTEuam9iMQ")
	f.Fuzz(func(t *testing.T, cursor string) {
		n, err := decodeCursor("job-1", ResourceMessages, cursor)
		if err == nil && n < 0 {
			t.Fatalf("negative index %d", n)
		}
	})
}

func TestRequestNormalize(t *testing.T) {
	t.Parallel()
	r, err := Request{Resources: []string{"messages", "contacts", "messages"}}.normalize()
	if err != nil || len(r.Resources) != 2 || r.Resources[0] != "contacts" || r.Trigger != TriggerAPI {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := (Request{Resources: []string{"groups"}}).normalize(); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("unknown resource: %v", err)
	}
}
