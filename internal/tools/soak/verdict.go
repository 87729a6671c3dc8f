package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Phases of the run, as the verdict splits the requests.
const (
	phaseSteady   = "steady"
	phaseKill     = "around replica kills"
	phaseFailover = "around Redis failovers"
)

// check is one line of the verdict.
type check struct {
	name, got, want string
	ok              bool
}

// phaseRow is the figures of one phase (kind "" is the whole phase).
type phaseRow struct {
	phase, kind          string
	requests, non2xx     int
	expected, unexpected int
	p50, p99, max        time.Duration
}

// verdict is what the soak prints and decides by.
type verdict struct {
	header     string
	checks     []check
	phases     []phaseRow
	expected   map[string]int // reason -> count
	unexpected map[string]int
	notes      []string
}

func (v *verdict) pass() bool {
	for _, c := range v.checks {
		if !c.ok {
			return false
		}
	}
	return true
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func (v *verdict) print(w io.Writer) {
	fmt.Fprintf(w, "\n== Chaos soak verdict: %s\n\n", v.header)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "check\tresult\twant\tverdict")
	for _, c := range v.checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.name, c.got, c.want, passFail(c.ok))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\trequests\tnon-2xx\texpected\tunexpected\tnon-2xx rate\tp50\tp99\tmax\t")
	for _, p := range v.phases {
		name := p.phase
		if p.kind != "" {
			name = "  " + p.kind
		}
		rate := "-"
		if p.requests > 0 {
			rate = fmt.Sprintf("%.2f%%", 100*float64(p.non2xx)/float64(p.requests))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", name, p.requests, p.non2xx, p.expected, p.unexpected,
			rate, ms(p.p50), ms(p.p99), ms(p.max))
	}
	_ = tw.Flush()
	for _, part := range []struct {
		title string
		m     map[string]int
	}{{"expected non-2xx (by reason)", v.expected}, {"unexpected non-2xx (by reason)", v.unexpected}} {
		fmt.Fprintf(w, "\n%s:\n", part.title)
		if len(part.m) == 0 {
			fmt.Fprintln(w, "  none")
		}
		for _, k := range sortedKeys(part.m) {
			fmt.Fprintf(w, "  %6d  %s\n", part.m[k], k)
		}
	}
	if len(v.notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range v.notes {
			fmt.Fprintln(w, "  - "+n)
		}
	}
	fmt.Fprintf(w, "\nVERDICT: %s\n", passFail(v.pass()))
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

// phaseOf says in which phase a request that ran from t to t+d falls: around a chaos event when it
// overlaps the event's window, a failover window winning over a kill window. It also returns the
// window.
func phaseOf(t time.Time, d time.Duration, ws []window) (string, *window) {
	var kill *window
	for i := range ws {
		w := &ws[i]
		if t.Add(d).Before(w.start) || t.After(w.end) {
			continue
		}
		if w.kind == windowFailover {
			return phaseFailover, w
		}
		if kill == nil {
			kill = w
		}
	}
	if kill != nil {
		return phaseKill, kill
	}
	return phaseSteady, nil
}

// classify says whether a non-2xx sample was to be expected in its phase, and why.
//   - no answer at all: expected only from the replica being killed, around its kill;
//   - 503 around a failover: Redis is briefly unreachable (idempotent sends are refused rather
//     than sent without the guarantee; UPSTREAM_UNAVAILABLE while the token store does not answer);
//   - 409 to a send around a kill: the key's other use was on the killed replica and still holds
//     the key (the repeat waits 20 s, then is told to retry);
//
// everything else is unexpected.
func classify(s sample, phase string, w *window) (bool, string) {
	switch {
	case s.status == 0 && phase == phaseKill && w != nil && w.replica == s.replica:
		return true, "no answer from the replica killed with SIGKILL (" + s.code + ")"
	case s.status == http.StatusServiceUnavailable && phase == phaseFailover:
		return true, fmt.Sprintf("503 %s to a %s while Redis failed over", s.code, s.kind)
	case s.status == http.StatusConflict && s.kind == kindSend && phase == phaseKill:
		return true, "409 CONFLICT to a send whose key's other use was cut by the kill (retry later)"
	case s.status == 0:
		return false, fmt.Sprintf("no answer to a %s (%s, %s)", s.kind, s.code, phase)
	}
	return false, fmt.Sprintf("%d %s to a %s (%s)", s.status, s.code, s.kind, phase)
}

// percentile is the p-th percentile (0..1) of ds, sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1)*p + 0.5)
	return ds[i]
}

// requestFigures fills the phase table and the non-2xx reasons from the samples.
func requestFigures(samples []sample, ws []window) (rows []phaseRow, expected, unexpected map[string]int) {
	expected, unexpected = map[string]int{}, map[string]int{}
	type acc struct {
		row  phaseRow
		durs []time.Duration
	}
	accs := map[[2]string]*acc{}
	get := func(phase, kind string) *acc {
		k := [2]string{phase, kind}
		if accs[k] == nil {
			accs[k] = &acc{row: phaseRow{phase: phase, kind: kind}}
		}
		return accs[k]
	}
	for _, s := range samples {
		phase, w := phaseOf(s.at, s.dur, ws)
		for _, a := range []*acc{get(phase, ""), get(phase, s.kind)} {
			a.row.requests++
			if s.status != 0 {
				a.durs = append(a.durs, s.dur)
			}
			if s.status/100 == 2 {
				continue
			}
			a.row.non2xx++
			if ok, _ := classify(s, phase, w); ok {
				a.row.expected++
			} else {
				a.row.unexpected++
			}
		}
		if s.status/100 != 2 {
			if ok, why := classify(s, phase, w); ok {
				expected[why]++
			} else {
				unexpected[why]++
			}
		}
	}
	for _, phase := range []string{phaseSteady, phaseKill, phaseFailover} {
		for _, kind := range []string{"", kindCached, kindPassthrough, kindSend, kindWebhook, kindSync} {
			a := accs[[2]string{phase, kind}]
			if a == nil {
				continue
			}
			a.row.p50, a.row.p99, a.row.max = percentile(a.durs, 0.50), percentile(a.durs, 0.99), percentile(a.durs, 1)
			rows = append(rows, a.row)
		}
	}
	return rows, expected, unexpected
}

// eventFigures is what the CRM got of the soak's webhooks.
type eventFigures struct {
	accepted, received, lost, duplicates, expectedDups, outOfOrder, outOfOrderSpooled, gaveUp, rejected, spooled, other int
	lostSeqs                                                                                                            []string
}

// eventCheck compares the webhooks accepted per session with the events the CRM got: each
// accepted one must arrive, once, in the order of acceptance. A repeat is expected (an
// acknowledgement lost when a drainer died, or a pop lost in a failover) when the first delivery
// fell within a chaos window or the two seconds before it.
func eventCheck(streams map[string]*whSession, got map[string][]receivedEvent, ws []window) eventFigures {
	var f eventFigures
	for _, sid := range sortedSessions(streams) {
		st := streams[sid]
		f.accepted += len(st.accepted)
		f.gaveUp += len(st.gaveUp)
		f.rejected += len(st.rejected)
		f.spooled += len(st.spooled)
		first := f.countReceived(st, got[sid], ws)
		f.countLost(sid, st, first, ws)
	}
	for sid, evs := range got {
		if streams[sid] == nil {
			f.other += len(evs)
		}
	}
	return f
}

// inChaos reports whether t fell within a chaos window or the two seconds before it.
func inChaos(t time.Time, ws []window) bool {
	for _, w := range ws {
		if !t.Before(w.start.Add(-2*time.Second)) && !t.After(w.end) {
			return true
		}
	}
	return false
}

// countReceived counts a session's events at the CRM: those received, repeats (expected when the
// first came around chaos), those out of order, and the events of other streams. It returns when
// each of the session's webhooks first arrived, by sequence number.
func (f *eventFigures) countReceived(st *whSession, evs []receivedEvent, ws []window) map[int]time.Time {
	first := map[int]time.Time{}
	maxSeq := 0
	for _, e := range evs {
		idx, seq, ok := parseMessageID(e.messageID)
		if !ok || idx != st.index {
			f.other++
			continue
		}
		if at, seen := first[seq]; seen {
			f.duplicates++
			if inChaos(at, ws) {
				f.expectedDups++
			}
			continue
		}
		first[seq] = e.at
		f.received++
		if seq < maxSeq {
			f.outOfOrder++
			if st.spooled[seq] {
				f.outOfOrderSpooled++
			}
		}
		maxSeq = max(maxSeq, seq)
	}
	return first
}

// countLost counts the session's accepted webhooks that never arrived (not in first), and names
// the first ten of all sessions.
func (f *eventFigures) countLost(sid string, st *whSession, first map[int]time.Time, ws []window) {
	var lost []int
	for seq := range st.accepted {
		if _, ok := first[seq]; !ok {
			lost = append(lost, seq)
		}
	}
	slices.Sort(lost)
	f.lost += len(lost)
	for _, seq := range lost {
		if len(f.lostSeqs) < 10 {
			at := st.accepted[seq]
			f.lostSeqs = append(f.lostSeqs, fmt.Sprintf("%s#%d (%s, accepted %s, %s, spooled %v, %s)", sid, seq,
				messageID(st.index, seq), at.UTC().Format("15:04:05.000"), phaseName(at, ws), st.spooled[seq], st.by[seq]))
		}
	}
}

func phaseName(t time.Time, ws []window) string {
	p, _ := phaseOf(t, 0, ws)
	return p
}

func sortedSessions(m map[string]*whSession) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// simTotals is what the simulator holds of one session.
type simTotals struct{ contacts, chats, messages int }

// syncFigures compares each job's items at the CRM with the simulator.
type syncFigures struct {
	jobs, exact, unfinished, redelivered int
	problems                             []string
}

func syncCheck(jobs []*jobRun, got map[string]*jobItems, sim map[string]simTotals, deliveries map[string]int) syncFigures {
	var f syncFigures
	for _, j := range jobs {
		if j.id == "" {
			continue
		}
		f.jobs++
		if j.state != "succeeded" {
			f.unfinished++
			f.problems = append(f.problems, fmt.Sprintf("job on %s ended %q %s", j.session, j.state, j.err))
			continue
		}
		want := sim[j.session]
		items := got[j.id]
		count := func(res string) int {
			if items == nil {
				return 0
			}
			return len(items.ids[res])
		}
		c, h, m := count("contacts"), count("chats"), count("messages")
		if c == want.contacts && h == want.chats && m == want.messages {
			f.exact++
			continue
		}
		f.problems = append(f.problems, fmt.Sprintf("job on %s: CRM got %d/%d/%d contacts/chats/messages, simulator holds %d/%d/%d",
			j.session, c, h, m, want.contacts, want.chats, want.messages))
	}
	for _, n := range deliveries {
		if n > 1 {
			f.redelivered += n - 1
		}
	}
	return f
}

// sendFigures compares the keys' answers with the messages the simulator holds.
type sendFigures struct {
	keys, acknowledged, uses, duplicated, ackedNotSent, upstreamSends, soakMessages int
}

func sendCheck(keys []*sendKey, texts map[string]int, upstreamSends int) sendFigures {
	f := sendFigures{keys: len(keys), upstreamSends: upstreamSends}
	for _, n := range texts {
		f.soakMessages += n
	}
	for _, k := range keys {
		f.uses += len(k.statuses)
		acked := slices.ContainsFunc(k.statuses, func(s int) bool { return s/100 == 2 })
		if acked {
			f.acknowledged++
		}
		switch n := texts[k.text]; {
		case n > 1:
			f.duplicated++
		case n == 0 && acked:
			f.ackedNotSent++
		}
	}
	return f
}

// judge gathers the simulator's side and the CRM's, and builds the verdict.
func judge(ctx context.Context, f *fleet, l *load, samples []sample, ws []window, start, end time.Time) (*verdict, error) {
	g, err := gather(ctx, f, l, ws)
	if err != nil {
		return nil, err
	}
	rows, expected, unexpected := requestFigures(samples, ws)
	kills, failovers := windowCounts(ws)
	v := &verdict{expected: expected, unexpected: unexpected, phases: rows,
		header: fmt.Sprintf("%s of load, %d replicas, %d replica kills, %d Redis failovers, %d webhooks/s target",
			end.Sub(start).Round(time.Second), len(f.replicas), kills, failovers, l.o.webhookRate)}
	unexp := 0
	for _, n := range unexpected {
		unexp += n
	}
	v.checks = g.checks(failovers, unexp)
	v.notes = g.notes(ws, start, end)
	return v, nil
}

// simCounters is the simulator's /_sim/counters.
type simCounters struct {
	Logins        int              `json:"logins"`
	LoginFailures int              `json:"loginFailures"`
	Refreshes     int              `json:"refreshes"`
	RateLimited   int              `json:"rateLimited"`
	Requests      map[string]int64 `json:"requests"`
}

// soakFigures is what the simulator, the gateway's dead letters and the CRM hold after the load,
// compared with what the soak sent.
type soakFigures struct {
	counters                 simCounters
	deadLetters              int // -1: the gateway did not answer
	ev                       eventFigures
	sy                       syncFigures
	se                       sendFigures
	badSig, stale, malformed int // the CRM's refusals
}

// gather reads the simulator's side, the dead letters and the CRM's, and compares them with the load.
func gather(ctx context.Context, f *fleet, l *load, ws []window) (soakFigures, error) {
	// The soak reads the simulator with the gateway's upstream key: start from fresh windows.
	_ = f.simAdminPost(ctx, "/_sim/ratelimits/reset", `{}`)
	var g soakFigures
	if err := f.simGet(ctx, "/_sim/counters", &g.counters); err != nil {
		return soakFigures{}, err
	}
	sim, err := jobSessionTotals(ctx, f, l.jobs)
	if err != nil {
		return soakFigures{}, err
	}
	texts, err := sentTexts(ctx, f)
	if err != nil {
		return soakFigures{}, err
	}
	g.deadLetters = deadLetters(ctx, l)

	f.crm.mu.Lock()
	g.ev = eventCheck(l.webhooks, f.crm.events, ws)
	g.sy = syncCheck(l.jobs, f.crm.jobs, sim, f.crm.deliveries)
	g.badSig, g.stale, g.malformed = f.crm.badSig, f.crm.stale, f.crm.malformed
	f.crm.mu.Unlock()
	g.se = sendCheck(l.sends, texts, int(g.counters.Requests["POST /api/messages/{sessionId}/send"]))
	return g, nil
}

// jobSessionTotals reads what the simulator holds of each session a sync job started on.
func jobSessionTotals(ctx context.Context, f *fleet, jobs []*jobRun) (map[string]simTotals, error) {
	sim := map[string]simTotals{}
	for _, j := range jobs {
		if j.id == "" || sim[j.session] != (simTotals{}) {
			continue
		}
		t, err := sessionTotals(ctx, f, j.session)
		if err != nil {
			return nil, err
		}
		sim[j.session] = t
	}
	return sim, nil
}

// deadLetters is the gateway's count of dead letters, -1 when it does not answer.
func deadLetters(ctx context.Context, l *load) int {
	var dead struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	a := l.do(ctx, kindSync, nil, http.MethodGet, "/v1/admin/dead-letters?limit=1", nil, nil)
	if a.status != http.StatusOK {
		return -1
	}
	_ = json.Unmarshal(a.body, &dead)
	return dead.Meta.Total
}

// windowCounts counts the chaos windows: replica kills and Redis failovers.
func windowCounts(ws []window) (kills, failovers int) {
	for _, w := range ws {
		if w.kind == windowKill {
			kills++
		} else {
			failovers++
		}
	}
	return kills, failovers
}

// checks are the verdict's lines; failovers bounds the logins, unexp counts the unexpected answers.
func (g soakFigures) checks(failovers, unexp int) []check {
	ev, sy, se, counters := g.ev, g.sy, g.se, g.counters
	return []check{
		{"sync jobs: items at the CRM = simulator", fmt.Sprintf("%d of %d jobs exact (%d not succeeded)", sy.exact, sy.jobs, sy.unfinished),
			"every job exact", sy.jobs > 0 && sy.exact == sy.jobs},
		{"sync batches delivered again", fmt.Sprintf("%d", sy.redelivered), "any (after a takeover; ids make them upserts)", true},
		{"events: accepted webhooks lost", fmt.Sprintf("%d of %d", ev.lost, ev.accepted), "0", ev.lost == 0 && ev.accepted > 0},
		{"events: delivered twice", fmt.Sprintf("%d (%d around chaos)", ev.duplicates, ev.expectedDups), "0 outside chaos windows", ev.duplicates == ev.expectedDups},
		{"events: out of order per session", fmt.Sprintf("%d (%d of them spooled)", ev.outOfOrder, ev.outOfOrderSpooled), "0", ev.outOfOrder == 0},
		{"webhooks refused (4xx) or never accepted", fmt.Sprintf("%d refused, %d gave up", ev.rejected, ev.gaveUp), "0", ev.rejected == 0 && ev.gaveUp == 0},
		{"sends: a key's message upstream twice", fmt.Sprintf("%d of %d keys (%d uses)", se.duplicated, se.keys, se.uses), "0", se.duplicated == 0 && se.keys > 0},
		{"sends: answered 2xx but not upstream", fmt.Sprintf("%d of %d acknowledged", se.ackedNotSent, se.acknowledged), "0", se.ackedNotSent == 0},
		{"sends: upstream send calls = soak messages", fmt.Sprintf("%d calls, %d messages", se.upstreamSends, se.soakMessages), "equal", se.upstreamSends == se.soakMessages},
		{"upstream logins", fmt.Sprintf("%d logins (%d refused), %d refreshes", counters.Logins, counters.LoginFailures, counters.Refreshes),
			fmt.Sprintf("1, at most 1 more per failover (%d)", failovers), counters.Logins >= 1 && counters.Logins <= 1+failovers && counters.LoginFailures == 0},
		{"upstream 429s (the shared quota must prevent them)", fmt.Sprintf("%d", counters.RateLimited), "0", counters.RateLimited == 0},
		{"dead letters", fmt.Sprintf("%d", g.deadLetters), "0", g.deadLetters == 0},
		{"CRM refusals (bad signature, stale, malformed)", fmt.Sprintf("%d, %d, %d", g.badSig, g.stale, g.malformed), "0, 0, 0", g.badSig+g.stale+g.malformed == 0},
		{"unexpected non-2xx answers", fmt.Sprintf("%d", unexp), "0", unexp == 0},
	}
}

// notes are the verdict's notes: upstream calls, rates, the chaos windows and the first problems.
func (g soakFigures) notes(ws []window, start, end time.Time) []string {
	var calls []string
	for route, n := range g.counters.Requests {
		calls = append(calls, fmt.Sprintf("%s %d", route, n))
	}
	slices.Sort(calls)
	notes := []string{"upstream calls by route: " + strings.Join(calls, ", "),
		fmt.Sprintf("webhooks: %.0f/s accepted on average, %d sync jobs, %d send keys",
			float64(g.ev.accepted)/end.Sub(start).Seconds(), g.sy.jobs, g.se.keys),
		fmt.Sprintf("webhooks: %d accepted, %d of them spooled (Redis unreachable), %d other events at the CRM (the status poller's)",
			g.ev.accepted, g.ev.spooled, g.ev.other)}
	for _, w := range ws {
		notes = append(notes, fmt.Sprintf("%s at +%s, window %s%s", w.kind, w.start.Sub(start).Round(time.Second),
			w.end.Sub(w.start).Round(time.Second), map[bool]string{true: " (" + w.detail + ")"}[w.detail != ""]))
	}
	if len(g.ev.lostSeqs) > 0 {
		notes = append(notes, "first lost events: "+strings.Join(g.ev.lostSeqs, "; "))
	}
	for i, p := range g.sy.problems {
		if i == 10 {
			notes = append(notes, fmt.Sprintf("... %d more sync problems", len(g.sy.problems)-10))
			break
		}
		notes = append(notes, p)
	}
	return notes
}

// sessionTotals reads what the simulator holds of a session, straight from it.
func sessionTotals(ctx context.Context, f *fleet, sid string) (simTotals, error) {
	var contacts struct {
		Data struct {
			Pagination struct {
				Total int `json:"total"`
			} `json:"pagination"`
		} `json:"data"`
	}
	if err := f.simGetRetry(ctx, "/api/contacts/"+url.PathEscape(sid)+"?page=1&limit=1", &contacts); err != nil {
		return simTotals{}, err
	}
	t := simTotals{contacts: contacts.Data.Pagination.Total}
	for page := 1; ; page++ {
		var chats struct {
			Data struct {
				Chats []struct {
					MessageCount int `json:"messageCount"`
				} `json:"chats"`
				Pagination struct {
					Pages int `json:"pages"`
				} `json:"pagination"`
			} `json:"data"`
		}
		if err := f.simGetRetry(ctx, fmt.Sprintf("/api/messages/%s/chats?page=%d&limit=100", url.PathEscape(sid), page), &chats); err != nil {
			return simTotals{}, err
		}
		for _, c := range chats.Data.Chats {
			t.chats++
			t.messages += c.MessageCount
		}
		if page >= chats.Data.Pagination.Pages {
			return t, nil
		}
	}
}

// sentTexts counts the soak's messages in the send chat, by text.
func sentTexts(ctx context.Context, f *fleet) (map[string]int, error) {
	out := map[string]int{}
	for page := 1; ; page++ {
		var msgs struct {
			Data struct {
				Messages []struct {
					Body    *string `json:"body"`
					Content *string `json:"content"`
				} `json:"messages"`
				Pagination struct {
					Pages int `json:"pages"`
				} `json:"pagination"`
			} `json:"data"`
		}
		path := fmt.Sprintf("/api/messages/%s/%s@s.whatsapp.net?page=%d&limit=100", sendSession, sendTo, page)
		if err := f.simGetRetry(ctx, path, &msgs); err != nil {
			return nil, err
		}
		for _, m := range msgs.Data.Messages {
			text := m.Body
			if text == nil {
				text = m.Content
			}
			if text != nil && strings.HasPrefix(*text, "soak send ") {
				out[*text]++
			}
		}
		if page >= msgs.Data.Pagination.Pages {
			return out, nil
		}
	}
}

// simGetRetry is simGet, resetting the simulator's rate limits when one answers 429.
func (f *fleet) simGetRetry(ctx context.Context, path string, out any) error {
	err := f.simGet(ctx, path, out)
	if err != nil && strings.HasSuffix(err.Error(), ": 429") {
		_ = f.simAdminPost(ctx, "/_sim/ratelimits/reset", `{}`)
		err = f.simGet(ctx, path, out)
	}
	return err
}
