// Operator console of the Inbox Hub gateway. Plain JavaScript, no framework: every text from the
// API is put in the page as text nodes (never parsed as HTML), the credential lives in
// sessionStorage only and is sent in a header, never in a URL.
"use strict";
(function () {
  const STORE = "gateway.console.credential";
  const RESOURCES = ["contacts", "chats", "messages"];
  const FINAL = new Set(["succeeded", "partial", "failed", "canceled"]);
  const $ = (id) => document.getElementById(id);

  // el builds an element with attributes and children (strings become text nodes).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c == null) continue;
      e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function badge(value) {
    const v = String(value || "unknown");
    return el("span", { class: "badge badge-" + v.replace(/[^a-z_]/g, "") }, v);
  }

  // --- credential -------------------------------------------------------------------------
  function credential() {
    try { return sessionStorage.getItem(STORE) || ""; } catch (e) { return ""; }
  }
  function isJWT(s) {
    return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(s) && s.startsWith("eyJ");
  }
  function authHeaders() {
    const c = credential();
    if (!c) return {};
    return isJWT(c) ? { Authorization: "Bearer " + c } : { "X-API-Key": c };
  }
  function showAuthMode() {
    const c = credential();
    $("auth-mode").textContent = !c ? "no credential" : isJWT(c) ? "using a JWT (Bearer)" : "using an API key";
  }

  // --- API calls --------------------------------------------------------------------------
  class Problem extends Error {
    constructor(p) {
      super(p.detail || p.title || "request failed");
      this.status = p.status; this.code = p.code || "HTTP_" + p.status;
      this.detail = p.detail || p.title || ""; this.requestId = p.requestId || "";
      this.retryAfter = p.retryAfter || 0; this.errors = p.errors || [];
    }
  }

  async function problemOf(resp) {
    let p = { status: resp.status };
    try {
      const ct = resp.headers.get("Content-Type") || "";
      if (ct.includes("json")) p = Object.assign(p, await resp.json());
      else p.detail = (await resp.text()).slice(0, 300);
    } catch (e) { /* keep the status */ }
    if (!p.retryAfter) p.retryAfter = parseInt(resp.headers.get("Retry-After") || "0", 10) || 0;
    return new Problem(p);
  }

  // call sends a request with the credential; it resolves to the Response for 2xx and throws a
  // Problem otherwise.
  async function call(method, path, opts) {
    opts = opts || {};
    const headers = Object.assign({}, authHeaders(), opts.headers || {});
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: opts.body, cache: "no-store",
        credentials: "omit", referrerPolicy: "no-referrer", signal: opts.signal });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Problem({ status: 0, code: "NETWORK", detail: "The gateway could not be reached: " + e.message });
    }
    if (!resp.ok) throw await problemOf(resp);
    return resp;
  }
  async function getJSON(path) { return (await call("GET", path, { headers: { Accept: "application/json" } })).json(); }

  function showError(err) {
    if (err && err.name === "AbortError") return;
    const p = err instanceof Problem ? err : new Problem({ status: 0, code: "ERROR", detail: String(err && err.message || err) });
    $("error-code").textContent = p.code + (p.status ? " (" + p.status + ")" : "");
    let detail = p.detail;
    if (p.errors.length) detail += " " + p.errors.map((f) => f.field + ": " + f.message).join("; ");
    if (p.retryAfter) detail += " Retry after " + p.retryAfter + " s.";
    $("error-detail").textContent = detail;
    $("error-request").textContent = p.requestId ? "request " + p.requestId : "";
    $("error").hidden = false;
  }
  function clearError() { $("error").hidden = true; }

  // --- status panel (/readyz, /v1/admin/status) ----------------------------------------------
  // The public /readyz says only whether this replica takes requests; the checks behind it (Redis,
  // the upstream token, the breaker) are read with the credential, and need the admin scope.
  const CHECK_NAMES = { redis: "Redis", upstream_token: "Upstream token", upstream_breaker: "Circuit breaker" };
  async function loadStatus() {
    const body = $("status-body");
    let state;
    try {
      const resp = await fetch("/readyz", { cache: "no-store", credentials: "omit" });
      state = (await resp.json()).status;
    } catch (e) {
      body.replaceChildren(el("span", { class: "badge badge-fail" }, "unreachable"));
      return;
    }
    const head = el("p", {}, "Gateway ", badge(state || "fail"));
    if (!credential()) {
      body.replaceChildren(head, el("p", { class: "muted" }, "Enter a key with the admin scope to see Redis, the upstream token and the circuit breaker."));
      return;
    }
    let report;
    try {
      report = (await getJSON("/v1/admin/status")).data;
    } catch (e) {
      const why = e instanceof Problem && e.status === 403
        ? "The details (Redis, upstream token, circuit breaker) need a key with the admin scope."
        : "The details could not be read: " + (e.detail || e.message);
      body.replaceChildren(head, el("p", { class: "muted", "data-status": "no-details" }, why));
      return;
    }
    if (report.status !== state) head.append(" ", badge(report.status));
    const checks = el("div", { class: "checks" });
    for (const name of Object.keys(report.checks || {}).sort()) {
      const c = report.checks[name];
      const dl = el("dl");
      const d = c.detail || {};
      for (const k of Object.keys(d).sort()) {
        let v = d[k];
        if (k === "secondsLeft") v = v + " s (" + Math.floor(v / 60) + " min)";
        dl.append(el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v)));
      }
      if (c.error) dl.append(el("dt", {}, "error"), el("dd", {}, c.error));
      checks.append(el("div", { class: "check", "data-check": name },
        el("strong", {}, CHECK_NAMES[name] || name), " ", badge(c.ok ? "ok" : "fail"), dl));
    }
    body.replaceChildren(head, checks);
  }

  // --- sessions ---------------------------------------------------------------------------
  function actionButton(label, action, sid, handler) {
    const b = el("button", { type: "button", class: action === "jobs" ? "secondary" : "", "data-action": action, "data-session": sid }, label);
    b.addEventListener("click", () => { clearError(); handler(sid); });
    return b;
  }

  async function loadSessions() {
    if (!credential()) {
      $("sessions").hidden = true;
      $("sessions-note").textContent = "Enter a key to list the sessions.";
      $("sessions-note").hidden = false;
      return;
    }
    let ans;
    try { ans = await getJSON("/v1/sessions"); } catch (e) { showError(e); return; }
    const rows = (ans.data || []).map((s) => el("tr", { "data-session": s.sessionId },
      el("td", {}, el("code", {}, s.sessionId)),
      el("td", {}, s.name || ""),
      el("td", {}, s.phoneNumber || ""),
      el("td", { class: "status" }, badge(s.status)),
      el("td", { class: "actions" },
        actionButton("Connect", "connect", s.sessionId, startConnect),
        actionButton("Sync now", "sync", s.sessionId, startSync),
        actionButton("Jobs", "jobs", s.sessionId, loadJobs))));
    $("sessions").tBodies[0].replaceChildren(...rows);
    $("sessions").hidden = false;
    const cache = ans.meta && ans.meta.cache;
    $("sessions-note").textContent = (ans.data || []).length + " sessions" + (cache ? " · cache " + cache.status + ", " + cache.ageSeconds + " s old" : "");
    $("sessions-note").hidden = false;
  }

  function setRowStatus(sid, status) {
    const row = document.querySelector('#sessions tr[data-session="' + CSS.escape(sid) + '"] td.status');
    if (row) row.replaceChildren(badge(status));
  }

  // --- connect and QR ---------------------------------------------------------------------
  let connectRun = null; // { sid, stop, timer, countdown, expiresAt }

  function stopConnect() {
    if (!connectRun) return;
    connectRun.stopped = true;
    clearTimeout(connectRun.timer);
    clearInterval(connectRun.countdown);
    connectRun = null;
  }

  function blobToDataURL(blob) {
    // The CSP allows images from 'self' and data: only, so the PNG is shown as a data: URL.
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(r.result);
      r.onerror = () => reject(r.error);
      r.readAsDataURL(blob);
    });
  }

  async function startConnect(sid) {
    stopConnect();
    const run = { sid, expiresAt: 0, stopped: false };
    connectRun = run;
    $("qr-panel").hidden = false;
    $("qr-session").textContent = sid;
    $("qr-img").hidden = true;
    $("qr-img").removeAttribute("src");
    $("qr-countdown").textContent = "";
    $("qr-message").textContent = "Starting the connection…";
    try {
      const ans = await (await call("POST", "/v1/sessions/" + encodeURIComponent(sid) + "/connect")).json();
      setRowStatus(sid, ans.data.status);
    } catch (e) {
      if (e instanceof Problem && e.code === "SESSION_ALREADY_CONNECTED") {
        $("qr-message").textContent = "The session is already connected.";
        setRowStatus(sid, "connected");
        stopConnect();
        return;
      }
      showError(e);
      $("qr-message").textContent = "The connection could not be started.";
      stopConnect();
      return;
    }
    run.countdown = setInterval(() => {
      if (!run.expiresAt) { $("qr-countdown").textContent = ""; return; }
      const left = Math.max(0, Math.round((run.expiresAt - Date.now()) / 1000));
      $("qr-countdown").textContent = left > 0 ? "Expires in " + left + " s" : "Expired; a new QR code is on its way…";
    }, 1000);
    pollConnect(run);
  }

  async function pollConnect(run) {
    if (run.stopped) return;
    const base = "/v1/sessions/" + encodeURIComponent(run.sid);
    let next = 2000;
    try {
      const st = (await getJSON(base)).data;
      if (run.stopped) return;
      setRowStatus(run.sid, st.status);
      if (st.status === "connected") {
        $("qr-message").textContent = "Connected.";
        $("qr-img").hidden = true;
        $("qr-countdown").textContent = "";
        stopConnect(); // the list is not reloaded: its cached copy may not show the change yet
        return;
      }
      if (!run.expiresAt || run.expiresAt - Date.now() < 1000) await refreshQR(run, base);
    } catch (e) {
      if (e instanceof Problem && e.code === "QR_NOT_READY") {
        $("qr-message").textContent = e.detail;
        next = Math.max(1000, (e.retryAfter || 2) * 1000);
      } else {
        showError(e);
        next = Math.max(2000, (e.retryAfter || 0) * 1000);
      }
    }
    if (!run.stopped) run.timer = setTimeout(() => pollConnect(run), next);
  }

  async function refreshQR(run, base) {
    const meta = (await getJSON(base + "/qr")).data;
    const blob = await (await call("GET", base + "/qr", { headers: { Accept: "image/png" } })).blob();
    const url = await blobToDataURL(blob);
    if (run.stopped) return;
    run.expiresAt = meta.expiresAt ? Date.parse(meta.expiresAt) : Date.now() + 20000;
    const img = $("qr-img");
    img.src = url;
    img.hidden = false;
    $("qr-message").textContent = "Scan this code with WhatsApp on the phone (Settings › Linked devices › Link a device).";
  }

  // --- sync now ---------------------------------------------------------------------------
  let syncRun = null; // { abort: AbortController, stopped }

  function renderJob(job) {
    $("sync-job").textContent = job.id;
    $("sync-state").replaceChildren(document.createTextNode(job.state));
    $("sync-state").className = "badge badge-" + String(job.state).replace(/[^a-z_]/g, "");
    const rows = [];
    const errors = [];
    if (job.error) errors.push(job.error);
    for (const res of job.resources && job.resources.length ? job.resources : RESOURCES) {
      const p = (job.progress || {})[res];
      if (!p) continue;
      const bar = el("progress", { max: 1 });
      if (p.phase === "pending") bar.value = 0;
      else if (p.phase !== "running") bar.value = 1;
      else if (res === "messages" && p.chats > 0) { bar.max = p.chats; bar.value = p.chatsDone; }
      else bar.removeAttribute("value"); // indeterminate: the upstream gives no totals
      let text = p.phase + " · pages " + p.pages + " · fetched " + p.fetched + " · new " + p.new +
        " · changed " + p.changed + " · unchanged " + p.unchanged + " · delivered " + p.delivered + " · failed " + p.failed;
      if (res === "messages" && p.chats) text += " · chats " + p.chatsDone + "/" + p.chats;
      rows.push(el("div", { class: "progress-row", "data-resource": res },
        el("strong", {}, res), bar, el("span", { class: "counts" }, text)));
      for (const e of p.errors || []) errors.push(res + ": " + e);
    }
    $("sync-progress").replaceChildren(...rows);
    $("sync-errors").replaceChildren(...errors.map((e) => el("li", {}, e)));
  }

  async function startSync(sid) {
    if (syncRun) { syncRun.stopped = true; syncRun.abort.abort(); }
    const run = { sid, abort: new AbortController(), stopped: false };
    syncRun = run;
    let job;
    try {
      const resp = await call("POST", "/v1/sessions/" + encodeURIComponent(sid) + "/sync",
        { headers: { "Content-Type": "application/json" }, body: "{}" });
      job = (await resp.json()).data;
    } catch (e) {
      showError(e);
      if (e instanceof Problem && e.code === "SESSION_NOT_CONNECTED") {
        $("error-detail").textContent += " Use Connect on this session, then scan the QR code.";
      }
      return;
    }
    $("sync-panel").hidden = false;
    $("sync-session").textContent = sid;
    $("sync-panel").dataset.transport = "";
    renderJob(job);
    if (!FINAL.has(job.state)) {
      let done = false;
      try {
        $("sync-panel").dataset.transport = "sse";
        // A replica that shuts down ends the stream with "reconnect": the job goes on, and the
        // next stream comes from another replica.
        for (let tries = 0; tries < 5 && !run.stopped; tries++) {
          $("sync-transport").textContent = "live (server-sent events)";
          const r = await followEvents(run, job.id);
          if (r !== "reconnect") { done = r; break; }
          $("sync-transport").textContent = "reconnecting…";
          await new Promise((res) => setTimeout(res, 1000));
        }
      } catch (e) {
        if (run.stopped) return;
      }
      if (!done && !run.stopped) {
        $("sync-transport").textContent = "polling";
        $("sync-panel").dataset.transport = "poll";
        await pollJob(run, job.id);
      }
    }
    if (!run.stopped) {
      $("sync-transport").textContent = "";
      loadJobs(sid);
    }
  }

  // followEvents reads the job's event stream with fetch (EventSource cannot send the credential
  // header) and reports whether it saw the job end, or "reconnect" when the server asked for it.
  async function followEvents(run, id) {
    const resp = await call("GET", "/v1/sync-jobs/" + encodeURIComponent(id) + "/events",
      { headers: { Accept: "text/event-stream" }, signal: run.abort.signal });
    if (!resp.body || !resp.body.getReader) return false;
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line === "" || line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          let v = i < 0 ? "" : line.slice(i + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "event") name = v;
          else if (field === "data") data.push(v);
        }
        if (!data.length) continue;
        if (name === "error") return false;
        if (name === "reconnect") return "reconnect";
        let job;
        try { job = JSON.parse(data.join("\n")); } catch (e) { continue; }
        if (run.stopped) return true;
        renderJob(job);
        if (name === "done" || FINAL.has(job.state)) {
          run.abort.abort();
          return true;
        }
      }
    }
  }

  async function pollJob(run, id) {
    for (;;) {
      if (run.stopped) return;
      let job;
      try {
        job = (await getJSON("/v1/sync-jobs/" + encodeURIComponent(id))).data;
      } catch (e) {
        showError(e);
        await new Promise((r) => setTimeout(r, Math.max(2000, (e.retryAfter || 0) * 1000)));
        continue;
      }
      if (run.stopped) return;
      renderJob(job);
      if (FINAL.has(job.state)) return;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  // --- recent jobs ------------------------------------------------------------------------
  function countsCell(p) {
    if (!p) return el("td", {}, "—");
    return el("td", {}, p.delivered + " delivered / " + p.fetched + " fetched" + (p.failed ? ", " + p.failed + " failed" : ""));
  }

  async function loadJobs(sid) {
    let ans;
    try { ans = await getJSON("/v1/sessions/" + encodeURIComponent(sid) + "/sync-jobs?limit=10"); } catch (e) { showError(e); return; }
    $("jobs-panel").hidden = false;
    $("jobs-session").textContent = sid;
    const rows = (ans.data || []).map((j) => {
      const errs = [];
      if (j.error) errs.push(j.error);
      for (const r of RESOURCES) for (const e of ((j.progress || {})[r] || {}).errors || []) errs.push(r + ": " + e);
      const p = j.progress || {};
      return el("tr", { "data-job": j.id },
        el("td", {}, new Date(j.createdAt).toLocaleString()),
        el("td", {}, badge(j.state)),
        el("td", {}, j.trigger || ""),
        countsCell(p.contacts), countsCell(p.chats), countsCell(p.messages),
        errs.length ? el("td", { class: "errors" }, el("ul", {}, ...errs.map((e) => el("li", {}, e)))) : el("td", { class: "muted" }, "none"));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No sync jobs yet.")));
    $("jobs").tBodies[0].replaceChildren(...rows);
  }

  // --- wiring -----------------------------------------------------------------------------
  function useKey() {
    const v = $("key").value.trim();
    $("key").value = "";
    try {
      if (v) sessionStorage.setItem(STORE, v); else sessionStorage.removeItem(STORE);
    } catch (e) { showError(e); }
    clearError();
    showAuthMode();
    loadSessions();
    loadStatus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("save-key").addEventListener("click", useKey);
    $("key").addEventListener("keydown", (e) => { if (e.key === "Enter") useKey(); });
    $("forget-key").addEventListener("click", () => {
      try { sessionStorage.removeItem(STORE); } catch (e) { /* nothing stored */ }
      stopConnect();
      showAuthMode();
      loadSessions();
      loadStatus();
    });
    $("error-close").addEventListener("click", clearError);
    $("refresh-status").addEventListener("click", loadStatus);
    $("refresh-sessions").addEventListener("click", () => { clearError(); loadSessions(); });
    $("qr-stop").addEventListener("click", () => { stopConnect(); $("qr-panel").hidden = true; });
    showAuthMode();
    loadStatus();
    loadSessions();
    setInterval(loadStatus, 15000);
  });
})();
