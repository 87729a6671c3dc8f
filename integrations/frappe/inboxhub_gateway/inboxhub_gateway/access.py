"""Who may call the gateway for a WhatsApp Session, and with which scopes, as the app decides who
may see a session: System Manager, or a user listed in the session's assigned_users.

- Guest, disabled users and portal users (Website User) get nothing.
- System Manager gets every scope the desk needs.
- An assigned user gets the scopes of the role the session gives them: Viewer reads, Agent also
  sends, Manager also reconnects and syncs. They must also hold one of the app's WhatsApp roles,
  without which the app shows them no contact, conversation or message.
"""

import frappe
from frappe import _

SESSION = "WhatsApp Session"
SYSTEM_MANAGER = "System Manager"
WHATSAPP_ROLES = ("WhatsApp Manager", "WhatsApp User")

READ = ("sessions:read", "messages:read")
SEND = READ + ("messages:send",)
MANAGE = SEND + ("sessions:write", "sync")
EVERYTHING = MANAGE

ROLE_SCOPES = {"Viewer": READ, "Agent": SEND, "Manager": MANAGE}
ORDER = ("sessions:read", "sessions:write", "messages:read", "messages:send", "sync")


def _ordered(scopes):
    return [s for s in ORDER if s in scopes]


def scopes_for(user, session):
    """The gateway scopes ``user`` may hold for the WhatsApp Session document ``session`` (a
    Document), or [] when none."""
    if not user or user == "Guest":
        return []
    row = frappe.db.get_value("User", user, ["enabled", "user_type"], as_dict=True)
    if user != "Administrator" and (not row or not row.get("enabled") or row.get("user_type") != "System User"):
        return []
    roles = set(frappe.get_roles(user))
    if SYSTEM_MANAGER in roles:
        return _ordered(EVERYTHING)
    if not roles & set(WHATSAPP_ROLES):
        return []
    granted = set()
    for assignment in session.get("assigned_users") or []:
        if assignment.get("user") == user:
            granted |= set(ROLE_SCOPES.get(assignment.get("role"), ()))
    return _ordered(granted)


def session_for(user, name):
    """The WhatsApp Session ``name`` and the user's scopes on it; PermissionError when the user
    may not call the gateway for it (a session that does not exist is refused the same way)."""
    if not name or not isinstance(name, str) or len(name) > 140:
        raise frappe.PermissionError(_("Not permitted"))
    try:
        session = frappe.get_doc(SESSION, name)
    except frappe.DoesNotExistError:
        raise frappe.PermissionError(_("Not permitted"))
    scopes = scopes_for(user, session)
    if not scopes:
        raise frappe.PermissionError(_("Not permitted"))
    return session, scopes
