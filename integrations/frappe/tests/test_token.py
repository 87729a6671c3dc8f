"""gateway_token over the stand-in's HTTP handling: who gets a token for which session, and with
which scopes."""

import base64
import hashlib
import hmac
import json
import time
import unittest

import kit
import frappe
from frappe import app, testing

HEADERS = {"Content-Type": "application/json"}


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class TokenTest(unittest.TestCase):
    def setUp(self):
        kit.new_site(inboxhub_jwt_issuer="https://crm.example.invalid", inboxhub_jwt_audience="inboxhub-gateway")
        self.users = {}
        for email, roles, utype in (
            ("admin@example.invalid", ["System Manager"], "System User"),
            ("manager@example.invalid", ["WhatsApp Manager"], "System User"),
            ("agent@example.invalid", ["WhatsApp User"], "System User"),
            ("viewer@example.invalid", ["WhatsApp User"], "System User"),
            ("norole@example.invalid", ["Sales User"], "System User"),
            ("other@example.invalid", ["WhatsApp Manager"], "System User"),
            ("portal@example.invalid", ["Customer", "WhatsApp User"], "Website User"),
        ):
            key, secret = "key-" + email.split("@")[0], "secret-" + email.split("@")[0]
            testing.add_user(email, roles, user_type=utype, api_key=key, api_secret=secret)
            self.users[email] = "token %s:%s" % (key, secret)
        self.session = testing.add_session("demo_session", assigned=[
            ("manager@example.invalid", "Manager"), ("agent@example.invalid", "Agent", 1),
            ("viewer@example.invalid", "Viewer"), ("norole@example.invalid", "Manager"),
            ("portal@example.invalid", "Manager")])
        self.other = testing.add_session("sales_team", assigned=[("other@example.invalid", "Manager")])

    def token(self, user, session=None, method="POST"):
        headers = dict(HEADERS)
        if user:
            headers["Authorization"] = self.users[user]
        body = json.dumps({"session": self.session if session is None else session}).encode()
        status, out = app.handle(method, kit.TOKEN, headers, body)
        return status, json.loads(out)

    def scopes(self, user, session=None):
        status, out = self.token(user, session)
        self.assertEqual(status, 200, (user, out, app.last_traceback))
        return out["message"]["scope"].split()

    def test_scopes_follow_the_role(self):
        everything = ["sessions:read", "sessions:write", "messages:read", "messages:send", "sync"]
        self.assertEqual(self.scopes("admin@example.invalid"), everything)
        self.assertEqual(self.scopes("admin@example.invalid", self.other), everything)
        self.assertEqual(self.scopes("manager@example.invalid"), everything)
        self.assertEqual(self.scopes("agent@example.invalid"), ["sessions:read", "messages:read", "messages:send"])
        self.assertEqual(self.scopes("viewer@example.invalid"), ["sessions:read", "messages:read"])

    def test_nothing_for_those_the_app_keeps_out(self):
        for user, session in ((None, None),  # Guest
                              ("portal@example.invalid", None),  # a portal user, even assigned
                              ("norole@example.invalid", None),  # assigned, but no WhatsApp role
                              ("other@example.invalid", None),  # a WhatsApp Manager of another session
                              ("manager@example.invalid", "sales_team"),  # the session id is not the document's name
                              ("manager@example.invalid", "no-such-session"),
                              ("manager@example.invalid", ""),
                              ("manager@example.invalid", ["x"]),
                              ("manager@example.invalid", {"name": "x"}),
                              ("manager@example.invalid", "x" * 10000)):
            status, out = self.token(user, session)
            self.assertEqual(status, 403, (user, session, out))
            self.assertNotIn("token", json.dumps(out))
        self.assertEqual(self.token("admin@example.invalid", method="GET")[0], 403)  # POST only

    def test_the_token(self):
        before = int(time.time())
        status, out = self.token("agent@example.invalid")
        self.assertEqual(status, 200)
        m = out["message"]
        self.assertEqual((m["gateway_url"], m["session_id"], m["expires_in"]), ("https://gateway.example.invalid", "demo_session", 300))
        head, payload, sig = m["token"].split(".")
        self.assertEqual(b64json(head), {"alg": "HS256", "typ": "JWT"})
        claims = b64json(payload)
        self.assertEqual((claims["sub"], claims["iss"], claims["aud"]),
                         ("agent@example.invalid", "https://crm.example.invalid", "inboxhub-gateway"))
        self.assertEqual(claims["exp"] - claims["iat"], 300)
        # Bound to the session it was asked for: the gateway refuses it on any other session.
        self.assertEqual(claims["session_id"], "demo_session")
        self.assertGreaterEqual(claims["iat"], before)
        want = hmac.new(kit.JWT_SECRET.encode(), (head + "." + payload).encode(), hashlib.sha256).digest()
        self.assertEqual(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), want)

    def test_a_site_without_the_secret_mints_nothing(self):
        frappe.conf["inboxhub_jwt_secret"] = "too-short"
        status, out = self.token("admin@example.invalid")
        self.assertEqual(status, 417)
        self.assertNotIn("token", out)


if __name__ == "__main__":
    unittest.main()
