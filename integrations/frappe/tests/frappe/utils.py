"""frappe.utils of the stand-in: the helpers the kit uses, with Frappe's meaning.

Times: Frappe keeps datetimes naive in the site's time zone (System Settings, time_zone), and
``now_datetime`` is the current time in that zone.
"""

import datetime
from zoneinfo import ZoneInfo

DEFAULT_TIME_ZONE = "Asia/Kolkata"  # Frappe's fallback when System Settings has none


def get_system_timezone():
    import frappe

    return frappe.db.get_single_value("System Settings", "time_zone") or DEFAULT_TIME_ZONE


def convert_utc_to_system_timezone(utc_timestamp):
    if utc_timestamp.tzinfo is None:
        utc_timestamp = utc_timestamp.replace(tzinfo=datetime.timezone.utc)
    return utc_timestamp.astimezone(ZoneInfo(get_system_timezone()))


def now_datetime():
    return convert_utc_to_system_timezone(datetime.datetime.now(datetime.timezone.utc)).replace(tzinfo=None)


def now():
    return now_datetime().strftime("%Y-%m-%d %H:%M:%S.%f")


def get_datetime(value=None):
    if value is None:
        return now_datetime()
    if isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(str(value))


def cint(value, default=0):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def flt(value, precision=None):
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return round(out, precision) if precision is not None else out


def cstr(value, encoding="utf-8"):
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(encoding)
    return str(value)
