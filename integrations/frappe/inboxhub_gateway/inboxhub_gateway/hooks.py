"""Hooks of the Inbox Hub gateway kit, installed next to the CRM's WhatsApp app.

The kit adds no doctype and no custom field: it writes the WhatsApp app's own doctypes. It brings
a form script for WhatsApp Session (the gateway's "Sincronizar Ahora", which replaces the app's
button of the same name) and two whitelisted methods (api.py).
"""

app_name = "inboxhub_gateway"
app_title = "Inbox Hub Gateway"
app_publisher = "Inbox Hub gateway maintainers"
app_description = "Sincronizar Ahora through the Inbox Hub gateway: tokens for the desk, signed ingest into the WhatsApp doctypes"
app_email = "maintainers@example.invalid"
app_license = "Proprietary"

# The WhatsApp app owns the doctypes this kit writes; install it first.
required_apps = ["xappiens_whatsapp"]

# Loaded after the WhatsApp app's own form script, so its refresh handler runs second and can
# take over the app's "Sincronizar Ahora" button.
doctype_js = {"WhatsApp Session": "public/js/whatsapp_session.js"}
