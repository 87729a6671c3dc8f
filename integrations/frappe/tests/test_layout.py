"""The kit is an installable Frappe app: its layout, its hooks, and that it touches only what the
WhatsApp app has."""

import ast
import os
import re
import unittest

import kit
import frappe
from frappe import schema

from inboxhub_gateway import api, hooks, store

APP = kit.APP_ROOT
PKG = os.path.join(APP, "inboxhub_gateway")


def read(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return f.read()


class LayoutTest(unittest.TestCase):
    def test_app_layout(self):
        pyproject = read(APP, "pyproject.toml")
        self.assertIn('name = "inboxhub_gateway"', pyproject)
        self.assertIn("[tool.bench.frappe-dependencies]", pyproject)
        self.assertIn("flit_core", pyproject)
        self.assertTrue(os.path.isfile(os.path.join(APP, "README.md")))
        self.assertRegex(read(PKG, "__init__.py"), r'__version__ = "\d+\.\d+\.\d+"')
        modules = [m.strip() for m in read(PKG, "modules.txt").splitlines() if m.strip()]
        self.assertEqual(modules, ["Inbox Hub Gateway"])
        for m in modules:  # bench creates each module's Module Def from its folder, frappe.scrub(name)
            self.assertTrue(os.path.isfile(os.path.join(PKG, m.lower().replace(" ", "_"), "__init__.py")), m)
        patches = read(PKG, "patches.txt")
        self.assertIn("[pre_model_sync]", patches)
        self.assertIn("[post_model_sync]", patches)

    def test_hooks(self):
        self.assertEqual(hooks.app_name, "inboxhub_gateway")
        self.assertIn("xappiens_whatsapp", hooks.required_apps)
        self.assertEqual(list(hooks.doctype_js), ["WhatsApp Session"])
        self.assertTrue(os.path.isfile(os.path.join(PKG, hooks.doctype_js["WhatsApp Session"])))
        # No doctype, no custom field: the kit writes the WhatsApp app's own doctypes and fields.
        self.assertFalse(hasattr(hooks, "fixtures"))
        self.assertFalse(os.path.exists(os.path.join(PKG, "fixtures")))

    def test_whitelisted_methods(self):
        self.assertEqual(frappe.whitelisted[api.gateway_token], {"allow_guest": False, "methods": ["POST"]})
        self.assertEqual(frappe.whitelisted[api.ingest], {"allow_guest": True, "methods": ["POST"]})

    def test_only_the_apps_doctypes_and_fields(self):
        for doctype, fields in ((store.CONTACT, store.CONTACT_FIELDS), (store.CONVERSATION, store.CONVERSATION_FIELDS),
                                (store.MESSAGE, store.MESSAGE_FIELDS)):
            meta = schema.DOCTYPES[doctype]
            for f in fields:
                self.assertTrue(meta.has_column(f), (doctype, f))
        # Every doctype named in the kit's Python is one of the app's (or Frappe's User).
        for name in ("store.py", "access.py", "api.py"):
            for doctype in set(re.findall(r'"(WhatsApp [A-Za-z ]+)"', read(PKG, name))) - {"WhatsApp Manager", "WhatsApp User"}:
                self.assertIn(doctype, schema.DOCTYPES, (name, doctype))  # (those two are roles)
        # The kit never asks frappe.db.exists: it hides a filter on a missing column.
        for name in ("store.py", "access.py", "api.py"):
            tree = ast.parse(read(PKG, name))
            calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
            self.assertNotIn("exists", calls, name)
            self.assertNotIn("sql", calls, name)

    def test_form_script_takes_over_the_button(self):
        js = read(PKG, hooks.doctype_js["WhatsApp Session"])
        refresh = js[js.index('frappe.ui.form.on("WhatsApp Session"'):]
        self.assertLess(refresh.index("frm.remove_custom_button(BUTTON, GROUP)"), refresh.index("frm.add_custom_button(__(BUTTON)"))
        self.assertIn('const BUTTON = "Sincronizar Ahora";', js)
        self.assertIn('const GROUP = "Acciones";', js)
        self.assertIn("args: { session: name }", js)


if __name__ == "__main__":
    unittest.main()
