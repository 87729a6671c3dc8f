"""Server methods of the Inbox Hub gateway kit for Frappe.

- ``gateway_token`` mints a short-lived HS256 JWT for the logged-in user, so the browser calls the
  gateway with a bearer token and no gateway key ever reaches it.
- ``ingest`` receives the gateway's signed sync batches (CRM_SINK_URL) and events (CRM_EVENTS_URL),
  verifies X-Gateway-Signature and X-Gateway-Timestamp and upserts by the stable ids.

Standard library only; ``frappe`` is imported lazily, so the pure functions (``mint_jwt``,
``verify_signature``, ``upsert_batch``, ``store_event``) run and are tested without it.
See README.md for the site_config keys and the doctypes assumed.
"""

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone

DEFAULT_SCOPE = "sessions:read sessions:write sync"
TOKEN_TTL = 300  # seconds: the JWT lives 5 minutes
MAX_SKEW = 300  # seconds: X-Gateway-Timestamp must be this recent (either way)

HEADER_SIGNATURE = "X-Gateway-Signature"
HEADER_TIMESTAMP = "X-Gateway-Timestamp"

DOCTYPE_CONTACT = "WhatsApp Contact"
DOCTYPE_CHAT = "WhatsApp Chat"
DOCTYPE_MESSAGE = "WhatsApp Message"
DOCTYPE_EVENT = "WhatsApp Gateway Event"

RESOURCE_DOCTYPES = {
    "contacts": DOCTYPE_CONTACT,
    "chats": DOCTYPE_CHAT,
    "messages": DOCTYPE_MESSAGE,
}


def _frappe():
    import frappe  # noqa: WPS433 (lazy on purpose)

    return frappe


def _whitelist(**kwargs):
    """frappe.whitelist(**kwargs) when frappe is importable, else the identity decorator."""
    try:
        frappe = _frappe()
    except ImportError:
        return lambda fn: fn
    return frappe.whitelist(**kwargs)


def _conf(key, default=None):
    value = _frappe().conf.get(key)
    return default if value in (None, "") else value


# ---------------------------------------------------------------------------------------------
# JWT (HS256)


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _json(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def mint_jwt(secret, claims):
    """Return a compact HS256 JWT of claims signed with secret (str or bytes)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    signing_input = _b64url(_json({"alg": "HS256", "typ": "JWT"})) + "." + _b64url(_json(claims))
    sig = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)


def token_claims(user, issuer, audience, scope=DEFAULT_SCOPE, now=None, ttl=TOKEN_TTL):
    now = int(time.time() if now is None else now)
    claims = {"sub": user, "iat": now, "exp": now + int(ttl), "scope": scope}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return claims


@_whitelist()
def gateway_token():
    """Mint a 5-minute HS256 JWT for frappe.session.user: {token, gateway_url, expires_in}."""
    frappe = _frappe()
    user = frappe.session.user
    if not user or user == "Guest":
        raise frappe.PermissionError("Log in to call the WhatsApp gateway.")
    secret = _conf("inboxhub_jwt_secret")
    if not secret or len(str(secret)) < 32:
        raise frappe.ValidationError("inboxhub_jwt_secret is missing or shorter than 32 bytes in site_config.json.")
    ttl = int(_conf("inboxhub_jwt_ttl", TOKEN_TTL))
    claims = token_claims(
        user,
        _conf("inboxhub_jwt_issuer", ""),
        _conf("inboxhub_jwt_audience", ""),
        _conf("inboxhub_jwt_scope", DEFAULT_SCOPE),
        ttl=ttl,
    )
    return {
        "token": mint_jwt(secret, claims),
        "gateway_url": str(_conf("inboxhub_gateway_url", "")).rstrip("/"),
        "expires_in": ttl,
    }


# ---------------------------------------------------------------------------------------------
# Signature


def sign(secret, timestamp, body):
    """The X-Gateway-Signature value of body sent at timestamp (as the gateway computes it)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if isinstance(body, str):
        body = body.encode("utf-8")
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret, timestamp, body, signature, now=None, max_skew=MAX_SKEW):
    """Return None when the request is authentic and recent, else the reason it is refused."""
    if not secret:
        return "the signing secret is not configured"
    if not timestamp or not signature:
        return "missing %s or %s" % (HEADER_SIGNATURE, HEADER_TIMESTAMP)
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return "malformed %s" % HEADER_TIMESTAMP
    now = int(time.time() if now is None else now)
    if abs(now - ts) > max_skew:
        return "stale %s" % HEADER_TIMESTAMP
    if not hmac.compare_digest(sign(secret, str(timestamp).strip(), body).encode("utf-8"),
                               str(signature).strip().encode("utf-8")):
        return "bad %s" % HEADER_SIGNATURE
    return None


# ---------------------------------------------------------------------------------------------
# Upserts through a store (FrappeStore in production, a fake in the tests)


class FrappeStore:
    """Reads and writes the kit's doctypes through frappe (ignore_permissions: ingest is a guest
    method authenticated by its signature, not by a user)."""

    def find(self, doctype, key_field, key):
        row = _frappe().db.get_value(doctype, {key_field: key}, ["name", "payload_hash"], as_dict=True)
        return dict(row) if row else None

    def insert(self, doctype, fields):
        frappe = _frappe()
        doc = frappe.get_doc(dict(fields, doctype=doctype))
        try:
            doc.insert(ignore_permissions=True)
        except frappe.DuplicateEntryError:
            # A concurrent delivery inserted the same key first (the unique index held).
            if doctype == DOCTYPE_EVENT:
                return
            key = "external_id"
            row = self.find(doctype, key, fields[key])
            if row:
                self.update(doctype, row["name"], fields)

    def update(self, doctype, name, fields):
        frappe = _frappe()
        doc = frappe.get_doc(doctype, name)
        doc.update(fields)
        doc.save(ignore_permissions=True)


def _digest(item):
    return hashlib.sha256(_json(item)).hexdigest()


def _dt(value):
    """ISO 8601 (as the gateway sends it) -> Frappe's 'YYYY-MM-DD HH:MM:SS' in UTC, or None."""
    if not value:
        return None
    try:
        d = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is not None:
        d = d.astimezone(timezone.utc).replace(tzinfo=None)
    return d.strftime("%Y-%m-%d %H:%M:%S")


def external_id(session_id, resource, item):
    """The stable key of an item: session + id (contacts, chats) or session + chat + id (messages:
    a message id is unique within its chat)."""
    if resource == "messages":
        return "%s|%s|%s" % (session_id, item.get("chatId", ""), item["id"])
    return "%s|%s" % (session_id, item["id"])


def item_fields(session_id, resource, item):
    """The doctype fields of one normalised item (see internal/syncjob/normalize.go)."""
    f = {"session_id": session_id, "external_id": external_id(session_id, resource, item)}
    if resource == "contacts":
        f.update(
            wa_id=item.get("id"), id_kind=item.get("idKind"), contact_type=item.get("type"),
            phone=item.get("phone") or "", full_name=item.get("name") or "",
            push_name=item.get("pushName") or "", is_whatsapp=1 if item.get("isWhatsApp") else 0,
        )
    elif resource == "chats":
        f.update(
            chat_id=item.get("id"), chat_type=item.get("type"), phone=item.get("phone") or "",
            chat_name=item.get("name") or "", unread_count=int(item.get("unreadCount") or 0),
            message_count=int(item.get("messageCount") or 0),
            last_message_at=_dt(item.get("lastMessageAt")),
        )
    elif resource == "messages":
        f.update(
            message_id=item.get("id"), chat_id=item.get("chatId"), from_jid=item.get("from"),
            from_phone=item.get("fromPhone") or "", to_jid=item.get("to"),
            from_me=1 if item.get("fromMe") else 0, message_type=item.get("type"),
            text=item.get("text") or "", sent_at=_dt(item.get("timestamp")),
            status=item.get("status") or "",
        )
    else:
        raise ValueError("unknown resource %r" % resource)
    f["payload"] = json.dumps(item, ensure_ascii=False, sort_keys=True)
    f["payload_hash"] = _digest(item)
    return f


def upsert_item(store, session_id, resource, item, counts):
    doctype = RESOURCE_DOCTYPES[resource]
    fields = item_fields(session_id, resource, item)
    row = store.find(doctype, "external_id", fields["external_id"])
    if row is None:
        store.insert(doctype, fields)
        counts["inserted"] += 1
    elif row.get("payload_hash") == fields["payload_hash"]:
        counts["unchanged"] += 1
    else:
        store.update(doctype, row["name"], fields)
        counts["updated"] += 1


def upsert_batch(store, batch):
    """Upsert a sync batch {jobId, sessionId, resource, offset, items}; returns the counts."""
    resource = batch.get("resource")
    if resource not in RESOURCE_DOCTYPES:
        raise ValueError("unknown resource %r" % resource)
    session_id = batch.get("sessionId") or ""
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    for item in batch.get("items") or []:
        if not isinstance(item, dict) or not item.get("id"):
            raise ValueError("an item without a stable id")
        upsert_item(store, session_id, resource, item, counts)
    return counts


def store_event(store, event):
    """Store an event {id, type, sessionId, occurredAt, source, data} once (repeats ignored), and
    upsert the contact, chat or message it carries. Returns True when it was new."""
    event_id = event.get("id")
    if not event_id or not event.get("type"):
        raise ValueError("an event needs id and type")
    if store.find(DOCTYPE_EVENT, "event_id", event_id) is not None:
        return False
    session_id = event.get("sessionId") or ""
    data = event.get("data") or {}
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    for key, resource in (("contact", "contacts"), ("chat", "chats"), ("message", "messages")):
        item = data.get(key)
        if isinstance(item, dict) and item.get("id"):
            upsert_item(store, session_id, resource, item, counts)
    store.insert(DOCTYPE_EVENT, {
        "event_id": event_id,
        "event_type": event.get("type"),
        "session_id": session_id,
        "occurred_at": _dt(event.get("occurredAt")),
        "source": event.get("source") or "",
        "payload": json.dumps(event, ensure_ascii=False, sort_keys=True),
    })
    return True


def handle_ingest(store, secret, headers, body, now=None):
    """Verify and apply one delivery. Returns (status, answer): 401 when the signature or the
    timestamp is refused, 400 for a body that is neither a batch nor an event, else 200."""
    reason = verify_signature(secret, headers.get(HEADER_TIMESTAMP), body,
                              headers.get(HEADER_SIGNATURE), now=now)
    if reason:
        return 401, {"ok": False, "error": reason}
    try:
        doc = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except ValueError:
        return 400, {"ok": False, "error": "the body is not JSON"}
    if not isinstance(doc, dict):
        return 400, {"ok": False, "error": "the body is not a JSON object"}
    try:
        if "items" in doc and "resource" in doc:
            return 200, {"ok": True, "kind": "batch", "counts": upsert_batch(store, doc)}
        if "type" in doc and "id" in doc:
            return 200, {"ok": True, "kind": "event", "stored": store_event(store, doc)}
    except ValueError as e:
        return 400, {"ok": False, "error": str(e)}
    return 400, {"ok": False, "error": "neither a sync batch nor an event"}


@_whitelist(allow_guest=True)
def ingest():
    """CRM_SINK_URL and CRM_EVENTS_URL: /api/method/inboxhub_gateway.api.ingest"""
    frappe = _frappe()
    req = frappe.request
    status, answer = handle_ingest(FrappeStore(), _conf("inboxhub_signing_secret"),
                                   req.headers, req.get_data() or b"")
    if status != 200:
        frappe.local.response.http_status_code = status
    else:
        frappe.db.commit()
    return answer
