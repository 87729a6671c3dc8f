"""The stand-in's database: SQLite in memory, one table per doctype of schema.py, with the rules of
Frappe on MariaDB that the kit depends on.

- Columns exist only for the doctype's fields: a filter, a field list or an order on any other
  column raises OperationalError 1054 (a 500), in get_value, get_all and count alike. Only
  ``exists`` swallows it and answers None, as Frappe's does.
- Text columns compare case-insensitively (MariaDB's default collation), in filters, links and
  unique indexes.
- Datetime columns take naive values only ("YYYY-MM-DD HH:MM:SS[.ffffff]" or a naive datetime):
  an offset, a "Z" or an aware datetime is OperationalError 1292. They read back as datetime
  objects, Int and Check as int, Float as float, JSON as text.
- JSON columns hold valid JSON only (OperationalError 4025 otherwise).
- Writes happen in a transaction: commit, rollback, savepoints.
"""

import datetime
import json
import re
import sqlite3
import threading

from . import schema
from .exceptions import OperationalError

DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
OPERATORS = ("=", "!=", "<", ">", "<=", ">=", "in", "not in", "like", "not like", "is")

INT_TYPES = ("Int", "Check")
TEXT_AFFINITY = "TEXT COLLATE NOCASE"


class _dict(dict):
    """frappe._dict: a dict whose keys are also attributes."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            return None

    def __setattr__(self, key, value):
        self[key] = value

    def copy(self):
        return _dict(dict(self))


def unknown_column(column, where):
    return OperationalError(1054, "Unknown column '%s' in '%s'" % (column, where))


class Database:
    """frappe.db of the stand-in."""

    def __init__(self):
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.lock = threading.RLock()
        self.savepoints = []
        self.statements = 0
        self.for_update = []  # (doctype, filters) of every get_value(..., for_update=True)
        for meta in schema.DOCTYPES.values():
            self._create_table(meta)
        self.conn.execute('CREATE TABLE "tabSeries" (name TEXT PRIMARY KEY, current INTEGER)')

    # ---- schema ----

    def _create_table(self, meta):
        cols = []
        for col in meta.columns():
            f = meta.get_field(col)
            if col == "name":
                cols.append('"name" %s PRIMARY KEY' % TEXT_AFFINITY)
            elif f is not None and f.fieldtype in INT_TYPES or col in ("docstatus", "idx"):
                cols.append('"%s" INTEGER' % col)
            elif f is not None and f.fieldtype in ("Float", "Currency", "Percent"):
                cols.append('"%s" REAL' % col)
            else:
                cols.append('"%s" %s' % (col, TEXT_AFFINITY))
        self.conn.execute('CREATE TABLE "%s" (%s)' % (meta.table, ", ".join(cols)))
        for f in meta.column_fields():
            if f.unique:
                self.conn.execute('CREATE UNIQUE INDEX "%s_%s" ON "%s" ("%s")' % (meta.table, f.fieldname, meta.table, f.fieldname))

    @staticmethod
    def meta(doctype):
        meta = schema.DOCTYPES.get(doctype)
        if meta is None:
            raise OperationalError(1146, "Table 'tab%s' doesn't exist" % doctype)
        return meta

    # ---- statements ----

    def execute(self, sql, params=()):
        with self.lock:
            self.statements += 1
            if not self.conn.in_transaction and not sql.lstrip().upper().startswith("SELECT"):
                self.conn.execute("BEGIN")
            return self.conn.execute(sql, params)

    def commit(self):
        with self.lock:
            self.savepoints.clear()
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    def rollback(self, save_point=None):
        with self.lock:
            if save_point:
                if save_point not in self.savepoints:
                    raise OperationalError(1305, "SAVEPOINT %s does not exist" % save_point)
                self.conn.execute('ROLLBACK TO SAVEPOINT "%s"' % save_point)
                return
            self.savepoints.clear()
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def savepoint(self, save_point):
        with self.lock:
            if not self.conn.in_transaction:
                self.conn.execute("BEGIN")
            self.conn.execute('SAVEPOINT "%s"' % save_point)
            self.savepoints.append(save_point)

    def release_savepoint(self, save_point):
        with self.lock:
            self.conn.execute('RELEASE SAVEPOINT "%s"' % save_point)
            if save_point in self.savepoints:
                self.savepoints.remove(save_point)

    # ---- values in and out ----

    @staticmethod
    def to_db(field, value):
        """A field's value as stored: the database's own checks of types, not Frappe's."""
        if value is None:
            return None
        ft = field.fieldtype if field is not None else "Data"
        if ft in INT_TYPES:
            return int(value or 0)
        if ft in ("Float", "Currency", "Percent"):
            return float(value or 0)
        if ft == "Datetime":
            if value == "":
                return None
            if isinstance(value, datetime.datetime):
                if value.tzinfo is not None:
                    raise OperationalError(1292, "Incorrect datetime value for column '%s'" % field.fieldname)
                return value.strftime("%Y-%m-%d %H:%M:%S.%f")
            if not isinstance(value, str) or not DATETIME_RE.match(value):
                raise OperationalError(1292, "Incorrect datetime value for column '%s'" % field.fieldname)
            return value.replace("T", " ")
        if ft == "JSON":
            if value == "":
                return None
            if not isinstance(value, str):
                value = json.dumps(value, sort_keys=True, default=str)
            try:
                json.loads(value)
            except ValueError:
                raise OperationalError(4025, "CONSTRAINT `%s` failed (json_valid)" % field.fieldname)
            return value
        if isinstance(value, (dict, list)):
            raise OperationalError(1241, "Operand should contain 1 column(s) for '%s'" % field.fieldname)
        return str(value)

    @staticmethod
    def from_db(field, value):
        if value is None or field is None:
            return value
        if field.fieldtype == "Datetime":
            return datetime.datetime.fromisoformat(value)
        return value

    # ---- filters ----

    def where(self, meta, filters):
        """SQL and parameters of Frappe filters: a name, a dict {field: value | [op, value]}, or
        a list of [field, op, value] / [doctype, field, op, value]."""
        if filters is None or filters == {} or filters == []:
            return "", []
        if isinstance(filters, (str, int)):
            filters = {"name": filters}
        conds = []
        if isinstance(filters, dict):
            for key, value in filters.items():
                if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str) and value[0].lower() in OPERATORS:
                    conds.append((key, value[0].lower(), value[1]))
                else:
                    conds.append((key, "=", value))
        else:
            for f in filters:
                if len(f) == 4:
                    f = f[1:]
                if len(f) != 3:
                    raise ValueError("malformed filter %r" % (f,))
                conds.append((f[0], str(f[1]).lower(), f[2]))
        sql, params = [], []
        for col, op, value in conds:
            self.check_column(meta, col, "where clause")
            if op not in OPERATORS:
                raise ValueError("unknown filter operator %r" % op)
            field = meta.get_field(col)
            q = '"%s"' % col
            if op in ("in", "not in"):
                values = value.split(",") if isinstance(value, str) else list(value)
                if not values:
                    sql.append("0" if op == "in" else "1")
                    continue
                marks = ", ".join("?" for _ in values)
                sql.append("%s %s (%s)" % (q, op.upper(), marks))
                params += [self.to_db(field, v) if field else v for v in values]
            elif op == "is":
                sql.append("(%s IS NULL OR %s = '')" % (q, q) if value == "not set" else "(%s IS NOT NULL AND %s != '')" % (q, q))
            elif value is None and op == "=":
                sql.append("(%s IS NULL OR %s = '')" % (q, q))
            else:
                sql.append("%s %s ?" % (q, op.upper()))
                params.append(self.to_db(field, value) if field and op not in ("like", "not like") else value)
        return " WHERE " + " AND ".join(sql), params

    @staticmethod
    def check_column(meta, col, where):
        if not meta.has_column(col):
            raise unknown_column(col, where)

    def order(self, meta, order_by):
        if not order_by:
            return ' ORDER BY "creation" DESC, rowid DESC'
        parts = []
        for part in order_by.split(","):
            words = part.strip().split()
            col = words[0].strip("`\"").split(".")[-1].strip("`\"")
            self.check_column(meta, col, "order clause")
            direction = words[1].upper() if len(words) > 1 else "ASC"
            if direction not in ("ASC", "DESC"):
                raise OperationalError(1064, "You have an error in your SQL syntax near '%s'" % part)
            parts.append('"%s" %s' % (col, direction))
        return " ORDER BY " + ", ".join(parts) + ", rowid ASC"

    # ---- reads ----

    def select(self, doctype, filters=None, fields=None, order_by=None, limit=None):
        meta = self.meta(doctype)
        if meta.issingle:
            raise OperationalError(1146, "Table 'tab%s' doesn't exist (a single doctype)" % doctype)
        fields = fields or ["name"]
        for f in fields:
            self.check_column(meta, f, "field list")
        where, params = self.where(meta, filters)
        sql = 'SELECT %s FROM "%s"%s%s' % (", ".join('"%s"' % f for f in fields), meta.table, where, self.order(meta, order_by))
        if limit:
            sql += " LIMIT %d" % int(limit)
        rows = self.execute(sql, params).fetchall()
        return [_dict((f, self.from_db(meta.get_field(f), v)) for f, v in zip(fields, row)) for row in rows]

    def get_value(self, doctype, filters=None, fieldname="name", ignore=None, as_dict=False, order_by=None,
                  for_update=False, cache=False, pluck=False):
        meta = self.meta(doctype)
        if meta.issingle:
            return self.get_single_value(doctype, fieldname)
        if for_update:
            self.for_update.append((doctype, filters))
        fields = [fieldname] if isinstance(fieldname, str) else list(fieldname)
        if filters is None:
            return None
        try:
            rows = self.select(doctype, filters, fields, order_by=order_by, limit=1)
        except OperationalError as e:
            if ignore and e.code == 1054:
                return None
            raise
        if not rows:
            return None
        row = rows[0]
        if as_dict:
            return row
        if isinstance(fieldname, str):
            return row[fieldname]
        return tuple(row[f] for f in fields)

    def exists(self, doctype, filters=None, cache=False):
        """Frappe's exists: the name, or None; a filter on a missing column answers None."""
        return self.get_value(doctype, filters if filters is not None else {}, "name", ignore=True)

    def count(self, doctype, filters=None, cache=False):
        meta = self.meta(doctype)
        where, params = self.where(meta, filters)
        return self.execute('SELECT COUNT(*) FROM "%s"%s' % (meta.table, where), params).fetchone()[0]

    def get_single_value(self, doctype, fieldname, cache=False):
        meta = self.meta(doctype)
        self.check_column(meta, fieldname, "field list")
        row = self.execute('SELECT "%s" FROM "%s" WHERE name = ?' % (fieldname, meta.table), (doctype,)).fetchone()
        return self.from_db(meta.get_field(fieldname), row[0]) if row else None

    def set_value(self, doctype, name, fieldname, value=None, modified=None, modified_by=None, update_modified=True):
        """frappe.db.set_value: a direct UPDATE, without the document's validations. The stand-in
        still refuses unknown columns (the database would), Select values outside the options and
        over-long Data (stricter than Frappe, so a kit bug cannot write what the app's form would
        refuse)."""
        from .exceptions import CharacterLengthExceededError, ValidationError
        from . import utils

        meta = self.meta(doctype)
        values = dict(fieldname) if isinstance(fieldname, dict) else {fieldname: value}
        row = {}
        for col, v in values.items():
            self.check_column(meta, col, "field list")
            f = meta.get_field(col)
            if f is not None and f.fieldtype == "Select" and v not in (None, "") and v not in f.select_options():
                raise ValidationError('%s cannot be "%s"' % (col, v))
            if f is not None and f.fieldtype in schema.VARCHAR_TYPES and isinstance(v, str) and len(v) > schema.VARCHAR_LENGTH:
                raise CharacterLengthExceededError("%s is longer than %d characters" % (col, schema.VARCHAR_LENGTH))
            row[col] = self.to_db(f, v)
        if update_modified:
            row["modified"] = self.to_db(meta.get_field("modified"), modified or utils.now_datetime())
            if modified_by:
                row["modified_by"] = modified_by
        if meta.issingle:
            self._ensure_single(meta)
            name = doctype
        where, params = self.where(meta, name)
        sql = 'UPDATE "%s" SET %s%s' % (meta.table, ", ".join('"%s" = ?' % c for c in row), where)
        self.execute(sql, [row[c] for c in row] + params)

    def set_single_value(self, doctype, fieldname, value=None):
        self.set_value(doctype, doctype, fieldname, value)

    def _ensure_single(self, meta):
        if not self.execute('SELECT 1 FROM "%s" WHERE name = ?' % meta.table, (meta.name,)).fetchone():
            self.execute('INSERT INTO "%s" (name, docstatus, idx) VALUES (?, 0, 0)' % meta.table, (meta.name,))

    # ---- writes (documents call these after their validations) ----

    def insert_row(self, meta, values):
        cols = list(values)
        for c in cols:
            self.check_column(meta, c, "field list")
        sql = 'INSERT INTO "%s" (%s) VALUES (%s)' % (meta.table, ", ".join('"%s"' % c for c in cols), ", ".join("?" for _ in cols))
        self.execute(sql, [values[c] for c in cols])

    def update_row(self, meta, name, values):
        cols = list(values)
        for c in cols:
            self.check_column(meta, c, "field list")
        sql = 'UPDATE "%s" SET %s WHERE name = ?' % (meta.table, ", ".join('"%s" = ?' % c for c in cols))
        return self.execute(sql, [values[c] for c in cols] + [name]).rowcount

    def delete_rows(self, meta, filters):
        where, params = self.where(meta, filters)
        self.execute('DELETE FROM "%s"%s' % (meta.table, where), params)

    def next_series(self, prefix):
        row = self.execute('SELECT current FROM "tabSeries" WHERE name = ?', (prefix,)).fetchone()
        current = (row[0] if row else 0) + 1
        if row:
            self.execute('UPDATE "tabSeries" SET current = ? WHERE name = ?', (current, prefix))
        else:
            self.execute('INSERT INTO "tabSeries" (name, current) VALUES (?, ?)', (prefix, current))
        return current
