"""Building a stand-in site for a test: a fresh database with the roles and users Frappe and the
CRM app create on install, the site's time zone and site_config."""

import frappe
from frappe.database import Database

ROLES = ("System Manager", "WhatsApp Manager", "WhatsApp User", "Sales User", "Customer")


def new_site(time_zone="Europe/Madrid", conf=None):
    """A fresh site: roles, Administrator and Guest, System Settings' time zone, site_config."""
    frappe.connect_site(Database())
    frappe.conf.clear()
    frappe.conf.update(conf or {})
    frappe.error_log.clear()
    frappe.messages.clear()
    frappe.set_user("Administrator")
    try:
        for role in ROLES:
            frappe.get_doc({"doctype": "Role", "role_name": role}).insert()
        frappe.get_doc({"doctype": "User", "email": "Administrator", "first_name": "Administrator", "enabled": 1,
                        "user_type": "System User"}).insert()
        frappe.get_doc({"doctype": "User", "email": "Guest", "first_name": "Guest", "enabled": 1,
                        "user_type": "Website User"}).insert()
        frappe.db.set_single_value("System Settings", "time_zone", time_zone)
        frappe.db.commit()
    finally:
        frappe.set_user("Guest")
    return frappe.db


def add_user(email, roles=(), user_type="System User", api_key=None, api_secret=None, enabled=1):
    frappe.set_user("Administrator")
    try:
        doc = frappe.get_doc({"doctype": "User", "email": email, "first_name": email.split("@")[0],
                              "enabled": enabled, "user_type": user_type, "api_key": api_key,
                              "api_secret": api_secret, "roles": [{"role": r} for r in roles]}).insert()
        frappe.db.commit()
        return doc.name
    finally:
        frappe.set_user("Guest")


def add_session(session_id, session_name=None, status="Connected", is_connected=None, assigned=()):
    """A WhatsApp Session as the app creates it; ``assigned`` lists (user, role[, can_send])."""
    frappe.set_user("Administrator")
    try:
        doc = frappe.get_doc({
            "doctype": "WhatsApp Session", "session_id": session_id, "session_name": session_name or session_id,
            "status": status, "is_connected": int(status == "Connected") if is_connected is None else is_connected,
            "is_active": 1,
            "assigned_users": [{"user": a[0], "role": a[1], "can_send_messages": int(a[2]) if len(a) > 2 else 0}
                               for a in assigned],
        }).insert()
        frappe.db.commit()
        return doc.name
    finally:
        frappe.set_user("Guest")
