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

// TestRenderedListBody: the kept answer body is the one made for the request's own meta, whether
// the meta changes (another age, status, total, or no cache facts) or comes back to an earlier one.
func TestRenderedListBody(t *testing.T) {
	r := &renderedList{data: []byte(`[{"sessionId":"a"}]`)}
	metas := []*CacheMeta{
		{Status: "hit", AgeSeconds: 1}, {Status: "hit", AgeSeconds: 1}, {Status: "hit", AgeSeconds: 2},
		{Status: "stale", AgeSeconds: 2}, nil, nil, {Status: "hit", AgeSeconds: 1},
	}
	for i, m := range metas {
		for _, total := range []int{1, 2} {
			var want struct {
				Data json.RawMessage `json:"data"`
				Meta ListMeta        `json:"meta"`
			}
			got := r.body(total, m)
			if err := json.Unmarshal(got, &want); err != nil {
				t.Fatalf("%d: %s: %v", i, got, err)
			}
			wantMeta := ListMeta{Total: total, Cache: m}
			if string(want.Data) != string(r.data) || want.Meta.Total != wantMeta.Total ||
				(want.Meta.Cache == nil) != (m == nil) || (m != nil && *want.Meta.Cache != *m) {
				t.Errorf("%d: body(%d, %+v) = %s", i, total, m, got)
			}
			if string(got) != string(listAnswer(r.data, total, m)) {
				t.Errorf("%d: body(%d, %+v) = %s, want %s", i, total, m, got, listAnswer(r.data, total, m))
			}
		}
	}
}
