package frappe_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

const (
	jwtIssuer   = "https://crm.test.invalid"
	jwtAudience = "inboxhub-gateway-test"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// stubPage stubs the frappe globals the client script uses and records every call into
// window.__calls; makeForm(sessionID) runs the script's refresh handler for a form of that session.
const stubPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>WhatsApp Session (Frappe stub)</title>
<style>
body{font-family:sans-serif;margin:16px} button{margin:4px;padding:6px 12px}
.box{border:1px solid #ccc;border-radius:6px;padding:10px;margin:8px 0}
.bar{height:14px;background:#eee}.bar>div{height:14px;background:#2490ef}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}
</style></head>
<body>
<h3>WhatsApp Session</h3>
<div id="toolbar"></div><div id="progress"></div><div id="msgs"></div><div id="dialogs"></div>
<script>
window.__calls = [];
function rec(name, args) { window.__calls.push({name: name, args: JSON.parse(JSON.stringify(args))}); }
window.__ = function (s, args) { return args ? String(s).replace(/\{(\d+)\}/g, function (m, i) { return String(args[i]); }) : String(s); };
var forms = {};
var realFetch = window.fetch.bind(window);
window.fetch = function (url, init) {
  rec("fetch", [(init && init.method) || "GET", String(url), (init && init.headers && init.headers.Accept) || ""]);
  return realFetch(url, init);
};
window.frappe = {
  ui: {
    form: { on: function (doctype, handlers) { rec("form.on", [doctype]); forms[doctype] = handlers; } },
    Dialog: function (opts) {
      rec("Dialog", [opts.title]);
      var self = this, root = document.createElement("div"), body = document.createElement("div");
      root.className = "box dialog"; root.style.display = "none";
      root.innerHTML = "<b></b>"; root.firstChild.textContent = opts.title;
      root.appendChild(body); document.getElementById("dialogs").appendChild(root);
      this.fields_dict = {};
      (opts.fields || []).forEach(function (f) {
        var el = document.createElement("div"); body.appendChild(el);
        self.fields_dict[f.fieldname] = { $wrapper: { html: function (h) { el.innerHTML = h; return this; }, get: function () { return el; } } };
      });
      this.show = function () { rec("Dialog.show", [opts.title]); root.style.display = "block"; };
      this.hide = function () { rec("Dialog.hide", [opts.title]); root.style.display = "none"; if (self.onhide) self.onhide(); };
    }
  },
  call: function (opts) {
    rec("call", [opts.method]);
    fetch("/token").then(function (r) { return r.json(); })
      .then(function (m) { opts.callback({message: m}); })
      .catch(function (e) { if (opts.error) opts.error(e); });
  },
  show_progress: function (title, count, total, description) {
    rec("show_progress", [title, count, total, description]);
    document.getElementById("progress").innerHTML = "<div class='box'><b></b><div class='bar'><div></div></div><p></p></div>";
    var p = document.getElementById("progress");
    p.querySelector("b").textContent = title;
    p.querySelector(".bar>div").style.width = Math.round(100 * count / total) + "%";
    p.querySelector("p").innerHTML = description;
  },
  hide_progress: function () { rec("hide_progress", []); },
  msgprint: function (m) {
    rec("msgprint", [m]);
    var d = document.createElement("div"); d.className = "box msgprint";
    d.innerHTML = "<b></b><div></div>"; d.firstChild.textContent = m.title || "";
    d.lastChild.innerHTML = m.message || String(m);
    document.getElementById("msgs").appendChild(d);
  },
  confirm: function (msg, yes, no) { rec("confirm", [msg]); setTimeout(yes, 0); },
  show_alert: function (m) { rec("show_alert", [m]); }
};
window.makeForm = function (sessionID) {
  var frm = {
    doc: {doctype: "WhatsApp Session", name: sessionID, session_id: sessionID},
    is_new: function () { return false; },
    reload_doc: function () { rec("reload_doc", [sessionID]); },
    add_custom_button: function (label, fn, group) {
      rec("add_custom_button", [sessionID, label, group]);
      var b = document.createElement("button"); b.id = "btn-" + sessionID;
      b.textContent = group + " / " + label + " (" + sessionID + ")"; b.onclick = fn;
      document.getElementById("toolbar").appendChild(b);
    }
  };
  forms["WhatsApp Session"].refresh(frm);
};
</script>
<script src="/whatsapp_session.js"></script>
<script>makeForm("demo_session"); makeForm("support_desk");</script>
</body></html>`

// mintToken mints the CRM's JWT the way the Frappe server method does: with the kit's Python
// (inboxhub_gateway.api.gateway_token over a stub frappe module) when python3 is installed, so the
// gateway is shown to accept it, or else in Go with the same claims.
func mintToken(t *testing.T, secret, gatewayURL string) []byte {
	if py, err := exec.LookPath("python3"); err == nil {
		script := `
import json, sys, types
f = types.ModuleType("frappe")
f.whitelist = lambda **kw: (lambda fn: fn)
f.conf = json.loads(sys.argv[1])
f.session = types.SimpleNamespace(user="agent@example.com")
f.PermissionError = f.ValidationError = Exception
sys.modules["frappe"] = f
sys.path.insert(0, ".")
from inboxhub_gateway import api
print(json.dumps(api.gateway_token()))
`
		conf, _ := json.Marshal(map[string]string{
			"inboxhub_jwt_secret": secret, "inboxhub_jwt_issuer": jwtIssuer,
			"inboxhub_jwt_audience": jwtAudience, "inboxhub_gateway_url": gatewayURL,
		})
		out, err := exec.Command(py, "-B", "-c", script, string(conf)).Output()
		if err != nil {
			t.Errorf("python3 gateway_token: %v", err)
			return nil
		}
		return out
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "agent@example.com", "iss": jwtIssuer, "aud": jwtAudience,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "scope": "sessions:read sessions:write sync",
	}).SignedString([]byte(secret))
	if err != nil {
		t.Error(err)
		return nil
	}
	out, _ := json.Marshal(map[string]any{"token": tok, "gateway_url": gatewayURL, "expires_in": 300})
	return out
}

type env struct {
	sim        *sim.Server
	gatewayURL string
	pageURL    string
	token      func() string
}

func setup(t *testing.T) env {
	t.Helper()
	identifier, password, apiKey := "gw-"+randHex(4)+"@example.invalid", "test-pw-"+randHex(8), "test_upstream_"+randHex(8)
	o := sim.Options{Identifier: identifier, Password: password, APIKey: apiKey,
		RateAuth: sim.NoLimit(), RateRead: sim.NoLimit(), RateSend: sim.NoLimit(), RateGlobal: sim.NoLimit(),
		QRDelay: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { simSrv.Close(); s.Close() })

	// The stub page's server exists first: its origin is the gateway's CORS origin.
	mux := http.NewServeMux()
	page := httptest.NewServer(mux)
	t.Cleanup(page.Close)

	secret := "jwt-" + randHex(24)
	vars := map[string]string{
		"INBOXHUB_BASE_URL":        simSrv.URL,
		"INBOXHUB_IDENTIFIER":      identifier,
		"INBOXHUB_PASSWORD":        password,
		"INBOXHUB_API_KEY":         apiKey,
		"REDIS_URL":                redistest.URL(t),
		"GATEWAY_CALLER_RATE":      "0",
		"UPSTREAM_RATE_READ":       "0",
		"UPSTREAM_RATE_SEND":       "0",
		"UPSTREAM_RATE_AUTH":       "100/1m",
		"GATEWAY_JWT_HS256_SECRET": secret,
		"GATEWAY_JWT_ISSUER":       jwtIssuer,
		"GATEWAY_JWT_AUDIENCE":     jwtAudience,
		"GATEWAY_CORS_ORIGINS":     page.URL,
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	gw := httptest.NewServer(a.Handler())
	t.Cleanup(func() { gw.Close(); cancel(); a.Close() })

	var last string
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, stubPage)
	})
	mux.HandleFunc("GET /whatsapp_session.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, "whatsapp_session.js")
	})
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		out := mintToken(t, secret, gw.URL)
		var m struct{ Token string }
		_ = json.Unmarshal(out, &m)
		last = m.Token
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	return env{sim: s, gatewayURL: gw.URL, pageURL: page.URL + "/", token: func() string { return last }}
}

func browser(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	bin := "/usr/bin/chromium"
	if _, err := os.Stat(bin); err != nil {
		bin = ""
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		t.Skip("no Chromium installed (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1100, 800),
		chromedp.Env("HOME=" + t.TempDir()),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	// No timeout on the browser's context (it would stop the browser): the polls carry their own.
	ctx, cancel := chromedp.NewContext(actx)
	return ctx, func() { cancel(); acancel() }
}

func artifactsDir(t *testing.T) string {
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "gateway-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	p := filepath.Join(artifactsDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Error(err)
		return
	}
	t.Logf("screenshot: %s", p)
}

type call struct {
	Name string            `json:"name"`
	Args []json.RawMessage `json:"args"`
}

func calls(t *testing.T, ctx context.Context) []call {
	t.Helper()
	cs, err := chromedp.Run(ctx, chromedp.Evaluate[[]call](`window.__calls`))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func dump(cs []call) string {
	b, _ := json.MarshalIndent(cs, "", " ")
	return string(b)
}

// TestClientScriptSyncShowsProgressAndCounts: clicking "Sincronizar Ahora" on the connected
// demo_session streams the job's progress into frappe.show_progress and ends with a msgprint of
// the counts per resource, equal to the job's counts on the gateway.
func TestClientScriptSyncShowsProgressAndCounts(t *testing.T) {
	ctx, cancel := browser(t)
	defer cancel()
	e := setup(t)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.pageURL),
		chromedp.WaitVisible(chromedp.CSS(`#btn-demo_session`)),
		chromedp.Click(chromedp.CSS(`#btn-demo_session`)),
		chromedp.Poll[chromedp.Void](`window.__calls.some(c => c.name === "msgprint")`, chromedp.WithPollingTimeout(90*time.Second)),
	); err != nil {
		t.Fatalf("no final message: %v\n%s", err, dump(calls(t, ctx)))
	}
	screenshot(t, ctx, "frappe-sync-demo_session.png")
	cs := calls(t, ctx)

	var buttons, progress, streams, polls int
	var final struct{ Title, Message, Indicator string }
	for _, c := range cs {
		switch c.Name {
		case "fetch":
			var u, accept string
			_ = json.Unmarshal(c.Args[1], &u)
			_ = json.Unmarshal(c.Args[2], &accept)
			switch {
			case strings.HasSuffix(u, "/events") && accept == "text/event-stream":
				streams++
			case strings.Contains(u, "/v1/sync-jobs/"):
				polls++
			}
		case "add_custom_button":
			var label, group string
			_ = json.Unmarshal(c.Args[1], &label)
			_ = json.Unmarshal(c.Args[2], &group)
			if label != "Sincronizar Ahora" || group != "Acciones" {
				t.Errorf("button %q in group %q", label, group)
			}
			buttons++
		case "show_progress":
			progress++
		case "msgprint":
			_ = json.Unmarshal(c.Args[0], &final)
		}
	}
	if buttons != 2 {
		t.Errorf("%d buttons added, want 2", buttons)
	}
	// The first call says "starting"; at least one more comes from the job's events.
	if progress < 2 {
		t.Errorf("%d show_progress calls, want at least 2\n%s", progress, dump(cs))
	}
	// The progress came over the SSE stream, read with fetch(), with no fallback to polling.
	if streams != 1 || polls != 0 {
		t.Errorf("%d event streams and %d polls of the job, want 1 and 0", streams, polls)
	}
	if final.Title != "Sincronización completada" || final.Indicator != "green" {
		t.Errorf("final message %q (%s)\n%s", final.Title, final.Indicator, final.Message)
	}

	// The counts shown are the job's, as the gateway reports them.
	req, _ := http.NewRequest(http.MethodGet, e.gatewayURL+"/v1/sessions/demo_session/sync-jobs", nil)
	req.Header.Set("Authorization", "Bearer "+e.token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jobs struct {
		Data []struct {
			State    string
			Progress map[string]struct{ Fetched, New, Changed, Unchanged, Delivered, Failed int }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil || resp.StatusCode != 200 || len(jobs.Data) == 0 {
		t.Fatalf("jobs of demo_session: %d %v %+v", resp.StatusCode, err, jobs)
	}
	job := jobs.Data[0]
	labels := map[string]string{"contacts": "Contactos", "chats": "Chats", "messages": "Mensajes"}
	for res, p := range job.Progress {
		row := fmt.Sprintf("<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>",
			labels[res], p.Fetched, p.New, p.Changed, p.Unchanged, p.Delivered, p.Failed)
		if !strings.Contains(final.Message, row) {
			t.Errorf("final message lacks the row %s\n%s", row, final.Message)
		}
		if res == "contacts" && p.Fetched == 0 {
			t.Errorf("no contacts fetched: %+v", p)
		}
	}
	if len(job.Progress) != 3 {
		t.Errorf("job progress has %d resources", len(job.Progress))
	}
}

// TestClientScriptReconnectShowsQR: on the disconnected support_desk the sync answers 409
// SESSION_NOT_CONNECTED; the script offers to reconnect (frappe.confirm, accepted by the stub),
// connects and shows the QR image as a PNG with its countdown; once the simulator's QR is scanned
// the dialog closes and the session is reported connected.
func TestClientScriptReconnectShowsQR(t *testing.T) {
	ctx, cancel := browser(t)
	defer cancel()
	e := setup(t)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.pageURL),
		chromedp.WaitVisible(chromedp.CSS(`#btn-support_desk`)),
		chromedp.Click(chromedp.CSS(`#btn-support_desk`)),
		chromedp.Poll[chromedp.Void](`(() => { const i = document.querySelector(".inboxhub-qr-image");
			return !!i && i.complete && i.naturalWidth > 0 && /caduca en \d+ s/.test(document.querySelector(".inboxhub-qr-countdown").textContent); })()`,
			chromedp.WithPollingTimeout(60*time.Second)),
	); err != nil {
		t.Fatalf("no QR image: %v\n%s", err, dump(calls(t, ctx)))
	}
	screenshot(t, ctx, "frappe-reconnect-support_desk.png")
	src, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector(".inboxhub-qr-image").src`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(src, "blob:") {
		t.Errorf("QR image src %q, want a blob URL", src)
	}
	var sawConfirm bool
	for _, c := range calls(t, ctx) {
		if c.Name == "confirm" {
			sawConfirm = true
			var msg string
			_ = json.Unmarshal(c.Args[0], &msg)
			if !strings.Contains(msg, "no está conectada") {
				t.Errorf("confirm message: %s", c.Args[0])
			}
		}
		if c.Name == "msgprint" {
			t.Errorf("unexpected msgprint: %s", c.Args[0])
		}
	}
	if !sawConfirm {
		t.Error("no Reconnect offer (frappe.confirm)")
	}

	if err := e.sim.ScanQR("support_desk"); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx,
		chromedp.Poll[chromedp.Void](`window.__calls.some(c => c.name === "show_alert" && /conectada/.test(c.args[0].message)) &&
			window.__calls.some(c => c.name === "Dialog.hide")`, chromedp.WithPollingTimeout(30*time.Second)),
	); err != nil {
		t.Fatalf("not reported connected after the scan: %v\n%s", err, dump(calls(t, ctx)))
	}
}
