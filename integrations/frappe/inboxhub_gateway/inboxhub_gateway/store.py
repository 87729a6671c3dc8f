"""What the gateway pushes, written into the WhatsApp app's own doctypes.

A sync batch ``{jobId, sessionId, resource, offset, items}`` upserts WhatsApp Contact, WhatsApp
Conversation or WhatsApp Message rows; an event ``{id, type, sessionId, occurredAt, source,
data}`` upserts the contact, chat or message it carries, applies a session change to the WhatsApp
Session, and is recorded once in WhatsApp Webhook Log (its id is the log's unique webhook_id).

Rows are found by the app's own keys, in every spelling the app's sync may have stored:
- a contact by contact_id (unique across the site) in the gateway's or the @c.us form, else by
  (session, phone_number) with the id forms, the digits or "+digits";
- a conversation by (session, chat_id) in either form;
- a message by message_id (unique across the site): WhatsApp's id, or the upstream's database id
  the app used when a message had none.
A row found is updated only when a field the kit maintains differs (so a re-sync writes nothing);
keys of existing rows are never rewritten. What the app has no column for goes into its JSON
fields under the key "inboxhub" (conversation and message metadata) and the item itself into the
message's raw_data. Datetimes are written in the site's time zone.

Every delivery first locks the session's row (SELECT ... FOR UPDATE): deliveries for one session
are applied one at a time, so two of them cannot both create the same conversation. Each item is
applied inside a savepoint: an item the site refuses is rolled back, logged and counted as failed,
and the rest of the batch is kept.
"""

import frappe
from frappe.utils import get_system_timezone, now_datetime

from inboxhub_gateway import mapping

SESSION = "WhatsApp Session"
CONTACT = "WhatsApp Contact"
CONVERSATION = "WhatsApp Conversation"
MESSAGE = "WhatsApp Message"
LOG = "WhatsApp Webhook Log"

RESOURCES = ("contacts", "chats", "messages")
MAX_ITEMS = 5000  # the gateway's largest batch (GATEWAY_SYNC_SINK_BATCH)
NAMESPACE = "inboxhub"  # key of the kit's data inside the app's JSON fields
INGEST_PATH = "/api/method/inboxhub_gateway.api.ingest"

CONTACT_FIELDS = ["name", "session", "contact_id", "phone_number", "contact_name", "pushname", "verified_name",
                  "profile_pic_url", "is_user", "is_group", "is_my_contact", "is_wa_contact", "is_verified",
                  "sync_count", "first_seen"]
CONVERSATION_FIELDS = ["name", "session", "chat_id", "contact", "contact_name", "phone_number", "is_group",
                       "last_message", "last_message_time", "last_message_from_me", "unread_count", "total_messages",
                       "metadata"]
MESSAGE_FIELDS = ["name", "session", "conversation", "contact", "message_id", "timestamp", "direction", "message_type",
                  "content", "has_media", "status", "ack_status", "sent_at", "delivered_at", "read_at",
                  "from_number", "to_number", "from_me", "metadata", "raw_data"]

DATETIME_FIELDS = {"last_message_time", "timestamp", "sent_at", "delivered_at", "read_at", "last_seen",
                   "first_seen", "last_sync", "last_synced_at", "updated_at"}
JSON_FIELDS = {"metadata", "raw_data", "custom_fields"}


class Refused(Exception):
    """A delivery the kit answers with a 4xx: the gateway will not send it again."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _same(field, old, new):
    if field in JSON_FIELDS:
        return mapping.loads(old) == mapping.loads(new)
    if field in DATETIME_FIELDS:
        return mapping.db_time(old) == mapping.db_time(new)
    if isinstance(new, bool) or isinstance(new, int):
        return int(old or 0) == int(new)
    return (old or "") == (new or "")


def changes(row, wanted, ours=None):
    """The fields of ``wanted`` whose value differs from the row's, and the row's metadata when the
    kit's entry there differs from ``ours``."""
    diff = {k: v for k, v in wanted.items() if not _same(k, row.get(k), v)}
    if ours is not None:
        meta = mapping.loads(row.get("metadata"))
        if not isinstance(meta, dict) or meta.get(NAMESPACE) != ours:
            diff["metadata"] = merged_json(row.get("metadata"), NAMESPACE, ours)
    return diff


def merged_json(current, key, value):
    """The JSON text of ``current`` (a JSON field's value) with ``key`` set to ``value``, keeping
    whatever else the app or its users keep there."""
    doc = mapping.loads(current)
    if not isinstance(doc, dict):
        doc = {}
    doc[key] = value
    return mapping.dumps(doc)


class Site:
    """The rows of one WhatsApp Session, read and written through frappe."""

    def __init__(self, session_name, session_id):
        self.session = session_name
        self.session_id = session_id
        self.tz = get_system_timezone()
        self.now = now_datetime().strftime("%Y-%m-%d %H:%M:%S")
        self.contacts = {}  # normalised id -> contact name (or None: none)
        self.conversations = {}  # normalised chat id -> conversation name
        self.counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 0}

    def time(self, value):
        return mapping.site_time(value, self.tz)

    # ---- writes ----

    def _insert(self, doctype, values):
        doc = frappe.get_doc(dict(values, doctype=doctype))
        doc.insert(ignore_permissions=True)
        return doc.name

    def _update(self, doctype, name, values):
        doc = frappe.get_doc(doctype, name)
        doc.update(values)
        doc.save(ignore_permissions=True)

    # ---- contacts ----

    def find_contact(self, jid, phone=""):
        """The contact row of ``jid``: by contact_id in any form (this session's first), else by
        this session's phone_number. None when there is none."""
        forms = mapping.id_forms(jid)
        if not forms:
            return None
        rows = frappe.get_all(CONTACT, filters={"contact_id": ["in", forms]}, fields=CONTACT_FIELDS,
                              order_by="creation asc")
        if rows:
            own = [r for r in rows if r.get("session") == self.session]
            return (own or rows)[0]
        rows = frappe.get_all(CONTACT, filters={"session": self.session, "phone_number": ["in", mapping.phone_forms(phone, jid)]},
                              fields=CONTACT_FIELDS, order_by="creation asc", limit=1)
        return rows[0] if rows else None

    def contact_name_of(self, jid):
        """The name of the contact row of ``jid``, or None (cached for the delivery)."""
        key = (mapping.id_forms(jid) or [""])[0]
        if not key:
            return None
        if key not in self.contacts:
            row = self.find_contact(key)
            self.contacts[key] = row["name"] if row else None
        return self.contacts[key]

    def upsert_contact(self, item):
        cid = (mapping.id_forms(item.get("id")) or [""])[0]
        if not cid:
            raise mapping.BadItem("a contact without an id")
        phone = item.get("phone") or mapping.phone_of(cid)
        is_group = item.get("type") == "group" or item.get("idKind") == "group"
        wanted = {
            "pushname": mapping.clip(item.get("pushName")),
            "verified_name": mapping.clip(item.get("verifiedName")),
            "profile_pic_url": item.get("imageUrl") or "",
            "is_user": 0 if is_group else 1,
            "is_group": 1 if is_group else 0,
            "is_my_contact": 1 if item.get("name") else 0,
            "is_wa_contact": 1 if item.get("isWhatsApp") else 0,
            "is_verified": 1 if item.get("verifiedName") else 0,
        }
        display = item.get("name") or item.get("verifiedName") or item.get("pushName")
        if display:
            wanted["contact_name"] = mapping.clip(display)
        row = self.find_contact(cid, phone)
        if row is None:
            values = dict(wanted, contact_id=cid, session=self.session, phone_number=mapping.clip(phone or cid),
                          first_seen=self.now, last_sync=self.now, sync_status="Synced", sync_count=1)
            try:
                frappe.db.savepoint("inboxhub_contact")
                name = self._insert(CONTACT, values)
            except (frappe.UniqueValidationError, frappe.DuplicateEntryError):
                # Taken meanwhile, or under a spelling the lookup did not try: update that row.
                frappe.db.rollback(save_point="inboxhub_contact")
                row = self.find_contact(cid, phone)
                if row is None:
                    raise
            else:
                self.contacts[cid] = name
                return "created"
        self.contacts[cid] = row["name"]
        diff = changes(row, wanted)
        if not row.get("phone_number"):
            diff["phone_number"] = mapping.clip(phone or cid)
        if not diff:
            return "unchanged"
        diff.update(last_sync=self.now, sync_status="Synced", sync_count=int(row.get("sync_count") or 0) + 1)
        if not row.get("first_seen"):
            diff["first_seen"] = self.now
        self._update(CONTACT, row["name"], diff)
        return "updated"

    # ---- conversations ----

    def find_conversation(self, jid):
        forms = mapping.id_forms(jid)
        if not forms:
            return None
        rows = frappe.get_all(CONVERSATION, filters={"session": self.session, "chat_id": ["in", forms]},
                              fields=CONVERSATION_FIELDS, order_by="creation asc", limit=1)
        return rows[0] if rows else None

    def _conversation_values(self, chat_id, is_group, phone):
        values = {"is_group": 1 if is_group else 0}
        contact = self.contact_name_of(chat_id)
        if contact:
            values["contact"] = contact
        if phone:
            values["phone_number"] = mapping.clip(phone)
        return values

    def conversation_of(self, chat_id, chat_type=""):
        """The conversation of a message's chat, created (Active, no history yet) when the app has
        none."""
        key = (mapping.id_forms(chat_id) or [""])[0]
        if not key:
            raise mapping.BadItem("a message without a chatId")
        if key in self.conversations:
            return self.conversations[key]
        row = self.find_conversation(key)
        if row is not None:
            self.conversations[key] = row["name"]
            return row["name"]
        is_group = chat_type == "group" or mapping.split_jid(key)[1] == "g.us"
        values = self._conversation_values(key, is_group, mapping.phone_of(key))
        values.update(session=self.session, chat_id=key, status="Active",
                      metadata=mapping.dumps({NAMESPACE: {"id": key, "type": "group" if is_group else "individual"}}))
        name = self._insert(CONVERSATION, values)
        self.conversations[key] = name
        return name

    def upsert_conversation(self, item):
        key = (mapping.id_forms(item.get("id")) or [""])[0]
        if not key:
            raise mapping.BadItem("a chat without an id")
        is_group = item.get("type") == "group" or item.get("idKind") == "group"
        last = item.get("lastMessage") or {}
        wanted = self._conversation_values(key, is_group, item.get("phone") or mapping.phone_of(key))
        wanted.update(
            unread_count=int(item.get("unreadCount") or 0),
            total_messages=int(item.get("messageCount") or 0),
        )
        if item.get("name"):
            wanted["contact_name"] = mapping.clip(item.get("name"))
        if last:
            wanted["last_message"] = last.get("text") or ""
            wanted["last_message_from_me"] = 1 if last.get("fromMe") else 0
        if item.get("lastMessageAt"):
            wanted["last_message_time"] = self.time(item.get("lastMessageAt"))
        ours = {"id": key, "idKind": item.get("idKind") or "", "type": item.get("type") or ""}
        row = self.find_conversation(key)
        if row is None:
            values = dict(wanted, session=self.session, chat_id=key, status="Active", last_synced_at=self.now,
                          metadata=mapping.dumps({NAMESPACE: ours}))
            self.conversations[key] = self._insert(CONVERSATION, values)
            return "created"
        self.conversations[key] = row["name"]
        diff = changes(row, wanted, ours)
        if not diff:
            return "unchanged"
        diff["last_synced_at"] = self.now
        self._update(CONVERSATION, row["name"], diff)
        return "updated"

    # ---- messages ----

    @staticmethod
    def message_ids(item):
        """The message_id values the app may hold for this message: WhatsApp's id, or the
        upstream's database id the app used when there was none."""
        mid = (item.get("id") or "").strip()
        out = [mid] if mid else []
        upstream = (item.get("upstreamId") or "").strip()
        if mid.startswith("upstream:") and upstream:
            out.append(upstream)
        return out

    def find_message(self, item):
        ids = self.message_ids(item)
        if not ids:
            return None
        rows = frappe.get_all(MESSAGE, filters={"message_id": ["in", ids]}, fields=MESSAGE_FIELDS,
                              order_by="creation asc", limit=1)
        return rows[0] if rows else None

    def _message_contact(self, item):
        chat = item.get("chatId") or ""
        if item.get("chatType") == "group" or mapping.split_jid(chat)[1] == "g.us":
            return None if item.get("fromMe") else self.contact_name_of(item.get("from"))
        return self.contact_name_of(chat)

    def upsert_message(self, item, occurred_at=None):
        ids = self.message_ids(item)
        if not ids:
            raise mapping.BadItem("a message without an id")
        row = self.find_message(item)
        if row is not None and row.get("session") != self.session:
            return "skipped"  # the app keeps one row per message id across the site
        from_me = bool(item.get("fromMe"))
        status = mapping.message_status(item.get("status"))
        media = item.get("media")
        ours = {k: item.get(k) for k in ("id", "upstreamId", "chatId", "chatType", "from", "to", "type", "status", "isRead")
                if item.get(k) not in (None, "")}
        if media:
            ours["media"] = media
        wanted = {
            "conversation": self.conversation_of(item.get("chatId"), item.get("chatType")),
            "direction": "Outgoing" if from_me else "Incoming",
            "message_type": mapping.message_type(item.get("type")),
            "content": item.get("text") or "",
            "has_media": 1 if media else 0,
            "from_number": mapping.clip(mapping.phone_of(item.get("from")) or item.get("fromPhone") or item.get("from")),
            "to_number": mapping.clip(mapping.phone_of(item.get("to")) or item.get("to")),
            "from_me": 1 if from_me else 0,
            "raw_data": mapping.dumps(item),
        }
        contact = self._message_contact(item)
        if contact:
            wanted["contact"] = contact
        if from_me:
            ack = mapping.ack_status(item.get("status"))
            if ack:
                wanted["ack_status"] = ack
        when = self.time(item.get("timestamp"))
        if when:
            wanted["timestamp"] = when
            if from_me:
                wanted["sent_at"] = when
        else:
            ours["timestampMissing"] = True
        if row is None:
            # Without a time from the upstream: when the event happened, else now (required field).
            values = dict(wanted, session=self.session, message_id=mapping.clip(ids[0]), status=status,
                          timestamp=when or self.time(occurred_at) or self.now,
                          metadata=mapping.dumps({NAMESPACE: ours}))
            self._insert(MESSAGE, values)
            return "created"
        wanted["status"] = mapping.advance_status(row.get("status"), status)
        diff = changes(row, wanted, ours)
        if not diff:
            return "unchanged"
        self._update(MESSAGE, row["name"], diff)
        return "updated"

    def apply_ack(self, message, ack, occurred_at):
        """A delivery state for a message the site may hold: status, ack_status and the time it
        was delivered or read. A message the site does not hold is left alone."""
        mapping.check_item("ack", ack)
        item = dict(message or {})
        if ack and ack.get("messageId") and not item.get("id"):
            item["id"] = ack["messageId"]
        row = self.find_message(item)
        if row is None or row.get("session") != self.session:
            return "skipped"
        raw = (ack or {}).get("status") or item.get("status")
        status = mapping.advance_status(row.get("status"), mapping.message_status(raw))
        wanted = {"status": status}
        if row.get("from_me") and mapping.ack_status(raw):
            wanted["ack_status"] = mapping.ack_status(raw)
        when = self.time(occurred_at)
        if when and status in ("Delivered", "Read") and not row.get("delivered_at"):
            wanted["delivered_at"] = when
        if when and status == "Read" and not row.get("read_at"):
            wanted["read_at"] = when
        diff = changes(row, wanted)
        if not diff:
            return "unchanged"
        self._update(MESSAGE, row["name"], diff)
        return "updated"

    # ---- batches ----

    def apply(self, kind, fn, item, *args):
        """Check one item against its schema and apply it in a savepoint; an item of the wrong
        shape, or one the site refuses, is rolled back, logged and counted as failed."""
        frappe.db.savepoint("inboxhub_item")
        try:
            mapping.check_item(kind, item)
            result = fn(item, *args)
        except (frappe.ValidationError, frappe.NameError, ValueError) as e:
            frappe.db.rollback(save_point="inboxhub_item")
            self.contacts.clear()
            self.conversations.clear()
            self.counts["failed"] += 1
            # The exception's type, and the field for a shape error: Frappe's own messages may
            # quote the row's name (a phone number).
            why = "%s: %s" % (type(e).__name__, e) if isinstance(e, mapping.BadItem) else type(e).__name__
            frappe.log_error(title="Inbox Hub gateway: an item was refused",
                             message="session %s, %s item: %s" % (self.session_id, kind, why))
            return "failed"
        self.counts[result] += 1
        return result

    def counters(self):
        """The session's counters, recounted from its rows."""
        return {
            "total_contacts": frappe.db.count(CONTACT, {"session": self.session}),
            "total_chats": frappe.db.count(CONVERSATION, {"session": self.session}),
            "total_messages_sent": frappe.db.count(MESSAGE, {"session": self.session, "direction": "Outgoing"}),
            "total_messages_received": frappe.db.count(MESSAGE, {"session": self.session, "direction": "Incoming"}),
        }

    def update_session(self, values):
        """Set fields of the session row (without running the app's controller, which may call
        the upstream), only those that change."""
        if not values:
            return {}
        current = frappe.db.get_value(SESSION, self.session, list(values), as_dict=True) or {}
        diff = changes(current, values)
        if diff:
            frappe.db.set_value(SESSION, self.session, diff)
        return diff


def lock_session(session_id):
    """The WhatsApp Session named by the gateway's session id, its row locked until the commit."""
    if not isinstance(session_id, str) or not session_id or len(session_id) > 100:
        raise Refused(400, "sessionId is missing or malformed")
    name = frappe.db.get_value(SESSION, {"session_id": session_id}, "name", for_update=True)
    if not name:
        raise Refused(422, "no WhatsApp Session has this session_id")
    return Site(name, session_id)


def apply_batch(batch):
    """Upsert a sync batch; returns the counts (created, updated, unchanged, skipped, failed)."""
    resource = batch.get("resource")
    if resource not in RESOURCES:
        raise Refused(400, "unknown resource")
    items = batch.get("items")
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise Refused(400, "items must be a list of at most %d" % MAX_ITEMS)
    if any(not isinstance(it, dict) or not isinstance(it.get("id"), str) or not it.get("id") for it in items):
        raise Refused(400, "every item needs a string id")
    site = lock_session(batch.get("sessionId"))
    fn = {"contacts": site.upsert_contact, "chats": site.upsert_conversation, "messages": site.upsert_message}[resource]
    for item in items:
        site.apply(resource, fn, item)
    site.update_session(site.counters())
    return site.counts


def apply_event(event, headers):
    """Apply an event once; returns {"stored": bool, "result": ...}."""
    event_id, etype = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 140 or not isinstance(etype, str):
        raise Refused(400, "an event needs a string id and type")
    if etype not in mapping.LOG_EVENT_TYPES:
        return {"stored": False, "ignored": True}
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    site = lock_session(event.get("sessionId"))
    if frappe.db.get_value(LOG, {"webhook_id": event_id}, "name"):
        return {"stored": False}
    occurred = event.get("occurredAt")
    result = "unchanged"
    if etype in ("message.received", "message.sent") and data.get("message") is not None:
        result = site.apply("messages", site.upsert_message, data["message"], occurred)
    elif etype == "message.ack":
        ack = data.get("ack") if isinstance(data.get("ack"), dict) else {}
        result = site.apply("messages", lambda m: site.apply_ack(m, ack, occurred), data.get("message") or {})
    elif etype.startswith("contact.") and data.get("contact") is not None:
        result = site.apply("contacts", site.upsert_contact, data["contact"])
    elif etype.startswith("conversation.") and data.get("chat") is not None:
        result = site.apply("chats", site.upsert_conversation, data["chat"])
    change = data.get("session")
    try:
        if change is not None:
            mapping.check_item("session", change)
    except ValueError:
        change, result = None, "failed"
    applied = apply_session_change(site, etype, change, occurred)
    counters = site.counters() if etype.startswith(("message.", "contact.", "conversation.")) else {}
    site.update_session(counters)
    log = {
        "timestamp": site.time(occurred) or site.now,
        "session": site.session,
        "event_type": mapping.LOG_EVENT_TYPES[etype],
        "webhook_id": event_id,
        "status": "Failed" if result == "failed" else "Success",
        "request_headers": mapping.dumps({k: headers.get(k) for k in ("X-Gateway-Delivery", "X-Gateway-Timestamp")
                                          if headers.get(k)}),
        "request_body": mapping.dumps(mapping.without_text(event)),
        "webhook_url": INGEST_PATH,
        "webhook_method": "POST",
        "response_status_code": 200,
        "retry_count": 0,
    }
    if result == "failed":
        log["error_message"] = "the site refused the item (see the Error Log)"
    try:
        frappe.db.savepoint("inboxhub_log")
        frappe.get_doc(dict(log, doctype=LOG)).insert(ignore_permissions=True)
    except frappe.UniqueValidationError:
        frappe.db.rollback(save_point="inboxhub_log")  # the same event, logged meanwhile
        return {"stored": False}
    return {"stored": True, "result": result, "session": applied}


def apply_session_change(site, etype, change, occurred_at):
    """Session status, is_connected, phone_number and last_seen from an event. A status older
    than the session's last_seen (a late retry) does not overwrite a newer one."""
    when = site.time(occurred_at) or site.now
    current = frappe.db.get_value(SESSION, site.session, ["last_seen", "status"], as_dict=True) or {}
    last_seen = mapping.db_time(current.get("last_seen"))
    values = {}
    newer = not last_seen or when >= last_seen
    if newer:
        values["last_seen"] = when
    if etype.startswith("session.") and isinstance(change, dict) and newer:
        status = mapping.SESSION_STATUS.get(change.get("status"))
        if status:
            values.update(status=status, is_connected=1 if status == "Connected" else 0, updated_at=site.now)
            if status == "Connected":
                values.update(error_message="", error_code="")
            elif status in ("Error", "Disconnected") and change.get("reason"):
                values["error_message"] = str(change.get("reason"))[:200]
        if change.get("phoneNumber"):
            values["phone_number"] = mapping.clip(change.get("phoneNumber"))
    return site.update_session(values)
