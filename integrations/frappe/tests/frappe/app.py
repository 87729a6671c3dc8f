"""How the stand-in serves /api/method/<dotted.path>, as frappe.app and frappe.handler do.

- The caller is Guest, or the user whose API key and secret come in
  ``Authorization: token <api_key>:<api_secret>`` (a wrong pair is 401).
- The function must be whitelisted (403 otherwise), allow Guest if the caller is Guest (403), and
  accept the request's HTTP method (403).
- Arguments come from the query string and the body (form or JSON object); only those the function
  takes are passed.
- Success commits and answers {"message": <return value>} with local.response.http_status_code
  (default 200). An exception rolls the transaction back and answers its http_status_code (Frappe's
  exceptions) or 500 (anything else, such as a database error).
"""

import importlib
import inspect
import json
import traceback
from urllib.parse import parse_qsl

import frappe


last_traceback = ""  # of the last request that raised (for test failure messages)


class Headers:
    """Case-insensitive request headers (werkzeug's EnvironHeaders for what the kit uses)."""

    def __init__(self, items):
        self._items = [(str(k), str(v)) for k, v in (items.items() if isinstance(items, dict) else items)]

    def get(self, key, default=None):
        key = key.lower()
        for k, v in self._items:
            if k.lower() == key:
                return v
        return default

    def __contains__(self, key):
        return self.get(key) is not None

    def items(self):
        return list(self._items)


class Request:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = Headers(headers)
        self._body = body or b""

    def get_data(self, as_text=False, cache=True, parse_form_data=False):
        return self._body.decode("utf-8") if as_text else self._body


def _user_of(headers):
    auth = headers.get("Authorization")
    if not auth:
        return "Guest"
    scheme, _, cred = auth.partition(" ")
    key, _, secret = cred.strip().partition(":")
    if scheme.lower() != "token" or not key or not secret:
        raise frappe.AuthenticationError("Invalid authorization header")
    row = frappe.db.get_value("User", {"api_key": key}, ["name", "api_secret", "enabled"], as_dict=True)
    if not row or row["api_secret"] != secret or not row["enabled"]:
        raise frappe.AuthenticationError("Invalid API key or secret")
    return row["name"]


def _resolve(dotted):
    module, _, fn = dotted.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError, ValueError):
        raise frappe.PermissionError("Function %s is not whitelisted." % dotted)
    if obj not in frappe.whitelisted:
        raise frappe.PermissionError("Function %s is not whitelisted." % dotted)
    return obj


def _args(query, headers, body):
    args = dict(parse_qsl(query or "", keep_blank_values=True))
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if body and ctype == "application/json":
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            args.update(doc)
    elif body and ctype == "application/x-www-form-urlencoded":
        args.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    return args


def _call(fn, args):
    sig = inspect.signature(fn)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(**args)
    return fn(**{k: v for k, v in args.items() if k in sig.parameters})


def handle(method, path, headers=None, body=b"", query=""):
    """Serve one request; returns (status, body as bytes)."""
    headers = Headers(headers or {})
    frappe.reset_request_state()
    frappe.request = Request(method, path, headers.items(), body)
    try:
        if not path.startswith("/api/method/"):
            return 404, json.dumps({"exc_type": "DoesNotExistError"}).encode()
        frappe.set_user(_user_of(headers))
        fn = _resolve(path[len("/api/method/"):])
        opts = frappe.whitelisted[fn]
        if frappe.session.user == "Guest" and not opts["allow_guest"]:
            raise frappe.PermissionError("Not permitted")
        if method.upper() not in opts["methods"]:
            raise frappe.PermissionError("Not permitted: %s" % method)
        frappe.form_dict = frappe._dict(_args(query, headers, body))
        result = _call(fn, dict(frappe.form_dict))
        frappe.db.commit()
        status = int(frappe.local.response.get("http_status_code") or 200)
        return status, json.dumps({"message": result}, default=str).encode()
    except Exception as e:  # noqa: BLE001 (Frappe's handler answers every exception)
        global last_traceback
        last_traceback = traceback.format_exc()
        frappe.db.rollback()
        status = getattr(e, "http_status_code", 500)
        return status, json.dumps({"exc_type": type(e).__name__}).encode()
    finally:
        frappe.set_user("Guest")
