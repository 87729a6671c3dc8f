package handlers

import (
	"encoding/json"
	"testing"
)

// TestAppendListMetaIsJSON: the hand-written meta of the session list is byte for byte what
// encoding/json writes for the same ListMeta, with and without the cache facts, for every cache
// status.
func TestAppendListMetaIsJSON(t *testing.T) {
	cases := []ListMeta{{Total: 0}, {Total: 3}, {Total: 1 << 40}}
	for _, status := range []string{"hit", "miss", "stale"} {
		for _, age := range []int64{0, 7, 86400} {
			cases = append(cases, ListMeta{Total: 12, Cache: &CacheMeta{Status: status, AgeSeconds: age}})
		}
	}
	for _, m := range cases {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendListMeta(nil, m.Total, m.Cache); string(got) != string(want) {
			t.Errorf("appendListMeta = %s, want %s", got, want)
		}
	}
}
