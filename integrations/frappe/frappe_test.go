package frappe_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/inboxhub-gateway/gateway/internal/sim"
)

const (
	jwtIssuer   = "https://crm.test.invalid"
	jwtAudience = "inboxhub-gateway-test"
	// kitScript is the kit's form script, as hooks.py declares it (doctype_js).
	kitScript = "inboxhub_gateway/inboxhub_gateway/public/js/whatsapp_session.js"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deskPage is a WhatsApp Session form as Frappe's desk runs it, reduced to what the scripts use:
//
//   - frappe.ui.form.on registers handlers; refresh clears the form's custom buttons, then runs
//     every registered refresh handler in registration order (the app's form script first, then
//     other apps' doctype_js).
//   - frm.add_custom_button(label, fn, group) adds an item to the group's dropdown and an entry
//     "group > label" to the form's menu; when the group (or the menu) already has that label, the
//     first one is kept and the new fn is ignored, as Frappe does.
//   - frm.remove_custom_button(label, group) removes the group's item (not the menu entry).
//   - frappe.call POSTs to /api/method/<method> of the CRM (proxied to the stand-in site as the
//     logged-in desk user); frm.call records the document method it would run.
//
// appFormScript is the WhatsApp app's own behaviour for this form: in refresh it adds, under
// "Acciones", "Sincronizar Ahora" for a connected session (confirm, then the document method
// sync_all_data, a message, a reload a few seconds later) and then its other actions.
const deskPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>WhatsApp Session (desk)</title>
<style>
body{font-family:sans-serif;margin:16px} .form{border:1px solid #ddd;border-radius:6px;padding:8px;margin:8px 0}
.btn-group{display:inline-block;margin:4px;border:1px solid #bbb;border-radius:4px;padding:4px}
.dropdown-item{display:inline-block;margin:2px 6px;padding:4px 8px;background:#eef;border-radius:3px;cursor:pointer}
.menu{font-size:12px;color:#555} .box{border:1px solid #ccc;border-radius:6px;padding:10px;margin:8px 0}
.bar{height:14px;background:#eee}.bar>div{height:14px;background:#2490ef}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}
</style></head>
<body>
<h3>WhatsApp Session</h3>
<div id="forms"></div><div id="progress"></div><div id="msgs"></div><div id="dialogs"></div>
<script>
window.__calls = [];
function rec(name, args) { window.__calls.push({name: name, args: JSON.parse(JSON.stringify(args))}); }
window.__ = function (s, args) { return args ? String(s).replace(/\{(\d+)\}/g, function (m, i) { return String(args[i]); }) : String(s); };
var handlers = {};
var realFetch = window.fetch.bind(window);
window.fetch = function (url, init) {
  rec("fetch", [(init && init.method) || "GET", String(url), (init && init.headers && init.headers.Accept) || ""]);
  return realFetch(url, init);
};
function $wrap(el) {
  return { find: function (sel) { var els = Array.prototype.slice.call(el.querySelectorAll(sel));
    return { each: function (fn) { els.forEach(function (e) { fn.call(e); }); return this; }, length: els.length }; } };
}
window.frappe = {
  ui: {
    form: { on: function (doctype, h) { rec("form.on", [doctype]); (handlers[doctype] = handlers[doctype] || []).push(h); } },
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
    rec("call", [opts.method, opts.args || {}]);
    realFetch("/api/method/" + opts.method, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(opts.args || {}) })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (r) { if (r.ok) { opts.callback && opts.callback(r.body); } else if (opts.error) { opts.error(r.body); } })
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
    d.innerHTML = "<b></b><div></div>"; d.firstChild.textContent = (m && m.title) || "";
    d.lastChild.innerHTML = (m && m.message) || String(m);
    document.getElementById("msgs").appendChild(d);
  },
  confirm: function (msg, yes) { rec("confirm", [msg]); setTimeout(yes, 0); },
  show_alert: function (m) { rec("show_alert", [m]); }
};
window.makeForm = function (doc) {
  var root = document.createElement("div"); root.className = "form"; root.id = "form-" + doc.session_id;
  root.innerHTML = "<b></b><div class='inner-toolbar'></div><ul class='menu'></ul>";
  root.firstChild.textContent = doc.session_id + " (" + doc.status + ")";
  document.getElementById("forms").appendChild(root);
  var toolbar = root.querySelector(".inner-toolbar"), menu = root.querySelector(".menu");
  function groupEl(group, create) {
    var g = toolbar.querySelector('.btn-group[data-label="' + encodeURIComponent(group) + '"]');
    if (!g && create) {
      g = document.createElement("div"); g.className = "btn-group"; g.setAttribute("data-label", encodeURIComponent(group));
      g.innerHTML = "<span class='group-label'></span><div class='dropdown-menu'></div>";
      g.firstChild.textContent = group + ": "; toolbar.appendChild(g);
    }
    return g;
  }
  var frm = {
    doc: doc,
    page: { menu: $wrap(menu) },
    is_new: function () { return false; },
    reload_doc: function () { rec("reload_doc", [doc.session_id]); },
    call: function (method) { rec("frm.call", [doc.session_id, method]); return Promise.resolve({}); },
    add_custom_button: function (label, fn, group) {
      rec("add_custom_button", [doc.session_id, label, group || ""]);
      var menuLabel = group ? group + " > " + label : label;
      if (!menu.querySelector('[data-label="' + encodeURIComponent(menuLabel) + '"]')) {
        var li = document.createElement("li"), a = document.createElement("a");
        a.setAttribute("data-label", encodeURIComponent(menuLabel)); a.className = "menu-item"; a.textContent = menuLabel;
        a.onclick = fn; li.appendChild(a); menu.appendChild(li);
      }
      var g = groupEl(group || "", true).querySelector(".dropdown-menu");
      var existing = g.querySelector('.dropdown-item[data-label="' + encodeURIComponent(label) + '"]');
      if (existing) { rec("add_custom_button.kept_first", [doc.session_id, label]); return existing; }
      var item = document.createElement("a"); item.className = "dropdown-item";
      item.setAttribute("data-label", encodeURIComponent(label)); item.textContent = label; item.onclick = fn;
      g.appendChild(item);
      return item;
    },
    remove_custom_button: function (label, group) {
      rec("remove_custom_button", [doc.session_id, label, group || ""]);
      var g = groupEl(__(group || ""), false);
      if (!g) return;
      var item = g.querySelector('.dropdown-item[data-label="' + encodeURIComponent(__(label)) + '"]');
      if (item) item.remove();
      if (!g.querySelector(".dropdown-item")) g.remove();
    }
  };
  toolbar.innerHTML = ""; // refresh starts from no custom buttons
  (handlers["WhatsApp Session"] || []).forEach(function (h) { if (h.refresh) h.refresh(frm); });
  return frm;
};
</script>
<script>
// The WhatsApp app's form behaviour (its own form script, loaded first).
frappe.ui.form.on("WhatsApp Session", {
  refresh: function (frm) {
    if (frm.doc.is_connected && frm.doc.status === "Connected") {
      frm.add_custom_button(__("Sincronizar Ahora"), function () {
        frappe.confirm(__("¿Sincronizar todos los datos de esta sesión?"), function () {
          frm.call("sync_all_data").then(function () {
            frappe.msgprint(__("Sincronización iniciada en segundo plano"));
            setTimeout(function () { frm.reload_doc(); }, 3000);
          });
        });
      }, __("Acciones"));
    }
    frm.add_custom_button(__("Verificar Estado"), function () { frm.call("check_status"); }, __("Acciones"));
  }
});
</script>
KIT_SCRIPT
<script>
fetch("/sessions.json").then(function (r) { return r.json(); }).then(function (docs) {
  docs.forEach(function (d) { window.makeForm(d); });
  window.__ready = true;
});
</script>
</body></html>`

type env struct {
	sim        *sim.Server
	gateway    *gatewayUnderTest
	site       *fakeSite
	pageURL    string
	gatewayURL string
}

// setup starts the simulator, the stand-in site (the CRM, holding demo_session connected and
// support_desk disconnected, and a System Manager at the desk), a gateway that pushes what it syncs
// into the site, and the desk page, whose origin is the gateway's CORS origin.
func setup(t *testing.T) env {
	t.Helper()
	s, simURL, creds := startSim(t, sim.Options{Contacts: 60, Chats: 12, MessagesPerChat: 4, QRDelay: 300 * time.Millisecond})
	mux := http.NewServeMux()
	page := httptest.NewServer(mux)
	t.Cleanup(page.Close)
	gwSrv := httptest.NewUnstartedServer(nil)
	gatewayURL := "http://" + gwSrv.Listener.Addr().String()

	jwtSecret := "jwt-" + randHex(24)
	signing := "crm-signing-" + randHex(16)
	apiKey, apiSecret := "desk-"+randHex(6), randHex(16)
	site := startSite(t, siteConfig{
		Conf: map[string]any{
			"inboxhub_gateway_url": gatewayURL, "inboxhub_jwt_secret": jwtSecret, "inboxhub_jwt_issuer": jwtIssuer,
			"inboxhub_jwt_audience": jwtAudience, "inboxhub_signing_secret": signing,
		},
		Users: []siteUser{{Email: "admin@example.invalid", Roles: []string{"System Manager"}, APIKey: apiKey, APISecret: apiSecret}},
		Sessions: []siteSession{
			{SessionID: "demo_session", Name: "Demo", Status: "Connected"},
			{SessionID: "support_desk", Name: "Soporte", Status: "Disconnected"},
		},
	})
	g := startGatewayOn(t, gwSrv, simURL, creds, redisURL(t), map[string]string{
		"GATEWAY_JWT_HS256_SECRET": jwtSecret, "GATEWAY_JWT_ISSUER": jwtIssuer, "GATEWAY_JWT_AUDIENCE": jwtAudience,
		"GATEWAY_CORS_ORIGINS": page.URL, "CRM_SINK_URL": site.ingestURL(), "CRM_SIGNING_SECRET": signing,
	})

	target, _ := url.Parse(site.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	mux.HandleFunc("POST /api/method/", func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "token "+apiKey+":"+apiSecret) // the desk user's session
		proxy.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		kit := `<script src="/kit.js"></script>`
		if r.URL.Query().Get("kit") == "0" {
			kit = ""
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, strings.Replace(deskPage, "KIT_SCRIPT", kit, 1))
	})
	mux.HandleFunc("GET /kit.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, kitScript)
	})
	var docs []map[string]any // the session documents the desk opens, as the site holds them
	for _, sid := range []string{"demo_session", "support_desk"} {
		docs = append(docs, site.state(t, sid).Session)
	}
	mux.HandleFunc("GET /sessions.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(docs)
	})
	return env{sim: s, gateway: g, site: site, pageURL: page.URL + "/", gatewayURL: gatewayURL}
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

func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// syncItems is the selector of the "Sincronizar Ahora" items of a form's Acciones group.
func syncItems(session string) string {
	return `#form-` + session + ` .btn-group[data-label="Acciones"] .dropdown-item[data-label="Sincronizar%20Ahora"]`
}

// TestAppButtonAloneRunsTheAppsSync: without the kit, the desk page shows the app's one button,
// and clicking it runs the app's own sync (the document method sync_all_data). This is the
// behaviour the kit takes over; it shows the page's app script and Frappe's rules are in force.
func TestAppButtonAloneRunsTheAppsSync(t *testing.T) {
	t.Parallel()
	ctx, cancel := browser(t)
	defer cancel()
	e := setup(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.pageURL+"?kit=0"),
		chromedp.Poll[chromedp.Void](`window.__ready === true`, chromedp.WithPollingTimeout(30*time.Second)),
	); err != nil {
		t.Fatal(err)
	}
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('`+syncItems("demo_session")+`').length`))
	if err != nil || n != 1 {
		t.Fatalf("the app alone shows %d Sincronizar Ahora (%v), want 1", n, err)
	}
	// Frappe keeps the first button: a second one with the same label in the same group is dropped.
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const f = window.makeForm({session_id: "probe", status: "Connected", is_connected: 1, name: "probe"});
		let hit = "";
		f.add_custom_button("X", () => { hit = "first"; }, "G");
		f.add_custom_button("X", () => { hit = "second"; }, "G");
		document.querySelector('#form-probe .dropdown-item[data-label="X"]').click();
		return hit; })()`))
	if err != nil || kept != "first" {
		t.Fatalf("the desk page does not keep the first button: %q %v", kept, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(syncItems("demo_session"))),
		chromedp.Poll[chromedp.Void](`window.__calls.some(c => c.name === "frm.call" && c.args[1] === "sync_all_data")`,
			chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Fatalf("the app's button did not run sync_all_data: %v\n%s", err, dump(calls(t, ctx)))
	}
}

// TestSyncButtonRunsTheGatewaySync: with the app's form script first and the kit's second, a
// connected session has exactly one "Sincronizar Ahora" (and one menu entry), the app's other
// button still works, and clicking it runs the gateway's sync: progress over the job's event
// stream, final counts equal to the job's, the items in the site, and the app's sync_all_data
// never called.
func TestSyncButtonRunsTheGatewaySync(t *testing.T) {
	t.Parallel()
	ctx, cancel := browser(t)
	defer cancel()
	e := setup(t)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.pageURL),
		chromedp.Poll[chromedp.Void](`window.__ready === true`, chromedp.WithPollingTimeout(30*time.Second)),
	); err != nil {
		t.Fatal(err)
	}
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`({
		items: document.querySelectorAll('`+syncItems("demo_session")+`').length,
		labelled: Array.from(document.querySelectorAll('#form-demo_session .dropdown-item')).filter(a => a.textContent === "Sincronizar Ahora").length,
		menu: document.querySelectorAll('#form-demo_session .menu [data-label="Acciones%20%3E%20Sincronizar%20Ahora"]').length,
		other: document.querySelectorAll('#form-demo_session .dropdown-item[data-label="Verificar%20Estado"]').length,
		disconnected: document.querySelectorAll('`+syncItems("support_desk")+`').length,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if counts["items"] != 1 || counts["labelled"] != 1 || counts["menu"] != 1 || counts["other"] != 1 || counts["disconnected"] != 1 {
		t.Fatalf("buttons on the forms: %v (want one Sincronizar Ahora per form, one menu entry, the app's Verificar Estado)\n%s",
			counts, dump(calls(t, ctx)))
	}
	screenshot(t, ctx, "frappe-buttons-demo_session.png")

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(syncItems("demo_session"))),
		chromedp.Poll[chromedp.Void](`window.__calls.some(c => c.name === "msgprint")`, chromedp.WithPollingTimeout(90*time.Second)),
	); err != nil {
		t.Fatalf("no final message: %v\n%s", err, dump(calls(t, ctx)))
	}
	screenshot(t, ctx, "frappe-sync-demo_session.png")
	cs := calls(t, ctx)
	var progress, streams, polls, syncs int
	var final struct{ Title, Message, Indicator string }
	for _, c := range cs {
		switch c.Name {
		case "fetch":
			u, accept := str(c.Args[1]), str(c.Args[2])
			switch {
			case strings.HasSuffix(u, "/events") && accept == "text/event-stream":
				streams++
			case strings.Contains(u, "/v1/sync-jobs/"):
				polls++
			case str(c.Args[0]) == "POST" && strings.HasSuffix(u, "/v1/sessions/demo_session/sync"):
				syncs++
			}
		case "show_progress":
			progress++
		case "msgprint":
			_ = json.Unmarshal(c.Args[0], &final)
		case "frm.call":
			t.Errorf("the app's document method ran: %s", c.Args[1])
		case "call":
			if m := str(c.Args[0]); m != "inboxhub_gateway.api.gateway_token" {
				t.Errorf("frappe.call of %s", m)
			}
		}
	}
	if syncs != 1 || progress < 2 || streams != 1 || polls != 0 {
		t.Errorf("%d sync starts, %d progress updates, %d event streams, %d polls; want 1, >= 2, 1, 0\n%s",
			syncs, progress, streams, polls, dump(cs))
	}
	if final.Title != "Sincronización completada" || final.Indicator != "green" {
		t.Errorf("final message %q (%s)\n%s", final.Title, final.Indicator, final.Message)
	}

	// The counts shown are the job's, and the items reached the site's doctypes.
	var jobs struct{ Data []syncJob }
	if code := e.gateway.call(t, http.MethodGet, "/v1/sessions/demo_session/sync-jobs", nil, &jobs); code != 200 || len(jobs.Data) != 1 {
		t.Fatalf("jobs of demo_session: %d %+v", code, jobs)
	}
	job := jobs.Data[0]
	labels := map[string]string{"contacts": "Contactos", "chats": "Chats", "messages": "Mensajes"}
	for res, p := range job.Progress {
		row := fmt.Sprintf("<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>",
			labels[res], p.Fetched, p.New, p.Changed, p.Unchanged, p.Delivered, p.Failed)
		if !strings.Contains(final.Message, row) {
			t.Errorf("final message lacks the row %s\n%s", row, final.Message)
		}
	}
	st := e.site.state(t, "demo_session")
	if st.Counts.Contacts != job.Progress["contacts"].Delivered || st.Counts.Conversations != job.Progress["chats"].Delivered ||
		st.Counts.Messages != job.Progress["messages"].Delivered || st.Counts.Contacts != 60 {
		t.Errorf("site rows %+v after a job delivering %+v", st.Counts, job.Progress)
	}

	// The app's other button still runs the app's method.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#form-demo_session .dropdown-item[data-label="Verificar%20Estado"]`)),
		chromedp.Poll[chromedp.Void](`window.__calls.some(c => c.name === "frm.call" && c.args[1] === "check_status")`,
			chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Errorf("the app's Verificar Estado did not run: %v", err)
	}
	// The menu entry runs the gateway's sync too (a second job, nothing new to deliver).
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#form-demo_session .menu [data-label="Acciones%20%3E%20Sincronizar%20Ahora"]`)),
		chromedp.Poll[chromedp.Void](`window.__calls.filter(c => c.name === "msgprint").length === 2`, chromedp.WithPollingTimeout(60*time.Second)),
	); err != nil {
		t.Fatalf("the menu entry: %v\n%s", err, dump(calls(t, ctx)))
	}
	for _, c := range calls(t, ctx) {
		if c.Name == "frm.call" && str(c.Args[1]) == "sync_all_data" {
			t.Error("the menu entry ran the app's sync_all_data")
		}
	}
}

// TestReconnectShowsQR: on the disconnected support_desk the sync answers 409
// SESSION_NOT_CONNECTED; the script offers to reconnect (frappe.confirm, accepted by the page),
// connects and shows the QR image as a PNG with its countdown; once the simulator's QR is scanned
// the dialog closes and the session is reported connected.
func TestReconnectShowsQR(t *testing.T) {
	t.Parallel()
	ctx, cancel := browser(t)
	defer cancel()
	e := setup(t)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.pageURL),
		chromedp.Poll[chromedp.Void](`window.__ready === true`, chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Click(chromedp.CSS(syncItems("support_desk"))),
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
			if !strings.Contains(str(c.Args[0]), "no está conectada") {
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
