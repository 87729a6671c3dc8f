"""Whitelisted methods of the Inbox Hub gateway kit.

- ``gateway_token`` (desk users): a short-lived HS256 JWT for one WhatsApp Session, with the scopes
  the user's place in that session allows (access.py), so the browser calls the gateway with a
  bearer token and no gateway key ever reaches it.
- ``ingest`` (the gateway; Guest, authenticated by the signature): the signed sync batches
  (CRM_SINK_URL) and events (CRM_EVENTS_URL), written into the app's doctypes (store.py).

Site config keys (bench set-config): inboxhub_gateway_url, inboxhub_jwt_secret,
inboxhub_jwt_issuer, inboxhub_jwt_audience, inboxhub_jwt_ttl, inboxhub_signing_secret.
"""

import json

import frappe
from frappe import _
from frappe.utils import cint

from inboxhub_gateway import access, security, store

MIN_SECRET = 32


def _conf(key, default=None):
    value = frappe.conf.get(key)
    return default if value in (None, "") else value


@frappe.whitelist(methods=["POST"])
def gateway_token(session=None):
    """{token, gateway_url, expires_in, scope, session_id} for the WhatsApp Session named
    ``session``; PermissionError when the user may not use the gateway for it."""
    user = frappe.session.user
    doc, scopes = access.session_for(user, session)
    secret = _conf("inboxhub_jwt_secret")
    if not secret or len(str(secret)) < MIN_SECRET:
        frappe.throw(_("The gateway is not configured on this site (inboxhub_jwt_secret)."))
    ttl = min(max(cint(_conf("inboxhub_jwt_ttl", security.TOKEN_TTL)), 30), 3600)
    claims = security.token_claims(user, scopes, _conf("inboxhub_jwt_issuer", ""), _conf("inboxhub_jwt_audience", ""), ttl=ttl,
                                   session_id=doc.session_id)
    return {
        "token": security.mint_jwt(secret, claims),
        "gateway_url": str(_conf("inboxhub_gateway_url", "")).rstrip("/"),
        "expires_in": ttl,
        "scope": claims["scope"],
        "session_id": doc.session_id,
    }


def handle(headers, body, now=None):
    """Verify and apply one delivery: (HTTP status, answer). 401 for a signature or timestamp
    refused, 400 for a body that is neither a batch nor an event, 422 for an unknown session,
    else 200 with what was done."""
    reason = security.verify_signature(_conf("inboxhub_signing_secret"), headers.get(security.HEADER_TIMESTAMP), body,
                                       headers.get(security.HEADER_SIGNATURE), now=now)
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
            counts = store.apply_batch(doc)
            frappe.db.commit()
            return 200, {"ok": True, "kind": "batch", "resource": doc["resource"], "counts": counts}
        if "type" in doc and "id" in doc:
            answer = store.apply_event(doc, headers)
            frappe.db.commit()
            return 200, dict(answer, ok=True, kind="event")
    except store.Refused as e:
        frappe.db.rollback()
        return e.status, {"ok": False, "error": str(e)}
    return 400, {"ok": False, "error": "neither a sync batch nor an event"}


@frappe.whitelist(allow_guest=True, methods=["POST"])
def ingest():
    """CRM_SINK_URL and CRM_EVENTS_URL: /api/method/inboxhub_gateway.api.ingest"""
    req = frappe.request
    status, answer = handle(req.headers, req.get_data() or b"")
    if status != 200:
        frappe.local.response["http_status_code"] = status
    return answer
