"""Helpers of the kit's tests: a stand-in site with the kit importable, signed deliveries sent
through the stand-in's HTTP handling (as the gateway sends them), and items in the gateway's
schema (the sync's contact, chat and message items)."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APP_ROOT = os.path.join(os.path.dirname(HERE), "inboxhub_gateway")  # the Frappe app (bench get-app)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if APP_ROOT not in sys.path:
    sys.path.insert(0, APP_ROOT)

import frappe  # noqa: E402  (the stand-in, from this folder)
from frappe import app, testing  # noqa: E402

from inboxhub_gateway import security  # noqa: E402

SIGNING_SECRET = "crm-signing-secret-for-tests-" + os.urandom(8).hex()
JWT_SECRET = "jwt-hs256-secret-for-tests-" + os.urandom(16).hex()
INGEST = "/api/method/inboxhub_gateway.api.ingest"
TOKEN = "/api/method/inboxhub_gateway.api.gateway_token"


def new_site(time_zone="Europe/Madrid", **conf):
    base = {"inboxhub_signing_secret": SIGNING_SECRET, "inboxhub_jwt_secret": JWT_SECRET,
            "inboxhub_gateway_url": "https://gateway.example.invalid/"}
    base.update(conf)
    return testing.new_site(time_zone=time_zone, conf=base)


def deliver(doc, secret=SIGNING_SECRET, now=None, headers=None, raw=None):
    """POST a batch or an event to the kit's ingest, signed as the gateway signs; returns
    (status, answer)."""
    body = raw if raw is not None else json.dumps(doc, ensure_ascii=False).encode("utf-8")
    ts = str(int(time.time() if now is None else now))
    h = {"Content-Type": "application/json", security.HEADER_TIMESTAMP: ts,
         security.HEADER_SIGNATURE: security.sign(secret, ts, body), security.HEADER_DELIVERY: "job/contacts/0"}
    if headers is not None:
        h = headers
    status, out = app.handle("POST", INGEST, h, body)
    return status, json.loads(out)


def batch(resource, items, session_id="demo_session", offset=0):
    return {"jobId": "job-1", "sessionId": session_id, "resource": resource, "offset": offset, "items": items}


def contact(number, name="", push="", kind="phone", verified="", is_wa=True):
    jid = {"phone": "%s@s.whatsapp.net", "lid": "%s@lid", "group": "%s@g.us"}[kind] % number
    item = {"id": jid, "idKind": kind, "type": "group" if kind == "group" else "person", "name": name,
            "pushName": push, "verifiedName": verified, "imageUrl": "", "isWhatsApp": is_wa}
    if kind == "phone":
        item["phone"] = number
    return item


def chat(number, name="", kind="phone", unread=0, count=0, last_at=None, last_text="", last_from_me=False):
    jid = {"phone": "%s@s.whatsapp.net", "lid": "%s@lid", "group": "%s@g.us"}[kind] % number
    item = {"id": jid, "idKind": kind, "type": "group" if kind == "group" else "individual", "name": name,
            "unreadCount": unread, "messageCount": count}
    if kind == "phone":
        item["phone"] = number
    if last_at:
        item["lastMessageAt"] = last_at
        item["lastMessage"] = {"text": last_text, "at": last_at, "fromMe": last_from_me}
    return item


def message(mid, chat_number, from_me=False, text="hola", mtype="text", status=None, ts="2025-11-07T11:58:00Z",
            own="34699000000", kind="phone", sender=None, upstream_id=None):
    chat_jid = ("%s@g.us" if kind == "group" else "%s@s.whatsapp.net") % chat_number
    other = sender or chat_jid
    frm, to = ("%s@s.whatsapp.net" % own, chat_jid) if from_me else (other, "%s@s.whatsapp.net" % own)
    item = {"id": mid, "chatId": chat_jid, "chatType": "group" if kind == "group" else "individual", "from": frm,
            "to": to, "fromMe": from_me, "type": mtype, "text": text,
            "status": status or ("sent" if from_me else "received"), "isRead": True}
    if upstream_id:
        item["upstreamId"] = upstream_id
    if frm.endswith("@s.whatsapp.net"):
        item["fromPhone"] = frm.split("@")[0]
    if ts:
        item["timestamp"] = ts
    if mtype != "text":
        item["media"] = {"kind": mtype}
    return item


def event(eid, etype, data, session_id="demo_session", occurred="2025-11-07T12:00:00Z", source="webhook"):
    return {"id": eid, "type": etype, "sessionId": session_id, "occurredAt": occurred, "source": source, "data": data}


def as_admin(fn, *args, **kwargs):
    frappe.set_user("Administrator")
    try:
        return fn(*args, **kwargs)
    finally:
        frappe.set_user("Guest")


def rows(doctype, filters=None, fields=("name",), order_by="creation asc"):
    return frappe.get_all(doctype, filters=filters, fields=list(fields), order_by=order_by)


def app_row(doctype, values):
    """A row as the WhatsApp app's own code writes it (validated, committed)."""
    doc = as_admin(lambda: frappe.get_doc(dict(values, doctype=doctype)).insert())
    frappe.db.commit()
    return doc.name
