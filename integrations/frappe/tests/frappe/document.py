"""Documents of the stand-in: frappe.get_doc, insert and save, with Frappe's validations in
Frappe's order.

insert: links (LinkValidationError), permission (PermissionError unless ignore_permissions),
naming (the doctype's rule; a name passed in is discarded unless the rule is "prompt"), then
mandatory fields (MandatoryError), Select options (ValidationError), Data lengths
(CharacterLengthExceededError), then the database: a unique field's value already taken is
UniqueValidationError, a name already taken is DuplicateEntryError, a bad datetime or JSON value is
the database's OperationalError. save: the same checks on an existing document, refused with
TimestampMismatchError when the row changed since it was loaded; the autoname field is put back to
the name (it cannot be changed). Keys that are not fields are kept on the object but never stored.
"""

import secrets

from . import schema
from .database import _dict
from .exceptions import (CharacterLengthExceededError, DoesNotExistError, DuplicateEntryError, LinkValidationError,
                         MandatoryError, NameError, PermissionError, TimestampMismatchError,
                         UniqueValidationError, ValidationError)

RESERVED = set(schema.STANDARD_FIELDS) | set(schema.CHILD_FIELDS) | {"doctype"}


def _frappe():
    import frappe

    return frappe


class Document:
    def __init__(self, doctype, values=None):
        self.__dict__["doctype"] = doctype
        self.__dict__["meta"] = _frappe().db.meta(doctype)
        self.__dict__["_loaded_modified"] = None
        for f in self.meta.table_fields():
            self.__dict__[f.fieldname] = []
        if values:
            self.update(values)

    # ---- access ----

    def get(self, key, default=None):
        value = self.__dict__.get(key, default)
        return default if value is None else value

    def set(self, key, value):
        f = self.meta.get_field(key)
        if f is not None and f.fieldtype in schema.TABLE_TYPES:
            value = [v if isinstance(v, Document) else Document(f.options, v) for v in (value or [])]
        self.__dict__[key] = value

    def update(self, values):
        for k, v in dict(values).items():
            if k == "doctype":
                continue
            self.set(k, v)
        return self

    def append(self, fieldname, value):
        f = self.meta.get_field(fieldname)
        if f is None or f.fieldtype not in schema.TABLE_TYPES:
            raise ValueError("%s is not a table field of %s" % (fieldname, self.doctype))
        row = value if isinstance(value, Document) else Document(f.options, value or {})
        self.__dict__.setdefault(fieldname, []).append(row)
        return row

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        return None

    def __setattr__(self, key, value):
        self.set(key, value)

    def as_dict(self):
        out = _dict(doctype=self.doctype)
        for k, v in self.__dict__.items():
            if k in ("meta", "_loaded_modified"):
                continue
            out[k] = [r.as_dict() for r in v] if isinstance(v, list) else v
        return out

    def is_new(self):
        return not self.name or _frappe().db.count(self.doctype, {"name": self.name}) == 0

    # ---- loading ----

    @classmethod
    def load(cls, doctype, name):
        db = _frappe().db
        meta = db.meta(doctype)
        if meta.issingle:
            row = db.execute('SELECT * FROM "%s" WHERE name = ?' % meta.table, (doctype,)).fetchone()
            doc = cls(doctype)
            if row:
                cols = meta.columns()
                for c, v in zip(cols, row):
                    doc.__dict__[c] = db.from_db(meta.get_field(c), v)
            doc.__dict__["name"] = doctype
            return doc
        cols = meta.columns()
        rows = db.select(doctype, {"name": name}, cols, limit=1)
        if not rows:
            raise DoesNotExistError("%s %s not found" % (doctype, name))
        doc = cls(doctype)
        doc.__dict__.update(rows[0])
        doc.__dict__["_loaded_modified"] = rows[0]["modified"]
        for f in meta.table_fields():
            if f.options not in schema.DOCTYPES:
                continue  # a child table the stand-in does not model (the kit never writes it)
            child = db.meta(f.options)
            kids = db.select(f.options, {"parent": doc.name, "parentfield": f.fieldname}, child.columns(), order_by="idx asc")
            doc.__dict__[f.fieldname] = [cls._child(f.options, k) for k in kids]
        return doc

    @classmethod
    def _child(cls, doctype, row):
        d = cls(doctype)
        d.__dict__.update(row)
        return d

    # ---- validations ----

    def _check_permission(self, ptype):
        frappe = _frappe()
        user = frappe.session.user
        if user == "Administrator":
            return
        if not set(frappe.get_roles(user)) & set(self.meta.roles):
            raise PermissionError("No permission to %s %s" % (ptype, self.doctype))

    def _validate_links(self):
        db = _frappe().db
        for doc in [self] + self._children():
            for f in doc.meta.column_fields():
                value = doc.__dict__.get(f.fieldname)
                if f.fieldtype != "Link" or value in (None, ""):
                    continue
                target = schema.DOCTYPES.get(f.options)
                if target is None or db.count(f.options, {"name": value}) == 0:
                    raise LinkValidationError("Could not find %s: %s" % (f.options, value))

    def _validate(self):
        for doc in [self] + self._children():
            doc._validate_own()

    def _validate_own(self):
        missing = []
        for f in self.meta.fields:
            value = self.__dict__.get(f.fieldname)
            if not f.reqd:
                continue
            if f.fieldtype in schema.TABLE_TYPES:
                if not value:
                    missing.append(f.fieldname)
            elif value is None or (isinstance(value, str) and value.strip() == ""):
                missing.append(f.fieldname)
        if missing:
            raise MandatoryError("[%s, %s]: %s" % (self.doctype, self.name, ", ".join(missing)))
        for f in self.meta.column_fields():
            value = self.__dict__.get(f.fieldname)
            if f.fieldtype == "Select" and value not in (None, ""):
                if value not in f.select_options():
                    raise ValidationError('%s cannot be "%s". It should be one of "%s"' % (
                        f.fieldname, value, '", "'.join(f.select_options())))
            if f.fieldtype in schema.VARCHAR_TYPES and isinstance(value, str) and len(value) > schema.VARCHAR_LENGTH:
                raise CharacterLengthExceededError("%s: %s is longer than %d characters" % (
                    self.doctype, f.fieldname, schema.VARCHAR_LENGTH))

    def _children(self):
        out = []
        for f in self.meta.table_fields():
            out += list(self.__dict__.get(f.fieldname) or [])
        return out

    # ---- naming ----

    def _set_new_name(self):
        frappe = _frappe()
        rule = self.meta.autoname
        given = self.__dict__.get("name")
        if rule != "prompt":
            given = None
        if rule.startswith("field:"):
            fieldname = rule[len("field:"):]
            value = self.__dict__.get(fieldname)
            name = str(value).strip() if value not in (None, "") else ""
            if not name:
                raise MandatoryError("[%s]: %s" % (self.doctype, fieldname))
        elif rule.startswith("format:"):
            fmt = rule[len("format:"):]
            start, end = fmt.index("{"), fmt.index("}")
            digits = end - start - 1
            prefix = fmt[:start]
            name = prefix + str(frappe.db.next_series(prefix)).zfill(digits) + fmt[end + 1:]
        elif rule == "prompt":
            name = (given or "").strip()
        else:  # hash
            name = secrets.token_hex(5)
        if not name:
            raise NameError("No name specified for %s" % self.doctype)
        if "<" in name or ">" in name:
            raise NameError("Name cannot contain special characters like '<', '>'")
        if len(name) > schema.VARCHAR_LENGTH:
            raise CharacterLengthExceededError("name of %s is longer than %d characters" % (self.doctype, schema.VARCHAR_LENGTH))
        self.__dict__["name"] = name

    def _sync_autoname_field(self):
        rule = self.meta.autoname
        if rule.startswith("field:") and self.name:
            self.__dict__[rule[len("field:"):]] = self.name

    # ---- writes ----

    def _row(self, meta, doc):
        db = _frappe().db
        values = {}
        for col in meta.columns():
            f = meta.get_field(col)
            value = doc.__dict__.get(col)
            if f is not None and f.unique and isinstance(value, str) and value.strip() == "":
                value = None
            values[col] = db.to_db(f, value)
        return values

    def _check_unique(self, meta, values, name):
        db = _frappe().db
        for f in meta.column_fields():
            if f.unique and values.get(f.fieldname) not in (None, ""):
                cond = [[f.fieldname, "=", values[f.fieldname]]]
                if name is not None:
                    cond.append(["name", "!=", name])
                other = db.select(meta.name, cond, ["name"], limit=1)
                if other:
                    raise UniqueValidationError("%s: %s must be unique (%s is taken)" % (meta.name, f.fieldname, other[0]["name"]))

    def _stamp(self, now, is_insert):
        user = _frappe().session.user
        self.__dict__["modified"] = now
        self.__dict__["modified_by"] = user
        if is_insert:
            self.__dict__["creation"] = now
            self.__dict__["owner"] = user
            self.__dict__["docstatus"] = 0

    def insert(self, ignore_permissions=False, ignore_links=False, ignore_if_duplicate=False, ignore_mandatory=None):
        frappe = _frappe()
        db = frappe.db
        if self.meta.istable:
            raise ValidationError("a child table row is inserted with its parent")
        if not ignore_links:
            self._validate_links()
        if not ignore_permissions:
            self._check_permission("create")
        self._set_new_name()
        self._validate()
        now = frappe.utils.now_datetime()
        self._stamp(now, True)
        values = self._row(self.meta, self)
        self._check_unique(self.meta, values, None)
        if db.count(self.doctype, {"name": self.name}):
            if ignore_if_duplicate:
                return self
            raise DuplicateEntryError(self.doctype, self.name)
        db.insert_row(self.meta, values)
        self._write_children(now)
        self.__dict__["_loaded_modified"] = now
        return self

    def save(self, ignore_permissions=False, ignore_version=None):
        frappe = _frappe()
        db = frappe.db
        if not self.name or db.count(self.doctype, {"name": self.name}) == 0:
            return self.insert(ignore_permissions=ignore_permissions)
        stored = db.get_value(self.doctype, self.name, "modified")
        if self._loaded_modified is not None and stored != self._loaded_modified:
            raise TimestampMismatchError("%s %s has been modified after you opened it" % (self.doctype, self.name))
        self._validate_links()
        if not ignore_permissions:
            self._check_permission("write")
        self._sync_autoname_field()
        self._validate()
        now = frappe.utils.now_datetime()
        self._stamp(now, False)
        values = self._row(self.meta, self)
        values.pop("creation", None)
        values.pop("owner", None)
        self._check_unique(self.meta, values, self.name)
        db.update_row(self.meta, self.name, values)
        for f in self.meta.table_fields():
            if f.options in schema.DOCTYPES:
                db.delete_rows(db.meta(f.options), {"parent": self.name, "parentfield": f.fieldname})
        self._write_children(now)
        self.__dict__["_loaded_modified"] = now
        return self

    def _write_children(self, now):
        db = _frappe().db
        for f in self.meta.table_fields():
            rows = self.__dict__.get(f.fieldname) or []
            if not rows:
                continue
            child_meta = db.meta(f.options)  # an unmodelled child table is a database error
            for i, row in enumerate(rows):
                row.__dict__.update(parent=self.name, parentfield=f.fieldname, parenttype=self.doctype, idx=i + 1)
                if not row.name:
                    row.__dict__["name"] = secrets.token_hex(5)
                row._stamp(now, True)
                db.insert_row(child_meta, self._row(child_meta, row))

    def reload(self):
        fresh = Document.load(self.doctype, self.name)
        self.__dict__.update(fresh.__dict__)
        return self

    def db_set(self, fieldname, value=None, update_modified=True):
        values = fieldname if isinstance(fieldname, dict) else {fieldname: value}
        _frappe().db.set_value(self.doctype, self.name, values, update_modified=update_modified)
        self.__dict__.update(values)

