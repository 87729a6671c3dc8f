"""How the gateway's items map onto the WhatsApp app's fields. Pure functions, no frappe import.

The gateway sends WhatsApp ids in one stable form (``<digits>@s.whatsapp.net``, ``<n>@lid``,
``<id>@g.us``); the app's own sync stored them as its upstream gave them, often
``<digits>@c.us``. ``id_forms`` lists every spelling a row may carry, the gateway's first.
Statuses and message types arrive lower-case; the app's Select fields have fixed options.
"""

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

PHONE_SERVERS = ("s.whatsapp.net", "c.us")

# Lower-case delivery states (sync items, acks) -> the app's message status. received is what the
# upstream says of an incoming message: it reached the session's phone.
MESSAGE_STATUS = {
    "pending": "Pending", "clock": "Pending",
    "sent": "Sent", "server": "Sent", "server_ack": "Sent",
    "delivered": "Delivered", "delivery": "Delivered", "delivery_ack": "Delivered", "received": "Delivered",
    "read": "Read", "played": "Read",
    "failed": "Failed", "error": "Failed",
    "deleted": "Deleted", "revoked": "Deleted",
}

# How far a message got: a status is never moved back (a late "delivered" after "read").
STATUS_RANK = {"Pending": 0, "Sent": 1, "Delivered": 2, "Read": 3}
FINAL_STATUSES = ("Failed", "Deleted")

ACK_STATUS = {
    "error": "ACK_ERROR", "failed": "ACK_ERROR", "pending": "ACK_PENDING", "clock": "ACK_PENDING",
    "sent": "ACK_SERVER", "server": "ACK_SERVER", "delivered": "ACK_DEVICE", "read": "ACK_READ",
    "played": "ACK_PLAYED",
}

# Lower-case upstream message types -> the app's message_type options.
MESSAGE_TYPES = {
    "text": "text", "chat": "text", "conversation": "text", "extendedtext": "text",
    "image": "image", "video": "video", "gif": "video",
    "audio": "audio", "ptt": "voice", "voice": "voice",
    "document": "document", "file": "document",
    "location": "location", "live_location": "location",
    "vcard": "contact", "multi_vcard": "contact", "contact": "contact", "contact_card": "contact",
    "sticker": "sticker",
    "buttons": "buttons", "buttons_response": "buttons", "template_button_reply": "buttons",
    "list": "list", "list_response": "list",
    "poll": "poll", "poll_creation": "poll",
    "reaction": "reaction",
}

SESSION_STATUS = {
    "connected": "Connected",
    "connecting": "Connecting",
    "qr_pending": "QR Code Required",
    "disconnected": "Disconnected",
    "error": "Error",
}

# Gateway event type -> the app's webhook log event_type.
LOG_EVENT_TYPES = {
    "message.received": "message",
    "message.sent": "message_create",
    "message.ack": "message_ack",
    "session.connected": "connection_update",
    "session.disconnected": "connection_update",
    "session.qr": "connection_update",
    "session.updated": "connection_update",
    "contact.created": "contact_update",
    "contact.updated": "contact_update",
    "conversation.created": "chat_update",
    "conversation.updated": "chat_update",
}

DATA_LENGTH = 140  # the app's Data fields are varchar(140)


# The item schemas of the gateway's sync (and of the items inside events): each field's JSON type.
# A field may be absent or null; present, it must have its type.
STR, BOOL, INT, OBJ = (str,), (bool,), (int,), (dict,)
ITEM_FIELDS = {
    "contacts": {"id": STR, "idKind": STR, "type": STR, "phone": STR, "name": STR, "pushName": STR,
                 "verifiedName": STR, "imageUrl": STR, "isWhatsApp": BOOL},
    "chats": {"id": STR, "idKind": STR, "type": STR, "phone": STR, "name": STR, "unreadCount": INT,
              "messageCount": INT, "lastMessageAt": STR, "lastMessage": OBJ},
    "messages": {"id": STR, "upstreamId": STR, "chatId": STR, "chatType": STR, "from": STR, "fromPhone": STR,
                 "to": STR, "fromMe": BOOL, "type": STR, "text": STR, "media": OBJ, "timestamp": STR,
                 "status": STR, "isRead": BOOL},
    "lastMessage": {"text": STR, "at": STR, "fromMe": BOOL},
    "media": {"kind": STR, "fileName": STR},
    "session": {"status": STR, "previousStatus": STR, "phoneNumber": STR, "reason": STR, "qr": OBJ},
    "ack": {"messageId": STR, "chatId": STR, "level": INT, "status": STR},
}
ID_FIELDS = ("id", "chatId", "upstreamId", "messageId")


class BadItem(ValueError):
    """An item that is not of the gateway's schema; the message names the field, never a value."""


def check_item(kind, item):
    """Raise BadItem naming the first field of ``item`` whose type is not the schema's, or an id
    longer than the app's keys hold."""
    if not isinstance(item, dict):
        raise BadItem("%s: not an object" % kind)
    for field, types in ITEM_FIELDS[kind].items():
        value = item.get(field)
        if value is None:
            continue
        if not isinstance(value, types) or (types is INT and isinstance(value, bool)):
            raise BadItem("%s.%s: wrong type" % (kind, field))
        if types is OBJ and field in ITEM_FIELDS:
            check_item(field, value)
        if field in ID_FIELDS and len(value) > DATA_LENGTH:
            raise BadItem("%s.%s: longer than %d characters" % (kind, field, DATA_LENGTH))


def split_jid(jid):
    """(user, server) of a JID, the device part (":12") dropped and the server lower-cased."""
    user, sep, server = (jid or "").strip().partition("@")
    if not sep:
        return user, ""
    server = server.lower()
    if server in PHONE_SERVERS or server == "lid":
        user = user.split(":")[0]
    return user, server


def id_forms(jid):
    """Every spelling of a WhatsApp id that a row may hold: the gateway's form first, then the
    @c.us form of phone ids."""
    user, server = split_jid(jid)
    if not user:
        return []
    if server in PHONE_SERVERS:
        return [user + "@s.whatsapp.net", user + "@c.us"]
    if not server:
        return [user]
    return [user + "@" + server]


def phone_of(jid):
    """The digits of a phone JID, else ""."""
    user, server = split_jid(jid)
    return user if server in PHONE_SERVERS and user.isdigit() else ""


def phone_forms(phone, jid):
    """Every value the app may have put in a phone_number for this party: the id forms, the
    digits and "+digits"."""
    out = list(id_forms(jid))
    digits = phone or phone_of(jid)
    if digits:
        out += [digits, "+" + digits]
    return out


def message_status(value):
    return MESSAGE_STATUS.get((value or "").strip().lower(), "Pending")


def advance_status(current, new):
    """The status to keep when a row at ``current`` hears ``new``: never backwards, and Failed or
    Deleted stay."""
    if current in FINAL_STATUSES:
        return current
    if new in FINAL_STATUSES or current not in STATUS_RANK:
        return new
    return new if STATUS_RANK.get(new, 0) >= STATUS_RANK[current] else current


def ack_status(value):
    return ACK_STATUS.get((value or "").strip().lower())


def message_type(value):
    return MESSAGE_TYPES.get((value or "").strip().lower(), "text")


def clip(value, n=DATA_LENGTH):
    value = "" if value is None else str(value)
    return value[:n]


def parse_time(value):
    """An RFC 3339 time as the gateway sends it -> an aware datetime, or None."""
    if not value:
        return None
    try:
        d = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d


def site_time(value, time_zone):
    """An RFC 3339 time -> "YYYY-MM-DD HH:MM:SS" in the site's time zone (naive, as Frappe keeps
    datetimes), or None."""
    d = parse_time(value) if not isinstance(value, datetime) else value
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M:%S")


def db_time(value):
    """A Datetime as Frappe hands it back (datetime or text) -> "YYYY-MM-DD HH:MM:SS", or ""."""
    if value in (None, ""):
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value).replace("T", " ")[:19]


def dumps(value):
    """JSON for the app's JSON fields: stable key order, UTF-8 kept."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def loads(value):
    """A JSON field's value (text, dict or empty) -> a Python value; unreadable text gives None."""
    if value in (None, ""):
        return None
    if isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def without_text(value):
    """A copy of an event for the webhook log, message text left out (it is in the message row)."""
    if isinstance(value, dict):
        return {k: ("<%d characters>" % len(v) if k == "text" and isinstance(v, str) else without_text(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [without_text(v) for v in value]
    return value
