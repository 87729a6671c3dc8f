"""A stand-in Frappe site over HTTP, for the Go tests: the kit's whitelisted methods served as
Frappe serves them (frappe/app.py), over the stand-in's enforcing database, on 127.0.0.1 only.

    FAKE_SITE_CONFIG='{"conf": {...site_config...}, "time_zone": "Europe/Madrid",
                       "users": [{"email", "roles", "user_type", "api_key", "api_secret"}],
                       "sessions": [{"session_id", "session_name", "status", "assigned": [[user, role]]}],
                       "control_token": "<random>"}' python3 fake_site.py

It prints "ready http://127.0.0.1:<port>" once listening. Besides /api/method/*, the test drives it
through /_fake/* (only with X-Fake-Control: <control_token>):

- POST /_fake/app_sync {"session_id", "upstream_url", "api_key"}: the app's own first-page sync
  of that session (app_sync.py), half the phone ids spelled @c.us as older upstreams did;
- POST /_fake/phase {"name"}: later ingest answers are counted under that name;
- GET /_fake/state?session_id=...: the session row, row counts, duplicates by natural key, the
  names of rows, the ingest counts per phase and any refused request.
"""

import json
import os
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import kit  # noqa: F401  (puts the stand-in and the app on sys.path)

import app_sync  # noqa: E402
import frappe  # noqa: E402
from frappe import app, testing  # noqa: E402

from inboxhub_gateway import mapping  # noqa: E402

LOCK = threading.Lock()
STATS = {"phase": "default", "phases": {}, "failures": []}
SESSIONS = {}  # session_id -> document name
CONTROL = ""


def spell(jid):
    """Half of the phone ids in the @c.us spelling of older upstreams (a stable half)."""
    return app_sync.to_cus(jid) if zlib.crc32(jid.encode()) % 2 == 0 else jid


def setup(cfg):
    global CONTROL
    CONTROL = cfg["control_token"]
    testing.new_site(time_zone=cfg.get("time_zone") or "Europe/Madrid", conf=cfg.get("conf") or {})
    for u in cfg.get("users") or []:
        testing.add_user(u["email"], u.get("roles") or [], user_type=u.get("user_type") or "System User",
                         api_key=u.get("api_key"), api_secret=u.get("api_secret"))
    for s in cfg.get("sessions") or []:
        SESSIONS[s["session_id"]] = testing.add_session(
            s["session_id"], s.get("session_name"), status=s.get("status") or "Connected",
            assigned=[tuple(a) for a in s.get("assigned") or []])


def record(path, status, body):
    if path.endswith("inboxhub_gateway.api.ingest"):
        answer = json.loads(body)
        if status == 200 and answer["message"].get("kind") == "batch":
            msg = answer["message"]
            phase = STATS["phases"].setdefault(STATS["phase"], {})
            counts = phase.setdefault(msg["resource"], {})
            for k, v in msg["counts"].items():
                counts[k] = counts.get(k, 0) + v
            counts["batches"] = counts.get("batches", 0) + 1
    if status >= 500:
        STATS["failures"].append({"path": path, "status": status, "traceback": app.last_traceback[-2000:]})


def state(session_id):
    name = SESSIONS.get(session_id)
    frappe.set_user("Administrator")
    try:
        session = frappe.get_doc("WhatsApp Session", name).as_dict() if name else None
    finally:
        frappe.set_user("Guest")
    contacts = frappe.get_all("WhatsApp Contact", filters={"session": name}, fields=["name", "contact_id"], order_by="creation asc")
    convs = frappe.get_all("WhatsApp Conversation", filters={"session": name}, fields=["name", "chat_id"], order_by="creation asc")
    msgs = frappe.get_all("WhatsApp Message", filters={"session": name}, fields=["name", "message_id", "conversation"], order_by="creation asc")
    logs = frappe.get_all("WhatsApp Webhook Log", filters={"session": name}, fields=["name", "event_type", "status", "webhook_id"],
                          order_by="creation asc")

    def dupes(keys):
        seen = {}
        for k in keys:
            seen[k] = seen.get(k, 0) + 1
        return sum(1 for n in seen.values() if n > 1)

    return {
        "session": session,
        "counts": {"contacts": len(contacts), "conversations": len(convs), "messages": len(msgs), "logs": len(logs)},
        "duplicates": {
            "contacts": dupes((mapping.id_forms(c["contact_id"]) or [""])[0].lower() for c in contacts),
            "conversations": dupes((mapping.id_forms(c["chat_id"]) or [""])[0].lower() for c in convs),
            "messages": dupes((m["message_id"] or "").lower() for m in msgs),
        },
        "names": {"contacts": [c["name"] for c in contacts], "conversations": [c["name"] for c in convs],
                  "messages": [m["name"] for m in msgs]},
        "logs": logs,
        "ingest": STATS["phases"],
        "failures": STATS["failures"],
        "errors": [e["title"] for e in frappe.error_log],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _serve(self, method):
        url = urlsplit(self.path)
        body = self._body()
        with LOCK:
            if url.path.startswith("/_fake/"):
                if not CONTROL or self.headers.get("X-Fake-Control") != CONTROL:
                    return self._answer(403, b"{}")
                return self._control(method, url, body)
            status, out = app.handle(method, url.path, list(self.headers.items()), body, url.query)
            record(url.path, status, out)
        return self._answer(status, out)

    def _control(self, method, url, body):
        args = json.loads(body) if body else {}
        if method == "POST" and url.path == "/_fake/app_sync":
            contacts, chats, messages = app_sync.read_upstream(args["upstream_url"], args["api_key"], args["session_id"])
            frappe.set_user("Administrator")
            try:
                created = app_sync.sync_first_page(SESSIONS[args["session_id"]], contacts, chats, messages, spell=spell)
                frappe.db.commit()
            finally:
                frappe.set_user("Guest")
            return self._answer(200, json.dumps(created).encode())
        if method == "POST" and url.path == "/_fake/phase":
            STATS["phase"] = args["name"]
            return self._answer(200, b"{}")
        if method == "GET" and url.path == "/_fake/state":
            sid = parse_qs(url.query).get("session_id", [""])[0]
            return self._answer(200, json.dumps(state(sid), default=str).encode())
        return self._answer(404, b"{}")

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")


def main():
    setup(json.loads(os.environ["FAKE_SITE_CONFIG"]))
    srv = HTTPServer(("127.0.0.1", 0), Handler)
    print("ready http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
