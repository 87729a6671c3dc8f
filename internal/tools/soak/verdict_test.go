package main

import (
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// Two windows: replica 1 killed at 60 s (back at 61 s, so the window runs to 81 s), a failover at
// 90 s (the new master at 93 s, window to 113 s).
var testWindows = []window{
	{kind: windowKill, replica: 1, start: at(60), end: at(81)},
	{kind: windowFailover, replica: -1, start: at(90), end: at(113)},
}

func TestPhaseOf(t *testing.T) {
	for _, c := range []struct {
		start float64
		dur   time.Duration
		want  string
	}{
		{10, time.Millisecond, phaseSteady},
		{59.5, 200 * time.Millisecond, phaseSteady},
		{59.5, time.Second, phaseKill}, // in flight when the replica died
		{70, time.Millisecond, phaseKill},
		{81.5, time.Millisecond, phaseSteady},
		{89, 2 * time.Second, phaseFailover},
		{100, time.Millisecond, phaseFailover},
		{200, time.Millisecond, phaseSteady},
	} {
		if got, _ := phaseOf(at(c.start), c.dur, testWindows); got != c.want {
			t.Errorf("phaseOf(+%gs, %s) = %q, want %q", c.start, c.dur, got, c.want)
		}
	}
	// A failover window wins over a kill window it overlaps.
	both := []window{{kind: windowKill, replica: 0, start: at(0), end: at(30)}, {kind: windowFailover, start: at(10), end: at(20)}}
	if got, _ := phaseOf(at(15), 0, both); got != phaseFailover {
		t.Errorf("overlapping windows: %q, want %q", got, phaseFailover)
	}
}

func TestClassify(t *testing.T) {
	kill, failover := &testWindows[0], &testWindows[1]
	for _, c := range []struct {
		name  string
		s     sample
		phase string
		w     *window
		want  bool
	}{
		{"no answer from the killed replica", sample{kind: kindCached, replica: 1}, phaseKill, kill, true},
		{"no answer from another replica around a kill", sample{kind: kindCached, replica: 0}, phaseKill, kill, false},
		{"no answer in steady state", sample{kind: kindCached, replica: 1}, phaseSteady, nil, false},
		{"503 around a failover", sample{kind: kindSend, status: http.StatusServiceUnavailable, code: "UPSTREAM_UNAVAILABLE"}, phaseFailover, failover, true},
		{"503 in steady state", sample{kind: kindSend, status: http.StatusServiceUnavailable}, phaseSteady, nil, false},
		{"503 around a kill", sample{kind: kindCached, status: http.StatusServiceUnavailable}, phaseKill, kill, false},
		{"409 to a send around a kill", sample{kind: kindSend, status: http.StatusConflict}, phaseKill, kill, true},
		{"409 to a send in steady state", sample{kind: kindSend, status: http.StatusConflict}, phaseSteady, nil, false},
		{"409 to a sync around a kill", sample{kind: kindSync, status: http.StatusConflict}, phaseKill, kill, false},
		{"500 around a failover", sample{kind: kindSync, status: http.StatusInternalServerError}, phaseFailover, failover, false},
		{"429 around a failover", sample{kind: kindPassthrough, status: http.StatusTooManyRequests}, phaseFailover, failover, false},
	} {
		if got, why := classify(c.s, c.phase, c.w); got != c.want || why == "" {
			t.Errorf("%s: expected=%v (%q), want %v", c.name, got, why, c.want)
		}
	}
}

func TestRequestFigures(t *testing.T) {
	samples := []sample{
		{at: at(10), dur: 10 * time.Millisecond, kind: kindCached, status: 200},
		{at: at(11), dur: 30 * time.Millisecond, kind: kindCached, status: 200},
		{at: at(12), dur: 20 * time.Millisecond, kind: kindCached, status: 500, code: "INTERNAL"},
		{at: at(70), dur: time.Millisecond, kind: kindWebhook, replica: 1, status: 0, code: "connection reset"},
		{at: at(95), dur: time.Millisecond, kind: kindSend, status: 503, code: "UPSTREAM_UNAVAILABLE"},
	}
	rows, expected, unexpected := requestFigures(samples, testWindows)
	byName := map[string]phaseRow{}
	for _, r := range rows {
		byName[r.phase+"/"+r.kind] = r
	}
	steady := byName[phaseSteady+"/"]
	if steady.requests != 3 || steady.non2xx != 1 || steady.unexpected != 1 || steady.expected != 0 {
		t.Errorf("steady row %+v", steady)
	}
	if steady.p99 != 30*time.Millisecond || steady.p50 != 20*time.Millisecond {
		t.Errorf("steady p50 %s p99 %s, want 20ms and 30ms", steady.p50, steady.p99)
	}
	if k := byName[phaseKill+"/"]; k.requests != 1 || k.expected != 1 || k.p99 != 0 {
		t.Errorf("kill row %+v (a request without an answer has no latency)", k)
	}
	if f := byName[phaseFailover+"/"+kindSend]; f.requests != 1 || f.expected != 1 {
		t.Errorf("failover send row %+v", f)
	}
	if len(expected) != 2 || len(unexpected) != 1 {
		t.Errorf("reasons: expected %v, unexpected %v", expected, unexpected)
	}
}

func TestMessageIDRoundTrip(t *testing.T) {
	for _, c := range [][2]int{{0, 1}, {9, 123456}, {65535, 1 << 39}} {
		id := messageID(c[0], c[1])
		s, q, ok := parseMessageID(id)
		if !ok || s != c[0] || q != c[1] {
			t.Errorf("%v -> %q -> %d %d %v", c, id, s, q, ok)
		}
	}
	for _, bad := range []string{"", "3EB0", "XXXX00010000000001", "3EB0000G0000000001"} {
		if _, _, ok := parseMessageID(bad); ok {
			t.Errorf("parseMessageID(%q) accepted", bad)
		}
	}
}

func TestEventCheck(t *testing.T) {
	ev := func(s float64, idx, seq int) receivedEvent {
		return receivedEvent{at: at(s), id: messageID(idx, seq), messageID: messageID(idx, seq)}
	}
	streams := map[string]*whSession{
		"a": {index: 0, accepted: map[int]time.Time{1: at(1), 2: at(2), 3: at(3), 4: at(4), 5: at(95)}, spooled: map[int]bool{3: true}},
		"b": {index: 1, accepted: map[int]time.Time{1: at(1), 2: at(2)}},
	}
	got := map[string][]receivedEvent{
		// a: 1, 2, then 4 before 3 (3 was spooled), 5 lost; 2 again long after (unexpected).
		"a": {ev(1, 0, 1), ev(2, 0, 2), ev(4, 0, 4), ev(5, 0, 3), ev(30, 0, 2)},
		// b: 1 delivered just before the kill and again after it (expected), 2.
		"b": {ev(59, 1, 1), ev(75, 1, 1), ev(76, 1, 2)},
		// an event of a session the soak did not send to (the poller's).
		"c": {{at: at(3), id: "evt_x", typ: "session.connected"}},
	}
	f := eventCheck(streams, got, testWindows)
	want := eventFigures{accepted: 7, received: 6, lost: 1, duplicates: 2, expectedDups: 1, outOfOrder: 1,
		outOfOrderSpooled: 1, spooled: 1, other: 1}
	if len(f.lostSeqs) != 1 || !strings.HasPrefix(f.lostSeqs[0], "a#5 ") {
		t.Errorf("lost events named %q, want a#5", f.lostSeqs)
	}
	f.lostSeqs = nil
	if !reflect.DeepEqual(f, want) {
		t.Errorf("eventCheck = %+v\nwant %+v", f, want)
	}
}

func TestSyncCheck(t *testing.T) {
	ids := func(n int) map[string]bool {
		m := map[string]bool{}
		for i := range n {
			m[strings.Repeat("x", i+1)] = true
		}
		return m
	}
	jobs := []*jobRun{
		{session: "s1", id: "j1", state: "succeeded"},
		{session: "s2", id: "j2", state: "succeeded"},
		{session: "s3", id: "j3", state: "partial"},
		{session: "s4"}, // never started
	}
	got := map[string]*jobItems{
		"j1": {ids: map[string]map[string]bool{"contacts": ids(3), "chats": ids(2), "messages": ids(5)}},
		"j2": {ids: map[string]map[string]bool{"contacts": ids(3), "chats": ids(2), "messages": ids(4)}},
	}
	sim := map[string]simTotals{"s1": {3, 2, 5}, "s2": {3, 2, 5}, "s3": {1, 1, 1}}
	f := syncCheck(jobs, got, sim, map[string]int{"j1/contacts/0": 2, "j1/chats/0": 1})
	if f.jobs != 3 || f.exact != 1 || f.unfinished != 1 || f.redelivered != 1 || len(f.problems) != 2 {
		t.Errorf("syncCheck = %+v", f)
	}
}

func TestSendCheck(t *testing.T) {
	keys := []*sendKey{
		{text: "soak send 1", statuses: []int{201, 201, 201}}, // once upstream: fine
		{text: "soak send 2", statuses: []int{201, 201}},      // twice upstream: a duplicate
		{text: "soak send 3", statuses: []int{503, 503}},      // refused, never sent: fine
		{text: "soak send 4", statuses: []int{0, 201}},        // acknowledged, never sent: a loss
	}
	texts := map[string]int{"soak send 1": 1, "soak send 2": 2}
	f := sendCheck(keys, texts, 3)
	want := sendFigures{keys: 4, acknowledged: 3, uses: 9, duplicated: 1, ackedNotSent: 1, upstreamSends: 3, soakMessages: 3}
	if f != want {
		t.Errorf("sendCheck = %+v\nwant %+v", f, want)
	}
}

func TestSchedule(t *testing.T) {
	got := schedule(10*time.Minute, time.Minute, 90*time.Second, 3*time.Minute)
	kills, failovers := 0, 0
	for i, a := range got {
		if i > 0 && a.at < got[i-1].at {
			t.Fatalf("not in time order: %v", got)
		}
		if a.at > 10*time.Minute-15*time.Second {
			t.Errorf("an event at %s, within the last 15 s", a.at)
		}
		if a.failover {
			failovers++
		} else {
			kills++
		}
	}
	if kills != 9 || failovers != 3 {
		t.Errorf("10m: %d kills, %d failovers; want 9 and 3 (kills at 1..9 min, failovers at 1.5, 4.5, 7.5 min)", kills, failovers)
	}
}

func TestVerdictPrint(t *testing.T) {
	v := &verdict{header: "test", checks: []check{{"a", "1", "1", true}, {"b", "2", "0", false}},
		expected: map[string]int{"x": 1}, unexpected: map[string]int{}}
	var b bytes.Buffer
	v.print(&b)
	out := b.String()
	if v.pass() || !strings.Contains(out, "VERDICT: FAIL") || !strings.Contains(out, "FAIL") {
		t.Errorf("a failed check must fail the verdict:\n%s", out)
	}
	v.checks[1].ok = true
	b.Reset()
	v.print(&b)
	if !v.pass() || !strings.Contains(b.String(), "VERDICT: PASS") {
		t.Errorf("all checks passed:\n%s", b.String())
	}
}
