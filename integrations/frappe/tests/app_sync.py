"""The WhatsApp app's own sync, as it writes rows, to seed a site the way real sites look before
the kit is installed.

The app reads the upstream directly, first page only, and keys its rows by the upstream's raw
values: a contact's contact_id is the upstream id as given (older upstream versions answer
``<digits>@c.us``), looked up by (session, phone_number) with phone_number the upstream phone or
the id; a conversation is (session, chat_id) with chat_id as given; a message is
(session, message_id) with message_id the whatsappMessageId, else the upstream id; direction is
Outgoing when fromMe; status is mapped from the upstream's lower-case words (received counts as
Delivered, anything unknown as Pending); message_type is the upstream type as given. The app keeps
times as the upstream gives them, without converting them to the site's time zone.

``spell`` rewrites ids the way an upstream version spelled them (``to_cus`` for @c.us).
"""

import datetime
import json
import urllib.parse
import urllib.request

import frappe

APP_STATUS = {"sent": "Sent", "delivered": "Delivered", "read": "Read", "failed": "Failed", "received": "Delivered"}


def to_cus(jid):
    return jid.replace("@s.whatsapp.net", "@c.us") if jid else jid


def _time(value):
    """The upstream's time (ISO string or Unix seconds) as the app stores it: naive, unconverted."""
    if value in (None, ""):
        return frappe.utils.now()
    if isinstance(value, (int, float)) or str(value).isdigit():
        return datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return str(value).replace("T", " ").replace("Z", "")[:19]


def _insert(doctype, values):
    doc = frappe.get_doc(dict(values, doctype=doctype))
    doc.insert(ignore_permissions=True)
    return doc.name


def sync_first_page(session, contacts, chats, messages_by_chat, spell=lambda jid: jid):
    """Write rows as the app's sync does; returns the names it created per doctype."""
    created = {"contacts": [], "conversations": [], "messages": [], "cus": {"contacts": 0, "conversations": 0}}
    for c in contacts:
        cid = spell(c["id"])
        phone = c.get("phone") or cid
        if frappe.db.get_value("WhatsApp Contact", {"session": session, "phone_number": phone}, "name"):
            continue
        created["cus"]["contacts"] += cid.endswith("@c.us")
        created["contacts"].append(_insert("WhatsApp Contact", {
            "contact_id": cid, "session": session, "phone_number": phone,
            "contact_name": (c.get("name") or c.get("notify") or "")[:140], "pushname": (c.get("notify") or "")[:140],
            "is_group": 1 if c.get("isGroup") else 0, "sync_status": "Synced",
        }))
    conversations = {}
    for ch in chats:
        chat_id = spell(ch.get("chatId") or ch.get("id"))
        name = frappe.db.get_value("WhatsApp Conversation", {"session": session, "chat_id": chat_id}, "name")
        if not name:
            last = ch.get("lastMessage") or {}
            name = _insert("WhatsApp Conversation", {
                "session": session, "chat_id": chat_id, "status": "Active", "contact_name": (ch.get("name") or "")[:140],
                "is_group": 1 if ch.get("isGroup") else 0, "unread_count": ch.get("unreadCount") or 0,
                "last_message": last.get("body") or last.get("content") or "",
            })
            created["conversations"].append(name)
            created["cus"]["conversations"] += chat_id.endswith("@c.us")
        conversations[ch.get("chatId") or ch.get("id")] = name
    for chat_id, msgs in messages_by_chat.items():
        conv = conversations.get(chat_id)
        if not conv:
            continue
        for m in msgs:
            mid = m.get("whatsappMessageId") or str(m.get("id"))
            if frappe.db.get_value("WhatsApp Message", {"session": session, "message_id": mid}, "name"):
                continue
            created["messages"].append(_insert("WhatsApp Message", {
                "session": session, "conversation": conv, "message_id": mid, "timestamp": _time(m.get("timestamp")),
                "direction": "Outgoing" if m.get("fromMe") else "Incoming", "message_type": m.get("type") or "text",
                "content": m.get("body") if m.get("body") is not None else (m.get("content") or ""),
                "status": APP_STATUS.get((m.get("status") or "").lower(), "Pending"), "from_me": 1 if m.get("fromMe") else 0,
                "from_number": spell(m.get("from") or ""), "to_number": spell(m.get("to") or ""),
                "raw_data": json.dumps(m),
            }))
    return created


def _get(base, path, api_key):
    req = urllib.request.Request(base.rstrip("/") + path, headers={"X-API-Key": api_key, "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (a loopback test upstream)
        doc = json.loads(resp.read())
    return doc.get("data") or {}


def read_upstream(base, api_key, session_id, contacts_limit=50, chats_limit=20, message_chats=5):
    """The first pages the app's sync reads: contacts, chats, and the first page of messages of
    the first few chats."""
    sid = urllib.parse.quote(session_id, safe="")
    contacts = _get(base, "/api/contacts/%s?page=1&limit=%d" % (sid, contacts_limit), api_key).get("contacts") or []
    chats = _get(base, "/api/messages/%s/chats?page=1&limit=%d" % (sid, chats_limit), api_key).get("chats") or []
    messages = {}
    for ch in chats[:message_chats]:
        cid = ch.get("chatId") or ch.get("id")
        path = "/api/messages/%s/%s?page=1&limit=50" % (sid, urllib.parse.quote(cid, safe="@"))
        messages[cid] = _get(base, path, api_key).get("messages") or []
    return contacts, chats, messages
