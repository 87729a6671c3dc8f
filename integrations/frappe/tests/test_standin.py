"""The stand-in for Frappe refuses what Frappe refuses: each rule the kit's tests rely on, shown
failing. (A stand-in that accepted anything would prove nothing about the kit.)"""

import datetime
import unittest

import kit
import frappe
from frappe import app, schema, testing


def admin_insert(doctype, **values):
    return kit.as_admin(lambda: frappe.get_doc(dict(values, doctype=doctype)).insert())


class StandInTest(unittest.TestCase):
    def setUp(self):
        kit.new_site()
        self.session = testing.add_session("demo_session")

    def contact(self, cid="34600111222@c.us", **extra):
        values = {"contact_id": cid, "session": self.session, "phone_number": cid}
        values.update(extra)
        return admin_insert("WhatsApp Contact", **values)

    # ---- the schema is the app's ----

    def test_doctypes_are_the_apps(self):
        for name in ("WhatsApp Session", "WhatsApp Contact", "WhatsApp Conversation", "WhatsApp Message",
                     "WhatsApp Webhook Log", "WhatsApp Session User"):
            self.assertIn(name, schema.DOCTYPES)
        for name in ("WhatsApp Chat", "WhatsApp Gateway Event"):
            self.assertNotIn(name, schema.DOCTYPES)
            with self.assertRaises(frappe.OperationalError):
                frappe.db.get_value(name, {"name": "x"})
        self.assertEqual(schema.DOCTYPES["WhatsApp Message"].get_field("status").select_options(),
                         ["Pending", "Sent", "Delivered", "Read", "Failed", "Deleted"])

    def test_required_fields(self):
        with self.assertRaises(frappe.MandatoryError):
            admin_insert("WhatsApp Contact", contact_id="x@c.us", session=self.session)  # no phone_number
        conv = admin_insert("WhatsApp Conversation", session=self.session, chat_id="1@c.us", status="Active").name
        with self.assertRaises(frappe.MandatoryError):
            admin_insert("WhatsApp Message", session=self.session, conversation=conv, message_id="M1",
                         timestamp="2025-11-07 12:00:00", direction="Incoming", message_type="text")  # no status

    def test_select_options(self):
        with self.assertRaises(frappe.ValidationError):
            admin_insert("WhatsApp Conversation", session=self.session, chat_id="1@c.us", status="active")
        with self.assertRaises(frappe.ValidationError):
            frappe.db.set_value("WhatsApp Session", self.session, "status", "connected")

    def test_links_must_exist(self):
        with self.assertRaises(frappe.LinkValidationError):
            admin_insert("WhatsApp Contact", contact_id="x@c.us", session="demo_session", phone_number="x")  # session_id, not the name
        with self.assertRaises(frappe.LinkValidationError):
            admin_insert("WhatsApp Conversation", session=self.session, chat_id="1@c.us", status="Active", contact="nobody")

    def test_unique_field_raises_unique_validation_error(self):
        self.contact("34600111222@c.us")
        with self.assertRaises(frappe.UniqueValidationError):
            self.contact("34600111222@C.US")  # MariaDB's collation: case does not matter
        conv = admin_insert("WhatsApp Conversation", session=self.session, chat_id="1@c.us", status="Active").name
        msg = dict(session=self.session, conversation=conv, message_id="M1", timestamp="2025-11-07 12:00:00",
                   direction="Incoming", message_type="text", status="Delivered")
        admin_insert("WhatsApp Message", **msg)
        with self.assertRaises(frappe.UniqueValidationError) as cm:
            admin_insert("WhatsApp Message", **msg)
        self.assertNotIsInstance(cm.exception, frappe.DuplicateEntryError)

    def test_name_clash_raises_duplicate_entry_error(self):
        admin_insert("Role", role_name="Auditor")
        kit.as_admin(lambda: frappe.db.set_value("Role", "Auditor", "role_name", "Auditor-renamed"))
        with self.assertRaises(frappe.DuplicateEntryError):
            admin_insert("Role", role_name="Auditor")

    def test_data_length(self):
        with self.assertRaises(frappe.CharacterLengthExceededError):
            self.contact("1@c.us", contact_name="x" * 141)

    def test_unknown_keys_are_not_stored(self):
        self.contact("1@c.us", wa_id="1", payload_hash="abc")
        with self.assertRaises(frappe.OperationalError):
            frappe.get_all("WhatsApp Contact", fields=["wa_id"])

    # ---- the database ----

    def test_unknown_column_in_a_filter_is_a_database_error(self):
        for call in (lambda: frappe.db.get_value("WhatsApp Contact", {"external_id": "x"}, "name"),
                     lambda: frappe.get_all("WhatsApp Contact", filters={"session_id": "demo_session"}),
                     lambda: frappe.db.count("WhatsApp Message", {"chat_id": "x"}),
                     lambda: frappe.get_all("WhatsApp Message", order_by="sent_on desc")):
            with self.assertRaises(frappe.OperationalError) as cm:
                call()
            self.assertEqual(cm.exception.code, 1054)
        # ... except in exists, which hides it (and so hides the mistake).
        self.assertIsNone(frappe.db.exists("WhatsApp Contact", {"external_id": "x"}))

    def test_an_unknown_column_answers_500_over_http(self):
        import inboxhub_gateway.api as api  # a whitelisted function of the kit, patched to misbehave

        original = api.handle
        api.handle = lambda headers, body, now=None: (frappe.db.get_value("WhatsApp Contact", {"wa_id": "1"}), {})
        try:
            status, _ = kit.deliver(kit.batch("contacts", []))
        finally:
            api.handle = original
        self.assertEqual(status, 500)

    def test_datetimes_are_naive(self):
        for bad in ("2025-11-07T11:58:00Z", "2025-11-07 11:58:00+01:00",
                    datetime.datetime(2025, 11, 7, tzinfo=datetime.timezone.utc), "07/11/2025"):
            with self.assertRaises(frappe.OperationalError):
                self.contact("1@c.us", first_seen=bad)
        self.contact("1@c.us", first_seen="2025-11-07 12:58:00")
        value = frappe.db.get_value("WhatsApp Contact", "1@c.us", "first_seen")
        self.assertEqual(value, datetime.datetime(2025, 11, 7, 12, 58))  # read back as a datetime

    def test_json_columns_hold_json(self):
        conv = dict(session=self.session, chat_id="1@c.us", status="Active")
        with self.assertRaises(frappe.OperationalError):
            admin_insert("WhatsApp Conversation", metadata="{not json", **conv)
        name = admin_insert("WhatsApp Conversation", metadata={"a": 1}, **conv).name
        self.assertEqual(frappe.db.get_value("WhatsApp Conversation", name, "metadata"), '{"a": 1}')

    def test_transactions(self):
        self.contact("1@c.us")
        frappe.db.commit()
        self.contact("2@c.us")
        frappe.db.rollback()
        self.assertEqual(frappe.db.count("WhatsApp Contact"), 1)
        frappe.db.savepoint("sp")
        self.contact("3@c.us")
        frappe.db.rollback(save_point="sp")
        self.contact("4@c.us")
        frappe.db.commit()
        self.assertEqual(sorted(frappe.get_all("WhatsApp Contact", pluck="name")), ["1@c.us", "4@c.us"])

    def test_timestamp_mismatch(self):
        self.contact("1@c.us")
        a = kit.as_admin(frappe.get_doc, "WhatsApp Contact", "1@c.us")
        b = kit.as_admin(frappe.get_doc, "WhatsApp Contact", "1@c.us")
        a.pushname = "a"
        kit.as_admin(a.save)
        b.pushname = "b"
        with self.assertRaises(frappe.TimestampMismatchError):
            kit.as_admin(b.save)

    # ---- naming ----

    def test_naming_rules(self):
        c = self.contact("34600111222@c.us")
        self.assertEqual(c.name, "34600111222@c.us")  # field:contact_id
        c.contact_id = "34600111222@s.whatsapp.net"
        kit.as_admin(c.save)
        self.assertEqual(frappe.db.get_value("WhatsApp Contact", c.name, "contact_id"), "34600111222@c.us")
        convs = [admin_insert("WhatsApp Conversation", name="mine", session=self.session, chat_id="%d@c.us" % i,
                              status="Active").name for i in range(2)]
        self.assertEqual(convs, ["WACONV-0001", "WACONV-0002"])  # format:WACONV-{####}, a given name ignored
        self.assertNotEqual(self.session, "demo_session")  # sessions are named by hash, not by session_id
        with self.assertRaises(frappe.NameError):
            self.contact("a<b@c.us")

    # ---- permissions and HTTP ----

    def test_documents_need_a_role(self):
        testing.add_user("portal@example.invalid", ["Customer"], user_type="Website User")
        frappe.set_user("portal@example.invalid")
        try:
            with self.assertRaises(frappe.PermissionError):
                frappe.get_doc({"doctype": "WhatsApp Contact", "contact_id": "1@c.us", "session": self.session,
                                "phone_number": "1"}).insert()
            frappe.get_doc({"doctype": "WhatsApp Contact", "contact_id": "1@c.us", "session": self.session,
                            "phone_number": "1"}).insert(ignore_permissions=True)
        finally:
            frappe.set_user("Guest")

    def test_http_rules(self):
        testing.add_user("desk@example.invalid", ["System Manager"], api_key="k1", api_secret="s1")
        # Not whitelisted, or not for Guest, or not for this HTTP method: 403.
        self.assertEqual(app.handle("POST", "/api/method/inboxhub_gateway.store.apply_batch")[0], 403)
        self.assertEqual(app.handle("POST", kit.TOKEN, {}, b"")[0], 403)
        self.assertEqual(app.handle("GET", kit.INGEST, {}, b"")[0], 403)
        self.assertEqual(app.handle("GET", kit.TOKEN, {"Authorization": "token k1:s1"}, b"")[0], 403)
        # Wrong credentials: 401.
        self.assertEqual(app.handle("POST", kit.TOKEN, {"Authorization": "token k1:nope"}, b"")[0], 401)
        # A Frappe exception answers its status and rolls back.
        status, _ = app.handle("POST", kit.TOKEN, {"Authorization": "token k1:s1", "Content-Type": "application/json"},
                               b'{"session": "nope"}')
        self.assertEqual(status, 403)


if __name__ == "__main__":
    unittest.main()
