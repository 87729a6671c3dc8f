"""The doctypes of the stand-in site, as data.

The WhatsApp doctypes are those of the CRM's WhatsApp app (every non-layout field, with its type,
required and unique flags and its options or link target), plus the few Frappe core doctypes the
kit touches (User, Has Role, Role, System Settings). Each doctype is a table, one field a line:

    fieldname | fieldtype | req | uniq | options or link target

``DOCTYPES`` maps a doctype name to a ``Meta``. Nothing else in the stand-in knows a field name.
"""

WHATSAPP_SESSION = """
autoname: hash
roles: System Manager
session_id | Data | req | uniq |
session_name | Data | req | |
status | Select | req | | Disconnected / Connecting / Connected / QR Code Required / Error
is_connected | Check | | |
is_active | Check | | |
phone_number | Data | | |
session_db_id | Int | | |
last_seen | Datetime | | |
qr_code | Text | | |
qr_image | Text | | |
total_contacts | Int | | |
total_chats | Int | | |
total_messages_sent | Int | | |
total_messages_received | Int | | |
error_message | Text | | |
error_code | Data | | |
assigned_users | Table | | | WhatsApp Session User
created_at | Datetime | | |
updated_at | Datetime | | |
"""

WHATSAPP_SESSION_USER = """
istable: 1
user | Link | req | | User
role | Select | req | | Manager / Agent / Viewer
can_send_messages | Check | | |
can_view_all_conversations | Check | | |
assigned_at | Datetime | | |
"""

WHATSAPP_CONTACT = """
autoname: field:contact_id
roles: System Manager, WhatsApp Manager, WhatsApp User
contact_id | Data | req | uniq |
session | Link | req | | WhatsApp Session
phone_number | Data | req | |
contact_name | Data | | |
pushname | Data | | |
short_name | Data | | |
profile_pic_url | Text | | |
about | Small Text | | |
profile_pic_thumb | Attach Image | | |
last_profile_pic_update | Datetime | | |
is_user | Check | | |
is_group | Check | | |
is_my_contact | Check | | |
is_wa_contact | Check | | |
is_blocked | Check | | |
is_enterprise | Check | | |
is_verified | Check | | |
verified_name | Data | | |
verified_level | Select | | | Unverified / Verified / Official
verification_date | Datetime | | |
business_profile | JSON | | |
first_seen | Datetime | | |
last_seen | Datetime | | |
last_sync | Datetime | | |
sync_count | Int | | |
sync_status | Select | | | Pending / Syncing / Synced / Error
sync_error | Small Text | | |
linked_customer | Link | | | CRM Organization
linked_lead | Link | | | CRM Lead
linked_contact | Link | | | Contact
labels | Small Text | | |
tags | Small Text | | |
custom_fields | JSON | | |
notes | Text Editor | | |
"""

WHATSAPP_CONVERSATION = """
autoname: format:WACONV-{####}
roles: System Manager, WhatsApp Manager, WhatsApp User
session | Link | req | | WhatsApp Session
chat_id | Data | req | |
contact | Link | | | WhatsApp Contact
contact_name | Data | | |
phone_number | Data | | |
status | Select | req | | Active / Inactive / Archived / Blocked
is_group | Check | | |
group | Link | | | WhatsApp Group
is_broadcast | Check | | |
is_read_only | Check | | |
is_archived | Check | | |
is_pinned | Check | | |
last_message | Small Text | | |
last_message_time | Datetime | | |
last_message_from_me | Check | | |
unread_count | Int | | |
total_messages | Int | | |
first_message_time | Datetime | | |
is_muted | Check | | |
mute_expiration | Datetime | | |
notifications_enabled | Check | | |
custom_notification_sound | Data | | |
assigned_to | Link | | | User
assigned_at | Datetime | | |
assigned_by | Link | | | User
assignment_notes | Small Text | | |
linked_lead | Link | | | CRM Lead
linked_customer | Link | | | CRM Organization
linked_deal | Link | | | CRM Deal
labels | Small Text | | |
tags | Small Text | | |
priority | Select | | | Low / Medium / High / Urgent
metadata | JSON | | |
custom_fields | JSON | | |
notes | Text Editor | | |
last_synced_at | Datetime | | |
last_remote_message_id | Data | | |
"""

WHATSAPP_MESSAGE = """
autoname: format:WAMSG-{#####}
roles: System Manager, WhatsApp Manager, WhatsApp User
session | Link | req | | WhatsApp Session
conversation | Link | req | | WhatsApp Conversation
contact | Link | | | WhatsApp Contact
message_id | Data | | uniq |
timestamp | Datetime | req | |
direction | Select | req | | Incoming / Outgoing
message_type | Select | req | | text / image / video / audio / voice / document / location / contact / sticker / buttons / list / poll / reaction
content | Long Text | | |
has_media | Check | | |
media_items | Table | | | WhatsApp Message Media
status | Select | req | | Pending / Sent / Delivered / Read / Failed / Deleted
sent_at | Datetime | | |
delivered_at | Datetime | | |
read_at | Datetime | | |
ack_status | Select | | | ACK_ERROR / ACK_PENDING / ACK_SERVER / ACK_DEVICE / ACK_READ / ACK_PLAYED
error_message | Small Text | | |
from_number | Data | | |
to_number | Data | | |
from_me | Check | | |
is_forwarded | Check | | |
is_starred | Check | | |
is_status | Check | | |
is_reply | Check | | |
quoted_message | Link | | | WhatsApp Message
quoted_message_content | Small Text | | |
has_reaction | Check | | |
reaction | Data | | |
reacted_at | Datetime | | |
has_location | Check | | |
location_latitude | Float | | |
location_longitude | Float | | |
location_description | Data | | |
has_contact_card | Check | | |
contact_card_data | JSON | | |
has_buttons | Check | | |
buttons_data | JSON | | |
button_response | Data | | |
has_list | Check | | |
list_data | JSON | | |
list_response | Data | | |
metadata | JSON | | |
raw_data | JSON | | |
"""

WHATSAPP_WEBHOOK_LOG = """
autoname: format:WAWHOOK-{#####}
roles: System Manager, WhatsApp Manager
timestamp | Datetime | req | |
session | Link | | | WhatsApp Session
event_type | Select | req | | message / message_ack / message_create / message_revoke / message_edit / presence_update / group_update / group_participants / group_admin / group_leave / group_join / contact_update / chat_update / battery_update / connection_update
webhook_id | Data | | uniq |
status | Select | req | | Success / Failed / Pending / Retrying
request_headers | JSON | | |
request_body | JSON | | |
webhook_url | Data | | |
webhook_method | Select | | | POST / PUT / PATCH
response_status_code | Int | | |
response_time | Float | | |
response_body | JSON | | |
response_headers | JSON | | |
retry_count | Int | | |
max_retries | Int | | |
next_retry_at | Datetime | | |
last_retry_at | Datetime | | |
error_message | Small Text | | |
error_details | Long Text | | |
"""

# Frappe core doctypes, reduced to the fields the kit and the stand-in read.
USER = """
autoname: field:email
roles: System Manager
email | Data | req | uniq |
first_name | Data | | |
enabled | Check | | |
user_type | Select | | | System User / Website User
api_key | Data | | uniq |
api_secret | Password | | |
roles | Table | | | Has Role
"""

HAS_ROLE = """
istable: 1
role | Link | | | Role
"""

ROLE = """
autoname: field:role_name
roles: System Manager
role_name | Data | req | uniq |
"""

SYSTEM_SETTINGS = """
issingle: 1
roles: System Manager
time_zone | Data | | |
"""

SOURCES = {
    "WhatsApp Session": WHATSAPP_SESSION,
    "WhatsApp Session User": WHATSAPP_SESSION_USER,
    "WhatsApp Contact": WHATSAPP_CONTACT,
    "WhatsApp Conversation": WHATSAPP_CONVERSATION,
    "WhatsApp Message": WHATSAPP_MESSAGE,
    "WhatsApp Webhook Log": WHATSAPP_WEBHOOK_LOG,
    "User": USER,
    "Has Role": HAS_ROLE,
    "Role": ROLE,
    "System Settings": SYSTEM_SETTINGS,
}

# Column types of the standard columns every table has.
STANDARD_FIELDS = ("name", "owner", "creation", "modified", "modified_by", "docstatus", "idx")
CHILD_FIELDS = ("parent", "parentfield", "parenttype")

# Field types that hold no column (layout) are not listed above at all; these hold no column of
# their own but rows in a child table.
TABLE_TYPES = ("Table", "Table MultiSelect")

# Frappe's varchar length of Data-like fields (and of the name column).
VARCHAR_LENGTH = 140
VARCHAR_TYPES = ("Data", "Link", "Select", "Password", "Attach Image", "Attach")


class Field:
    __slots__ = ("fieldname", "fieldtype", "reqd", "unique", "options")

    def __init__(self, fieldname, fieldtype, reqd, unique, options):
        self.fieldname = fieldname
        self.fieldtype = fieldtype
        self.reqd = reqd
        self.unique = unique
        self.options = options

    def select_options(self):
        return [o.strip() for o in self.options.split("/")] if self.fieldtype == "Select" else []

    def __repr__(self):
        return "Field(%s %s)" % (self.fieldname, self.fieldtype)


class Meta:
    """A doctype's definition: its fields, naming rule, roles and kind (child table, single)."""

    def __init__(self, name, source):
        self.name = name
        self.autoname = ""
        self.roles = []
        self.istable = False
        self.issingle = False
        self.fields = []
        for line in source.strip().splitlines():
            line = line.strip()
            if not line:
                continue
            if "|" not in line:
                key, _, value = line.partition(":")
                value = value.strip()
                if key == "autoname":
                    self.autoname = value
                elif key == "roles":
                    self.roles = [r.strip() for r in value.split(",")]
                elif key == "istable":
                    self.istable = value == "1"
                elif key == "issingle":
                    self.issingle = value == "1"
                else:
                    raise ValueError("unknown doctype property %r of %s" % (key, name))
                continue
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 5:
                raise ValueError("bad field line %r of %s" % (line, name))
            fieldname, fieldtype, req, uniq, options = parts
            self.fields.append(Field(fieldname, fieldtype, req == "req", uniq == "uniq", options))
        self.by_name = {f.fieldname: f for f in self.fields}
        self._columns = None
        self.column_set = frozenset()

    @property
    def table(self):
        return "tab" + self.name

    def get_field(self, fieldname):
        """The field, or the typed standard column (creation, modified, docstatus, idx)."""
        return self.by_name.get(fieldname) or STANDARD_TYPED.get(fieldname)

    def column_fields(self):
        """Fields stored as columns of the doctype's own table."""
        return [f for f in self.fields if f.fieldtype not in TABLE_TYPES]

    def table_fields(self):
        return [f for f in self.fields if f.fieldtype in TABLE_TYPES]

    def columns(self):
        """Every column of the table: the standard ones, the child ones, the fields'."""
        if self._columns is None:
            cols = list(STANDARD_FIELDS)
            if self.istable:
                cols += list(CHILD_FIELDS)
            self._columns = cols + [f.fieldname for f in self.column_fields()]
            self.column_set = frozenset(self._columns)
        return self._columns

    def has_column(self, col):
        self.columns()
        return col in self.column_set


STANDARD_TYPED = {
    "creation": Field("creation", "Datetime", False, False, ""),
    "modified": Field("modified", "Datetime", False, False, ""),
    "docstatus": Field("docstatus", "Int", False, False, ""),
    "idx": Field("idx", "Int", False, False, ""),
}

DOCTYPES = {name: Meta(name, src) for name, src in SOURCES.items()}
