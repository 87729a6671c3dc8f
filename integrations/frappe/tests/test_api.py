"""Tests of inboxhub_gateway.api with the standard library only (a stub frappe module).

Run from the repository root: python3 -m unittest discover -s integrations/frappe/tests -v
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # integrations/frappe, holding the inboxhub_gateway package


class _Error(Exception):
    pass


def _install_stub_frappe():
    """A stub of the frappe module: whitelist, conf, session, request, local, db and errors."""
    f = types.ModuleType("frappe")
    f.whitelisted = []

    def whitelist(**kwargs):
        def deco(fn):
            f.whitelisted.append((fn.__name__, kwargs))
            return fn
        return deco

    f.whitelist = whitelist
    f.conf = {}
    f.session = types.SimpleNamespace(user="Guest")
    f.local = types.SimpleNamespace(response=types.SimpleNamespace(http_status_code=200))
    f.request = None
    f.PermissionError = type("PermissionError", (_Error,), {})
    f.ValidationError = type("ValidationError", (_Error,), {})
    f.AuthenticationError = type("AuthenticationError", (_Error,), {})
    f.DuplicateEntryError = type("DuplicateEntryError", (_Error,), {})
    f.db = types.SimpleNamespace(commits=0)

    def commit():
        f.db.commits += 1

    f.db.commit = commit
    sys.modules["frappe"] = f
    return f


FRAPPE = _install_stub_frappe()
from inboxhub_gateway import api  # noqa: E402  (after the stub)

SIGNING_SECRET = "crm-signing-secret-for-tests-0123456789"
JWT_SECRET = "jwt-hs256-secret-for-tests-0123456789abcdef"


class FakeStore:
    """An in-memory store with the FrappeStore interface, counting writes."""

    def __init__(self):
        self.rows = {}  # (doctype, key_field, key) -> fields
        self.inserts = []
        self.updates = []

    def find(self, doctype, key_field, key):
        row = self.rows.get((doctype, key_field, key))
        return None if row is None else dict(row)

    def insert(self, doctype, fields):
        key_field = "event_id" if doctype == api.DOCTYPE_EVENT else "external_id"
        key = (doctype, key_field, fields[key_field])
        if key in self.rows:
            raise AssertionError("duplicate insert of %r" % (key,))
        self.rows[key] = dict(fields, name="%s-%d" % (doctype, len(self.rows) + 1))
        self.inserts.append((doctype, fields[key_field]))

    def update(self, doctype, name, fields):
        for key, row in self.rows.items():
            if key[0] == doctype and row["name"] == name:
                row.update(fields)
                self.updates.append((doctype, name))
                return
        raise AssertionError("update of a missing row")

    def count(self, doctype):
        return sum(1 for k in self.rows if k[0] == doctype)


class FakeRequest:
    def __init__(self, body, headers):
        self._body = body
        self.headers = headers

    def get_data(self):
        return self._body


def signed_headers(body, secret=SIGNING_SECRET, ts=None):
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Gateway-Timestamp": ts, "X-Gateway-Signature": "sha256=" + mac}


BATCH = {
    "jobId": "0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11",
    "sessionId": "demo_session",
    "resource": "contacts",
    "offset": 0,
    "items": [
        {"id": "34657032985@s.whatsapp.net", "idKind": "phone", "type": "person",
         "phone": "34657032985", "name": "María Peña", "pushName": "María", "verifiedName": "",
         "imageUrl": "", "isWhatsApp": True},
        {"id": "123456789@lid", "idKind": "lid", "type": "person", "name": "Lid", "pushName": "",
         "verifiedName": "", "imageUrl": "", "isWhatsApp": True},
    ],
}

MESSAGES = {
    "jobId": "j2", "sessionId": "demo_session", "resource": "messages", "offset": 0,
    "items": [
        {"id": "3EB0C431D5A3F2B1", "chatId": "34657032985@s.whatsapp.net", "chatType": "individual",
         "from": "34657032985@s.whatsapp.net", "to": "34600000000@s.whatsapp.net", "fromMe": False,
         "type": "text", "text": "Hola", "timestamp": "2025-11-07T11:58:00Z", "status": "read"},
        {"id": "3EB0C431D5A3F2B1", "chatId": "120363025246125486@g.us", "chatType": "group",
         "from": "x@s.whatsapp.net", "to": "120363025246125486@g.us", "fromMe": True,
         "type": "text", "text": "same id, other chat", "status": "sent"},
    ],
}

EVENT = {
    "id": "evt_3f0c2b7e8a11d5a3f2b1c431d5a3f2b1", "type": "message.received",
    "sessionId": "demo_session", "occurredAt": "2025-11-07T11:58:00Z", "source": "webhook",
    "data": {"message": MESSAGES["items"][0]},
}


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class SignatureTest(unittest.TestCase):
    def test_valid_signature_accepted(self):
        store = FakeStore()
        body = dumps(BATCH)
        status, answer = api.handle_ingest(store, SIGNING_SECRET, signed_headers(body), body)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["counts"], {"inserted": 2, "updated": 0, "unchanged": 0})

    def test_matches_the_gateway_sign(self):
        # The same vector as syncjob.Sign("secret", "1700000000", []byte(`{"a":1}`)) computes.
        want = "sha256=" + hmac.new(b"secret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        self.assertEqual(api.sign("secret", "1700000000", b'{"a":1}'), want)

    def test_bad_signature_refused(self):
        store = FakeStore()
        body = dumps(BATCH)
        h = signed_headers(body, secret="another-secret-entirely-0123456789")
        status, answer = api.handle_ingest(store, SIGNING_SECRET, h, body)
        self.assertEqual(status, 401)
        self.assertIn("bad", answer["error"])
        # A body changed after signing.
        h = signed_headers(body)
        status, _ = api.handle_ingest(store, SIGNING_SECRET, h, body + b" ")
        self.assertEqual(status, 401)
        self.assertEqual(store.inserts, [])

    def test_missing_headers_refused(self):
        store = FakeStore()
        body = dumps(BATCH)
        full = signed_headers(body)
        for drop in ("X-Gateway-Timestamp", "X-Gateway-Signature"):
            h = {k: v for k, v in full.items() if k != drop}
            status, answer = api.handle_ingest(store, SIGNING_SECRET, h, body)
            self.assertEqual(status, 401, drop)
            self.assertIn("missing", answer["error"])
        status, _ = api.handle_ingest(store, SIGNING_SECRET, {}, body)
        self.assertEqual(status, 401)
        # No secret configured: everything is refused.
        status, _ = api.handle_ingest(store, "", full, body)
        self.assertEqual(status, 401)
        self.assertEqual(store.inserts, [])

    def test_stale_timestamp_refused(self):
        store = FakeStore()
        body = dumps(BATCH)
        now = int(time.time())
        for ts in (now - 301, now + 301, now - 3600):
            status, answer = api.handle_ingest(store, SIGNING_SECRET, signed_headers(body, ts=ts), body)
            self.assertEqual(status, 401, ts)
            self.assertIn("stale", answer["error"])
        status, _ = api.handle_ingest(store, SIGNING_SECRET, signed_headers(body, ts=now - 290), body)
        self.assertEqual(status, 200)
        status, answer = api.handle_ingest(store, SIGNING_SECRET,
                                           {"X-Gateway-Timestamp": "yesterday",
                                            "X-Gateway-Signature": "sha256=00"}, body)
        self.assertEqual(status, 401)
        self.assertIn("malformed", answer["error"])


class UpsertTest(unittest.TestCase):
    def test_same_batch_twice_upserts_once(self):
        store = FakeStore()
        body = dumps(BATCH)
        for _ in range(2):
            status, _ = api.handle_ingest(store, SIGNING_SECRET, signed_headers(body), body)
            self.assertEqual(status, 200)
        self.assertEqual(len(store.inserts), 2)
        self.assertEqual(store.updates, [])
        self.assertEqual(store.count(api.DOCTYPE_CONTACT), 2)
        row = store.find(api.DOCTYPE_CONTACT, "external_id", "demo_session|34657032985@s.whatsapp.net")
        self.assertEqual(row["full_name"], "María Peña")
        self.assertEqual(row["phone"], "34657032985")

    def test_changed_item_updates(self):
        store = FakeStore()
        api.upsert_batch(store, BATCH)
        changed = json.loads(json.dumps(BATCH))
        changed["items"][0]["name"] = "María P."
        counts = api.upsert_batch(store, changed)
        self.assertEqual(counts, {"inserted": 0, "updated": 1, "unchanged": 1})
        row = store.find(api.DOCTYPE_CONTACT, "external_id", "demo_session|34657032985@s.whatsapp.net")
        self.assertEqual(row["full_name"], "María P.")

    def test_messages_keyed_by_chat_and_id(self):
        store = FakeStore()
        counts = api.upsert_batch(store, MESSAGES)
        self.assertEqual(counts["inserted"], 2)
        row = store.find(api.DOCTYPE_MESSAGE, "external_id",
                         "demo_session|34657032985@s.whatsapp.net|3EB0C431D5A3F2B1")
        self.assertEqual(row["sent_at"], "2025-11-07 11:58:00")
        self.assertEqual(api.upsert_batch(store, MESSAGES)["unchanged"], 2)

    def test_same_event_twice_stored_once(self):
        store = FakeStore()
        body = dumps(EVENT)
        answers = []
        for _ in range(2):
            status, answer = api.handle_ingest(store, SIGNING_SECRET, signed_headers(body), body)
            self.assertEqual(status, 200)
            answers.append(answer["stored"])
        self.assertEqual(answers, [True, False])
        self.assertEqual(store.count(api.DOCTYPE_EVENT), 1)
        self.assertEqual(store.count(api.DOCTYPE_MESSAGE), 1)

    def test_bad_bodies(self):
        store = FakeStore()
        for body in (b"not json", b"[]", dumps({"hello": 1}),
                     dumps(dict(BATCH, resource="calls")),
                     dumps(dict(BATCH, items=[{"name": "no id"}]))):
            status, _ = api.handle_ingest(store, SIGNING_SECRET, signed_headers(body), body)
            self.assertEqual(status, 400, body)
        self.assertEqual(store.inserts, [])


class IngestMethodTest(unittest.TestCase):
    """The whitelisted method itself, over the stub frappe.request."""

    def setUp(self):
        FRAPPE.conf = {"inboxhub_signing_secret": SIGNING_SECRET}
        FRAPPE.local.response.http_status_code = 200

    def test_ingest_is_guest_whitelisted(self):
        self.assertIn(("ingest", {"allow_guest": True}), FRAPPE.whitelisted)
        self.assertIn(("gateway_token", {}), FRAPPE.whitelisted)

    def test_ingest_refuses_bad_signature(self):
        body = dumps(BATCH)
        h = signed_headers(body)
        h["X-Gateway-Signature"] = "sha256=" + "0" * 64
        FRAPPE.request = FakeRequest(body, h)
        answer = api.ingest()
        self.assertFalse(answer["ok"])
        self.assertEqual(FRAPPE.local.response.http_status_code, 401)

    def test_ingest_accepts_and_commits(self):
        class Recording(FakeStore):
            pass

        rec = Recording()
        orig = api.FrappeStore
        api.FrappeStore = lambda: rec
        try:
            body = dumps(BATCH)
            FRAPPE.request = FakeRequest(body, signed_headers(body))
            before = FRAPPE.db.commits
            answer = api.ingest()
        finally:
            api.FrappeStore = orig
        self.assertTrue(answer["ok"], answer)
        self.assertEqual(FRAPPE.local.response.http_status_code, 200)
        self.assertEqual(FRAPPE.db.commits, before + 1)
        self.assertEqual(rec.count(api.DOCTYPE_CONTACT), 2)


def verify_hs256(token, secret):
    """An independent HS256 check: returns the claims or raises."""
    head, payload, sig = token.split(".")
    want = hmac.new(secret.encode(), (head + "." + payload).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(want, b64url_decode(sig)):
        raise ValueError("bad signature")
    header = json.loads(b64url_decode(head))
    if header != {"alg": "HS256", "typ": "JWT"}:
        raise ValueError("header %r" % header)
    return json.loads(b64url_decode(payload))


class TokenTest(unittest.TestCase):
    def setUp(self):
        FRAPPE.conf = {
            "inboxhub_jwt_secret": JWT_SECRET,
            "inboxhub_jwt_issuer": "https://crm.example.com",
            "inboxhub_jwt_audience": "inboxhub-gateway",
            "inboxhub_gateway_url": "https://gateway.example.com/",
        }

    def test_token_verifies_and_carries_claims(self):
        FRAPPE.session.user = "agent@example.com"
        before = int(time.time())
        out = api.gateway_token()
        self.assertEqual(out["gateway_url"], "https://gateway.example.com")
        self.assertEqual(out["expires_in"], 300)
        claims = verify_hs256(out["token"], JWT_SECRET)
        self.assertEqual(claims["sub"], "agent@example.com")
        self.assertEqual(claims["iss"], "https://crm.example.com")
        self.assertEqual(claims["aud"], "inboxhub-gateway")
        self.assertEqual(claims["scope"], "sessions:read sessions:write sync")
        self.assertGreaterEqual(claims["iat"], before)
        self.assertEqual(claims["exp"] - claims["iat"], 300)
        self.assertNotIn("=", out["token"])
        with self.assertRaises(ValueError):
            verify_hs256(out["token"], JWT_SECRET + "x")

    def test_scope_configurable(self):
        FRAPPE.session.user = "agent@example.com"
        FRAPPE.conf["inboxhub_jwt_scope"] = "sessions:read"
        claims = verify_hs256(api.gateway_token()["token"], JWT_SECRET)
        self.assertEqual(claims["scope"], "sessions:read")

    def test_guest_refused(self):
        FRAPPE.session.user = "Guest"
        with self.assertRaises(FRAPPE.PermissionError):
            api.gateway_token()

    def test_short_secret_refused(self):
        FRAPPE.session.user = "agent@example.com"
        FRAPPE.conf["inboxhub_jwt_secret"] = "short"
        with self.assertRaises(FRAPPE.ValidationError):
            api.gateway_token()


if __name__ == "__main__":
    unittest.main()
