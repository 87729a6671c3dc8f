"""The kit's ingest over the stand-in: signed deliveries written into the WhatsApp app's doctypes,
found by the app's own keys in every spelling, never duplicated."""

import json
import time
import unittest

import kit
import frappe
from frappe import testing

from inboxhub_gateway import mapping, store

CONTACT, CONV, MSG, LOG, SESSION = "WhatsApp Contact", "WhatsApp Conversation", "WhatsApp Message", "WhatsApp Webhook Log", "WhatsApp Session"


class IngestTest(unittest.TestCase):
    def setUp(self):
        kit.new_site(time_zone="Europe/Madrid")
        self.session = testing.add_session("demo_session")

    def ok(self, doc):
        status, answer = kit.deliver(doc)
        self.assertEqual(status, 200, (answer, frappe.app.last_traceback))
        return answer["message"]

    def counts(self, doc):
        return self.ok(doc)["counts"]

    def modified(self, doctype):
        return {r["name"]: r["modified"] for r in kit.rows(doctype, fields=("name", "modified"))}

    # ---- contacts ----

    def test_contacts_carry_every_required_field(self):
        items = [kit.contact("34600111222", "María Peña", "María"), kit.contact("123456", kind="lid", push="Ana"),
                 kit.contact("120363000000000001", kind="group", name="Equipo"),
                 kit.contact("34600999888", verified="Tienda SL", is_wa=False)]
        self.assertEqual(self.counts(kit.batch("contacts", items))["created"], 4)
        row = frappe.db.get_value(CONTACT, "34600111222@s.whatsapp.net", ["session", "phone_number", "contact_name",
                                  "pushname", "is_user", "is_my_contact", "is_wa_contact", "sync_status"], as_dict=True)
        self.assertEqual(row["session"], self.session)  # the document's name, not the gateway's session id
        self.assertEqual((row["phone_number"], row["contact_name"], row["pushname"]), ("34600111222", "María Peña", "María"))
        self.assertEqual((row["is_user"], row["is_my_contact"], row["is_wa_contact"], row["sync_status"]), (1, 1, 1, "Synced"))
        self.assertEqual(frappe.db.get_value(CONTACT, "123456@lid", "phone_number"), "123456@lid")
        self.assertEqual(frappe.db.get_value(CONTACT, "120363000000000001@g.us", ["is_group", "is_user"]), (1, 0))
        self.assertEqual(frappe.db.get_value(CONTACT, "34600999888@s.whatsapp.net", ["verified_name", "is_verified", "is_wa_contact"]),
                         ("Tienda SL", 1, 0))

    def test_redelivery_writes_nothing(self):
        items = [kit.contact("34600111222", "María"), kit.contact("34600111333", "Luis")]
        self.ok(kit.batch("contacts", items))
        before = self.modified(CONTACT)
        counts = self.counts(kit.batch("contacts", items))
        self.assertEqual((counts["created"], counts["updated"], counts["unchanged"]), (0, 0, 2))
        self.assertEqual(self.modified(CONTACT), before)

    def test_finds_the_apps_contacts_in_either_spelling(self):
        # As the app's own sync wrote them: the upstream id as given, phone_number the id.
        kit.app_row(CONTACT, {"contact_id": "34600111222@c.us", "session": self.session, "phone_number": "34600111222@c.us",
                              "contact_name": "Maria"})
        kit.app_row(CONTACT, {"contact_id": "34600111333@s.whatsapp.net", "session": self.session,
                              "phone_number": "34600111333@s.whatsapp.net"})
        # Keyed differently, but the same phone in this session.
        kit.app_row(CONTACT, {"contact_id": "legacy-1", "session": self.session, "phone_number": "+34600111444"})
        counts = self.counts(kit.batch("contacts", [kit.contact("34600111222", "María Peña"), kit.contact("34600111333", "Luis"),
                                                   kit.contact("34600111444", "Eva")]))
        self.assertEqual((counts["created"], counts["updated"]), (0, 3))
        self.assertEqual(frappe.db.count(CONTACT), 3)
        self.assertEqual(frappe.db.get_value(CONTACT, "34600111222@c.us", "contact_name"), "María Peña")
        self.assertEqual(frappe.db.get_value(CONTACT, "legacy-1", "contact_name"), "Eva")
        # The app's keys are kept as they were.
        self.assertEqual(sorted(frappe.get_all(CONTACT, pluck="contact_id")), ["34600111222@c.us", "34600111333@s.whatsapp.net", "legacy-1"])

    def test_a_contact_of_another_session_is_not_duplicated(self):
        other = testing.add_session("sales_team")
        kit.app_row(CONTACT, {"contact_id": "34600111222@c.us", "session": other, "phone_number": "34600111222@c.us"})
        counts = self.counts(kit.batch("contacts", [kit.contact("34600111222", "María")]))
        self.assertEqual((counts["created"], counts["updated"]), (0, 1))
        self.assertEqual(frappe.db.get_value(CONTACT, "34600111222@c.us", "session"), other)  # not taken over

    def test_a_contact_inserted_meanwhile_is_updated(self):
        # The lookup misses a row that a concurrent writer inserts before ours: the unique contact_id
        # refuses the insert with UniqueValidationError, and the kit updates that row instead.
        original = store.Site.find_contact
        state = {"first": True}

        def racing(site, jid, phone=""):
            if state["first"]:
                state["first"] = False
                frappe.get_doc({"doctype": CONTACT, "contact_id": "34600111222@s.whatsapp.net", "session": self.session,
                                "phone_number": "34600111222"}).insert(ignore_permissions=True)
                return None
            return original(site, jid, phone)

        store.Site.find_contact = racing
        try:
            counts = self.counts(kit.batch("contacts", [kit.contact("34600111222", "María")]))
        finally:
            store.Site.find_contact = original
        self.assertEqual((counts["created"], counts["updated"], counts["failed"]), (0, 1, 0))
        self.assertEqual(frappe.db.count(CONTACT), 1)

    # ---- conversations ----

    def test_conversations(self):
        self.ok(kit.batch("contacts", [kit.contact("34600111222", "María")]))
        kit.app_row(CONV, {"session": self.session, "chat_id": "34600111333@c.us", "status": "Archived",
                           "metadata": json.dumps({"pinned_by": "someone"})})
        chats = [kit.chat("34600111222", "María", unread=2, count=31, last_at="2025-11-07T11:58:00Z", last_text="Recibido"),
                 kit.chat("34600111333", "Luis", count=3), kit.chat("120363000000000001", "Equipo", kind="group")]
        counts = self.counts(kit.batch("chats", chats))
        self.assertEqual((counts["created"], counts["updated"]), (2, 1))
        row = frappe.db.get_value(CONV, {"chat_id": "34600111222@s.whatsapp.net"}, ["name", "session", "contact", "status",
                                  "unread_count", "total_messages", "last_message", "last_message_time"], as_dict=True)
        self.assertTrue(row["name"].startswith("WACONV-"))
        self.assertEqual((row["session"], row["contact"], row["status"]), (self.session, "34600111222@s.whatsapp.net", "Active"))
        self.assertEqual((row["unread_count"], row["total_messages"], row["last_message"]), (2, 31, "Recibido"))
        self.assertEqual(mapping.db_time(row["last_message_time"]), "2025-11-07 12:58:00")  # Madrid, not UTC
        # The app's conversation: updated, its status and its own JSON kept.
        app_conv = frappe.db.get_value(CONV, {"chat_id": "34600111333@c.us"}, ["status", "total_messages", "metadata"], as_dict=True)
        self.assertEqual((app_conv["status"], app_conv["total_messages"]), ("Archived", 3))
        meta = json.loads(app_conv["metadata"])
        self.assertEqual(meta["pinned_by"], "someone")
        self.assertEqual(meta["inboxhub"]["id"], "34600111333@s.whatsapp.net")
        self.assertEqual(frappe.db.get_value(CONV, {"chat_id": "120363000000000001@g.us"}, "is_group"), 1)
        self.assertEqual(self.counts(kit.batch("chats", chats))["unchanged"], 3)

    # ---- messages ----

    def test_messages_carry_every_required_field(self):
        self.ok(kit.batch("contacts", [kit.contact("34600111222", "María")]))
        self.ok(kit.batch("chats", [kit.chat("34600111222", "María")]))
        items = [kit.message("IN1", "34600111222", ts="2025-07-01T10:00:00Z"),
                 kit.message("OUT1", "34600111222", from_me=True, status="read", mtype="document")]
        self.assertEqual(self.counts(kit.batch("messages", items))["created"], 2)
        conv = frappe.db.get_value(CONV, {"chat_id": "34600111222@s.whatsapp.net"}, "name")
        inc = frappe.db.get_value(MSG, {"message_id": "IN1"}, ["session", "conversation", "contact", "timestamp", "direction",
                                  "message_type", "status", "content", "from_number", "from_me"], as_dict=True)
        self.assertEqual((inc["session"], inc["conversation"], inc["contact"]), (self.session, conv, "34600111222@s.whatsapp.net"))
        self.assertEqual(mapping.db_time(inc["timestamp"]), "2025-07-01 12:00:00")  # summer time in Madrid
        self.assertEqual((inc["direction"], inc["message_type"], inc["status"]), ("Incoming", "text", "Delivered"))
        self.assertEqual((inc["content"], inc["from_number"], inc["from_me"]), ("hola", "34600111222", 0))
        out = frappe.db.get_value(MSG, {"message_id": "OUT1"}, ["direction", "message_type", "status", "ack_status", "has_media",
                                  "sent_at", "metadata", "raw_data"], as_dict=True)
        self.assertEqual((out["direction"], out["message_type"], out["status"], out["ack_status"], out["has_media"]),
                         ("Outgoing", "document", "Read", "ACK_READ", 1))
        self.assertEqual(mapping.db_time(out["sent_at"]), "2025-11-07 12:58:00")
        self.assertEqual(json.loads(out["metadata"])["inboxhub"]["media"], {"kind": "document"})
        self.assertEqual(json.loads(out["raw_data"])["id"], "OUT1")

    def test_statuses_and_types_map_onto_the_apps_options(self):
        cases = {"pending": "Pending", "sent": "Sent", "server": "Sent", "delivered": "Delivered", "received": "Delivered",
                 "read": "Read", "played": "Read", "failed": "Failed", "error": "Failed", "revoked": "Deleted", "": "Pending",
                 "weird": "Pending"}
        types = {"text": "text", "chat": "text", "ptt": "voice", "vcard": "contact", "poll_creation": "poll",
                 "location": "location", "sticker": "sticker", "list_response": "list", "media": "text", "": "text"}
        items = [dict(kit.message("S%d" % i, "34600111222", from_me=True), status=st) for i, st in enumerate(cases)]
        items += [dict(kit.message("T%d" % i, "34600111222"), type=ty) for i, ty in enumerate(types)]
        counts = self.counts(kit.batch("messages", items))
        self.assertEqual((counts["created"], counts["failed"]), (len(items), 0))
        for i, want in enumerate(cases.values()):
            self.assertEqual(frappe.db.get_value(MSG, {"message_id": "S%d" % i}, "status"), want)
        for i, want in enumerate(types.values()):
            self.assertEqual(frappe.db.get_value(MSG, {"message_id": "T%d" % i}, "message_type"), want)

    def test_finds_the_apps_messages(self):
        conv = kit.app_row(CONV, {"session": self.session, "chat_id": "34600111222@c.us", "status": "Active"})
        # The app's keys: whatsappMessageId, or the upstream's own id when there was none.
        kit.app_row(MSG, {"session": self.session, "conversation": conv, "message_id": "3EB0AA", "timestamp": "2025-11-07 11:58:00",
                          "direction": "Outgoing", "message_type": "text", "status": "Sent"})
        kit.app_row(MSG, {"session": self.session, "conversation": conv, "message_id": "48213", "timestamp": "2025-11-07 11:58:00",
                          "direction": "Incoming", "message_type": "text", "status": "Delivered"})
        items = [kit.message("3EB0AA", "34600111222", from_me=True, status="read"),
                 kit.message("upstream:48213", "34600111222", upstream_id="48213")]
        counts = self.counts(kit.batch("messages", items))
        self.assertEqual((counts["created"], counts["updated"]), (0, 2))
        self.assertEqual(frappe.db.count(MSG), 2)
        self.assertEqual(frappe.db.count(CONV), 1)  # the app's @c.us conversation is theirs
        self.assertEqual(frappe.db.get_value(MSG, {"message_id": "3EB0AA"}, ["status", "timestamp"]),
                         ("Read", frappe.utils.get_datetime("2025-11-07 12:58:00")))

    def test_a_status_never_goes_back(self):
        self.ok(kit.batch("messages", [kit.message("M1", "34600111222", from_me=True, status="read")]))
        self.ok(kit.batch("messages", [kit.message("M1", "34600111222", from_me=True, status="delivered")]))
        self.assertEqual(frappe.db.get_value(MSG, {"message_id": "M1"}, "status"), "Read")

    def test_a_message_without_time_or_known_chat(self):
        counts = self.counts(kit.batch("messages", [kit.message("M1", "34600555000", ts=None)]))
        self.assertEqual(counts["created"], 1)
        row = frappe.db.get_value(MSG, {"message_id": "M1"}, ["conversation", "timestamp", "metadata"], as_dict=True)
        self.assertEqual(frappe.db.get_value(CONV, row["conversation"], ["chat_id", "status"]), ("34600555000@s.whatsapp.net", "Active"))
        self.assertIsNotNone(row["timestamp"])
        self.assertTrue(json.loads(row["metadata"])["inboxhub"]["timestampMissing"])
        self.assertEqual(self.counts(kit.batch("messages", [kit.message("M1", "34600555000", ts=None)]))["unchanged"], 1)

    def test_group_messages_link_the_sender(self):
        self.ok(kit.batch("contacts", [kit.contact("34600111222", "María")]))
        item = kit.message("G1", "120363000000000001", kind="group", sender="34600111222@s.whatsapp.net")
        self.ok(kit.batch("messages", [item]))
        self.assertEqual(frappe.db.get_value(MSG, {"message_id": "G1"}, "contact"), "34600111222@s.whatsapp.net")
        self.assertEqual(frappe.db.get_value(CONV, {"chat_id": "120363000000000001@g.us"}, "is_group"), 1)

    def test_a_message_id_of_another_session_is_skipped(self):
        other = testing.add_session("sales_team")
        conv = kit.app_row(CONV, {"session": other, "chat_id": "1@c.us", "status": "Active"})
        kit.app_row(MSG, {"session": other, "conversation": conv, "message_id": "SHARED", "timestamp": "2025-11-07 11:58:00",
                          "direction": "Outgoing", "message_type": "text", "status": "Sent"})
        counts = self.counts(kit.batch("messages", [kit.message("SHARED", "34600111222")]))
        self.assertEqual((counts["skipped"], counts["created"]), (1, 0))
        self.assertEqual(frappe.db.get_value(MSG, {"message_id": "SHARED"}, "session"), other)

    def test_a_refused_item_does_not_lose_the_batch(self):
        bad = kit.message("BAD", "34600111222")
        bad["chatId"] = ""
        counts = self.counts(kit.batch("messages", [kit.message("A", "34600111222"), bad, kit.message("B", "34600111222")]))
        self.assertEqual((counts["created"], counts["failed"]), (2, 1))
        self.assertEqual(sorted(frappe.get_all(MSG, pluck="message_id")), ["A", "B"])
        self.assertEqual(len(frappe.error_log), 1)
        self.assertNotIn("hola", frappe.error_log[0]["message"])

    def test_session_counters(self):
        self.ok(kit.batch("contacts", [kit.contact("34600111222"), kit.contact("34600111333")]))
        self.ok(kit.batch("messages", [kit.message("A", "34600111222"), kit.message("B", "34600111222", from_me=True),
                                       kit.message("C", "34600111333")]))
        self.assertEqual(frappe.db.get_value(SESSION, self.session, ["total_contacts", "total_chats", "total_messages_sent",
                                             "total_messages_received"]), (2, 2, 1, 2))

    # ---- what is refused ----

    def test_refusals(self):
        body = kit.batch("contacts", [kit.contact("34600111222")])
        raw = json.dumps(body).encode()
        now = int(time.time())
        bad = [
            ({"Content-Type": "application/json"}, 401),  # unsigned
            ({"X-Gateway-Timestamp": str(now - 600), "X-Gateway-Signature": kit.security.sign(kit.SIGNING_SECRET, now - 600, raw)}, 401),
            ({"X-Gateway-Timestamp": str(now), "X-Gateway-Signature": kit.security.sign("another-secret", now, raw)}, 401),
            ({"X-Gateway-Timestamp": "soon", "X-Gateway-Signature": "sha256=00"}, 401),
        ]
        for headers, want in bad:
            status, answer = kit.deliver(None, raw=raw, headers=headers)
            self.assertEqual(status, want, headers)
            self.assertNotIn("34600111222", json.dumps(answer))
        for doc, want in ((kit.batch("calls", []), 400), ({"hello": 1}, 400), (kit.batch("contacts", [{"name": "x"}]), 400),
                          (kit.batch("contacts", [kit.contact("1")], session_id="unknown_session"), 422),
                          (kit.batch("contacts", [kit.contact("1")], session_id=["x"]), 400)):
            self.assertEqual(kit.deliver(doc)[0], want, doc)
        self.assertEqual(kit.deliver(None, raw=b"not json")[0], 400)
        self.assertEqual(frappe.db.count(CONTACT), 0)
        frappe.conf.pop("inboxhub_signing_secret")
        self.assertEqual(kit.deliver(body)[0], 401)


class HostileTest(unittest.TestCase):
    """Signed but malformed deliveries (a gateway of another version, a bug): a clear 4xx, or the
    bad items counted as failed; never a 500 (which the gateway would retry for minutes), never a
    value echoed into the answer or the Error Log."""

    def setUp(self):
        kit.new_site()
        testing.add_session("demo_session")

    def test_bad_items_never_answer_500(self):
        phone = "34600111222"
        good = {"contacts": kit.contact(phone), "chats": kit.chat(phone), "messages": kit.message("M1", phone)}
        bad = {
            "contacts": [{"id": phone + "@s.whatsapp.net", "name": 5}, {"id": phone + "@s.whatsapp.net", "isWhatsApp": "yes"},
                         {"id": "x" * 200 + "@s.whatsapp.net"}, {"id": phone + "@s.whatsapp.net", "pushName": ["a"]}],
            "chats": [{"id": phone + "@s.whatsapp.net", "unreadCount": "lots"}, {"id": phone + "@s.whatsapp.net", "lastMessage": "hi"},
                      {"id": phone + "@s.whatsapp.net", "lastMessage": {"fromMe": "no"}}, {"id": phone + "@s.whatsapp.net", "messageCount": True}],
            "messages": [dict(kit.message("B1", phone), chatId=7), dict(kit.message("B2", phone), media="image"),
                         dict(kit.message("B3", phone), timestamp=1700000000), dict(kit.message("B4", phone), text={"t": 1}),
                         dict(kit.message("B5", phone), chatId=""), dict(kit.message("B6", phone), fromMe="true"),
                         dict(kit.message("B7", phone), media={"kind": 3}), dict(kit.message("x" * 141, phone))],
        }
        for resource, items in bad.items():
            status, answer = kit.deliver(kit.batch(resource, items + [good[resource]]))
            self.assertEqual(status, 200, (resource, answer, frappe.app.last_traceback))
            counts = answer["message"]["counts"]
            self.assertEqual((counts["failed"], counts["created"] + counts["updated"]), (len(items), 1), resource)
        self.assertEqual((frappe.db.count(CONTACT), frappe.db.count(MSG)), (1, 1))
        for entry in frappe.error_log:
            self.assertNotIn(phone, entry["message"])
        for body in ([], "x", 5, {"resource": "contacts", "items": "all"}, {"resource": "contacts", "items": [None]},
                     {"resource": "contacts", "items": [{"id": 5}]}, kit.batch("contacts", [{}] * 5001),
                     {"resource": ["contacts"], "items": []}, {"id": "e", "type": 5}, {"id": ["e"], "type": "message.received"}):
            status, answer = kit.deliver(body)
            self.assertIn(status, (400, 422), (body if len(str(body)) < 200 else "big", answer))

    def test_bad_events_never_answer_500(self):
        events = [kit.event("e1", "message.received", {"message": "hola"}), kit.event("e2", "message.received", "x"),
                  kit.event("e3", "message.ack", {"ack": {"messageId": 5}}), kit.event("e4", "session.connected", {"session": {"status": 1}}),
                  kit.event("e5", "session.connected", {"session": "connected"}), kit.event("e6", "contact.updated", {"contact": []}),
                  kit.event("e7", "conversation.updated", {"chat": {"id": None}}), kit.event("e8", "session.qr", {}, occurred=12),
                  kit.event("e9", "message.received", {"message": kit.message("M1", "1")}, occurred={"at": 1})]
        for ev in events:
            status, answer = kit.deliver(ev)
            self.assertEqual(status, 200, (ev["id"], answer, frappe.app.last_traceback))
        logs = {r["webhook_id"]: r["status"] for r in kit.rows(LOG, fields=("webhook_id", "status"))}
        self.assertEqual(logs["e1"], "Failed")
        self.assertEqual(logs["e4"], "Failed")
        self.assertEqual(logs["e9"], "Success")
        self.assertEqual(frappe.db.get_value(SESSION, {"session_id": "demo_session"}, "status"), "Connected")


class EventTest(unittest.TestCase):
    def setUp(self):
        kit.new_site(time_zone="America/Mexico_City")
        self.session = testing.add_session("demo_session", status="Connecting", is_connected=0)

    def ok(self, doc):
        status, answer = kit.deliver(doc)
        self.assertEqual(status, 200, (answer, frappe.app.last_traceback))
        return answer["message"]

    def session_row(self):
        return frappe.db.get_value(SESSION, self.session, ["status", "is_connected", "phone_number", "last_seen", "error_message"], as_dict=True)

    def test_session_events_drive_status_and_is_connected(self):
        self.ok(kit.event("e1", "session.connected", {"session": {"status": "connected", "phoneNumber": "34699000000"}},
                          occurred="2025-11-07T12:00:00Z"))
        row = self.session_row()
        self.assertEqual((row["status"], row["is_connected"], row["phone_number"]), ("Connected", 1, "34699000000"))
        self.assertEqual(mapping.db_time(row["last_seen"]), "2025-11-07 06:00:00")  # Mexico City
        self.ok(kit.event("e2", "session.disconnected", {"session": {"status": "disconnected", "reason": "logout"}},
                          occurred="2025-11-07T12:05:00Z"))
        row = self.session_row()
        self.assertEqual((row["status"], row["is_connected"], row["error_message"]), ("Disconnected", 0, "logout"))
        self.ok(kit.event("e3", "session.qr", {"session": {"status": "qr_pending", "qr": {"available": True}}},
                          occurred="2025-11-07T12:06:00Z"))
        self.assertEqual(self.session_row()["status"], "QR Code Required")
        # A late retry of an older event does not undo a newer state.
        self.ok(kit.event("e0", "session.connected", {"session": {"status": "connected"}}, occurred="2025-11-07T11:00:00Z"))
        self.assertEqual(self.session_row()["status"], "QR Code Required")
        self.ok(kit.event("e4", "session.updated", {"session": {"status": "error"}}, occurred="2025-11-07T12:07:00Z"))
        self.assertEqual((self.session_row()["status"], self.session_row()["is_connected"]), ("Error", 0))
        logs = kit.rows(LOG, fields=("webhook_id", "event_type", "status", "session"))
        self.assertEqual([l["webhook_id"] for l in logs], ["e1", "e2", "e3", "e0", "e4"])
        self.assertTrue(all(l["event_type"] == "connection_update" and l["status"] == "Success" and l["session"] == self.session
                            for l in logs))

    def test_message_events_are_applied_and_logged_once(self):
        ev = kit.event("evt_1", "message.received", {"message": kit.message("M1", "34600111222", text="un secreto")})
        self.assertTrue(self.ok(ev)["stored"])
        self.assertFalse(self.ok(ev)["stored"])  # a repeat: nothing done
        self.assertEqual((frappe.db.count(MSG), frappe.db.count(LOG)), (1, 1))
        log = frappe.db.get_value(LOG, {"webhook_id": "evt_1"}, ["event_type", "request_body", "request_headers", "webhook_method"], as_dict=True)
        self.assertEqual((log["event_type"], log["webhook_method"]), ("message", "POST"))
        self.assertNotIn("un secreto", log["request_body"])
        self.assertIn("X-Gateway-Delivery", log["request_headers"])
        self.assertEqual(frappe.db.get_value(SESSION, self.session, "total_messages_received"), 1)
        self.ok(kit.event("evt_2", "message.sent", {"message": kit.message("M2", "34600111222", from_me=True)}))
        self.assertEqual(frappe.db.get_value(LOG, {"webhook_id": "evt_2"}, "event_type"), "message_create")

    def test_acks_move_the_status_forward(self):
        self.ok(kit.event("evt_1", "message.sent", {"message": kit.message("M1", "34600111222", from_me=True)}))
        ack = {"message": {"id": "M1", "chatId": "34600111222@s.whatsapp.net", "type": "text", "text": "", "status": "read"},
               "ack": {"messageId": "M1", "level": 3, "status": "read"}}
        self.ok(kit.event("evt_2", "message.ack", ack, occurred="2025-11-07T13:00:00Z"))
        row = frappe.db.get_value(MSG, {"message_id": "M1"}, ["status", "ack_status", "read_at", "delivered_at", "content"], as_dict=True)
        self.assertEqual((row["status"], row["ack_status"], row["content"]), ("Read", "ACK_READ", "hola"))  # the text is kept
        self.assertEqual(mapping.db_time(row["read_at"]), "2025-11-07 07:00:00")
        late = {"message": dict(ack["message"], status="delivered"), "ack": {"messageId": "M1", "level": 2, "status": "delivered"}}
        self.ok(kit.event("evt_3", "message.ack", late))
        self.assertEqual(frappe.db.get_value(MSG, {"message_id": "M1"}, "status"), "Read")
        # An ack for a message the site does not hold changes nothing (and is logged).
        unknown = {"message": {"id": "NOPE", "chatId": "1@s.whatsapp.net"}, "ack": {"messageId": "NOPE", "level": 3, "status": "read"}}
        self.assertEqual(self.ok(kit.event("evt_4", "message.ack", unknown))["result"], "skipped")
        self.assertEqual(frappe.db.count(MSG), 1)

    def test_contact_and_conversation_events(self):
        self.ok(kit.event("c1", "contact.updated", {"contact": kit.contact("34600111222", "María")}))
        self.ok(kit.event("c2", "conversation.created", {"chat": kit.chat("34600111222", "María", unread=1)}))
        self.assertEqual(frappe.db.count(CONTACT), 1)
        self.assertEqual(frappe.db.get_value(CONV, {"chat_id": "34600111222@s.whatsapp.net"}, "contact"), "34600111222@s.whatsapp.net")
        self.assertEqual(sorted(r["event_type"] for r in kit.rows(LOG, fields=("event_type",))), ["chat_update", "contact_update"])

    def test_unknown_session_and_bad_events(self):
        self.assertEqual(kit.deliver(kit.event("x1", "session.connected", {"session": {"status": "connected"}}, session_id="nope"))[0], 422)
        self.assertEqual(kit.deliver({"id": 5, "type": "message.received"})[0], 400)
        self.assertEqual(self.ok(kit.event("x2", "presence.update", {}))["ignored"], True)
        self.assertEqual(frappe.db.count(LOG), 0)


class MappingTest(unittest.TestCase):
    def test_id_forms(self):
        self.assertEqual(mapping.id_forms("34600111222@c.us"), ["34600111222@s.whatsapp.net", "34600111222@c.us"])
        self.assertEqual(mapping.id_forms("34600111222:12@S.WHATSAPP.NET"), ["34600111222@s.whatsapp.net", "34600111222@c.us"])
        self.assertEqual(mapping.id_forms("123@lid"), ["123@lid"])
        self.assertEqual(mapping.id_forms("1203-16@g.us"), ["1203-16@g.us"])
        self.assertEqual(mapping.id_forms(""), [])
        self.assertEqual(mapping.phone_forms("", "34600111222@s.whatsapp.net")[-2:], ["34600111222", "+34600111222"])

    def test_site_time(self):
        self.assertEqual(mapping.site_time("2025-11-07T11:58:00Z", "Europe/Madrid"), "2025-11-07 12:58:00")
        self.assertEqual(mapping.site_time("2025-11-07T11:58:00.123456789Z"[:26] + "Z", "UTC"), "2025-11-07 11:58:00")
        self.assertIsNone(mapping.site_time("yesterday", "UTC"))


if __name__ == "__main__":
    unittest.main()
