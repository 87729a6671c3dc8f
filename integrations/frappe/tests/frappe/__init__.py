"""A stand-in for Frappe (v15) that enforces the rules the kit depends on, built from the CRM's
WhatsApp doctypes (schema.py). It is small on purpose: the module surface the kit uses, with
Frappe's behaviour, and nothing that accepts what Frappe would refuse.

What it enforces (each rule has a test in test_standin.py):
- schema: only the doctypes of schema.py exist; a Link must name an existing document
  (LinkValidationError); required fields (MandatoryError); Select values within the options
  (ValidationError); Data at most 140 characters (CharacterLengthExceededError); keys of a
  document that are not fields are never stored;
- uniqueness: a second row with a unique field's value raises UniqueValidationError, a second
  document with the same name DuplicateEntryError; text compares case-insensitively;
- naming: field:<field> (the name is the field's value, which cannot change afterwards),
  format:PREFIX-{####} series, hash; a name passed in is ignored;
- the database: a filter, a field or an order on a column that does not exist is a database error
  (a 500), except in ``frappe.db.exists``, which answers None; datetimes are naive (an offset is a
  database error); JSON columns hold valid JSON; writes are transactional (commit, rollback,
  savepoints); a save after someone else's save is TimestampMismatchError;
- permissions: documents are written only by users holding one of the doctype's roles, unless
  ``ignore_permissions``; whitelisted methods are called over HTTP as Frappe does (app.py):
  Guest only where ``allow_guest``, the declared HTTP methods only, token authentication.
"""

import types

from . import utils  # noqa: F401  (frappe.utils)
from .database import Database, _dict
from .document import Document
from .exceptions import (AuthenticationError, CharacterLengthExceededError, CSRFTokenError,  # noqa: F401
                         DoesNotExistError, DuplicateEntryError, LinkValidationError, MandatoryError,
                         NameError, OperationalError, PermissionError, TimestampMismatchError,
                         UniqueValidationError, ValidationError)

__version__ = "15.0.0-standin"

db = None
conf = _dict()
flags = _dict()
session = _dict(user="Guest")
local = types.SimpleNamespace(response=_dict(), site="standin.localhost", request_ip="127.0.0.1")
request = None
form_dict = _dict()
error_log = []
messages = []

# whitelisted functions -> their options (allow_guest, methods), as frappe.whitelist records them
whitelisted = {}


def whitelist(allow_guest=False, xss_safe=False, methods=None):
    methods = methods or ["GET", "POST", "PUT", "DELETE"]

    def register(fn):
        whitelisted[fn] = {"allow_guest": allow_guest, "methods": list(methods)}
        return fn

    return register


def _(msg, lang=None, context=None):
    return msg


def throw(msg, exc=ValidationError, title=None, is_minimizable=False, wide=False, as_list=False):
    raise exc(msg)


def msgprint(msg, title=None, indicator=None, raise_exception=False, **kwargs):
    messages.append(msg)
    if raise_exception:
        raise (raise_exception if isinstance(raise_exception, type) else ValidationError)(msg)


def log_error(title=None, message=None, reference_doctype=None, reference_name=None):
    entry = _dict(title=title, message=message, reference_doctype=reference_doctype, reference_name=reference_name)
    error_log.append(entry)
    return entry


def publish_realtime(event=None, message=None, user=None, doctype=None, docname=None, after_commit=False):
    messages.append(_dict(realtime=event, message=message, user=user))


# ---- documents ----


def get_doc(*args, **kwargs):
    if args and isinstance(args[0], dict):
        values = dict(args[0])
        return Document(values["doctype"], values)
    if kwargs.get("doctype") and len(args) == 0:
        values = dict(kwargs)
        return Document(values["doctype"], values)
    doctype = args[0]
    name = args[1] if len(args) > 1 else None
    meta = db.meta(doctype)
    if meta.issingle:
        return Document.load(doctype, doctype)
    if name is None:
        raise DoesNotExistError("%s: no name" % doctype)
    return Document.load(doctype, name)


def new_doc(doctype, **kwargs):
    return Document(doctype, kwargs)


def get_all(doctype, filters=None, fields=None, order_by=None, limit=None, limit_page_length=None,
            pluck=None, ignore_permissions=True, **kwargs):
    if kwargs.get("or_filters"):
        raise NotImplementedError("or_filters are not used by the kit")
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",")]
    if pluck:
        fields = [pluck]
    rows = db.select(doctype, filters, fields or ["name"], order_by=order_by, limit=limit or limit_page_length)
    if pluck:
        return [r[pluck] for r in rows]
    return rows


def get_list(doctype, *args, **kwargs):
    if not has_permission(doctype, "read"):
        raise PermissionError("No permission to read %s" % doctype)
    return get_all(doctype, *args, **kwargs)


def get_cached_value(doctype, name, fieldname="name", as_dict=False):
    return db.get_value(doctype, name, fieldname, as_dict=as_dict)


def get_roles(user=None):
    user = user or session.user
    if user == "Guest" or not user:
        return ["Guest"]
    if user == "Administrator":
        return [r["name"] for r in db.select("Role", None, ["name"])] + ["Administrator", "All", "Guest"]
    roles = [r["role"] for r in db.select("Has Role", {"parent": user, "parenttype": "User"}, ["role"])]
    return roles + ["All", "Guest"]


def has_permission(doctype, ptype="read", doc=None, user=None, throw=False):
    user = user or session.user
    if user == "Administrator":
        return True
    ok = bool(set(get_roles(user)) & set(db.meta(doctype).roles))
    if not ok and throw:
        raise PermissionError("No permission for %s" % doctype)
    return ok


def set_user(user):
    session.user = user


def connect_site(database):
    """Make ``database`` the site's (frappe.db)."""
    global db
    db = database
    return database


def reset_request_state():
    """Per-request state, as Frappe initialises it for every request."""
    global request, form_dict
    local.response = _dict()
    request = None
    form_dict = _dict()
    flags.clear()


__all__ = ["Database", "Document", "_dict"]
