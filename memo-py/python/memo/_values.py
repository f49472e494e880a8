"""The standard-library types memo's plain-data encoding stores without
pickling (the native half is ``memo-py/src/value.rs``): each is reduced
to built-in values under a fixed name and rebuilt from a fixed table, so
loading never imports or runs anything else."""

import datetime
import decimal
import fractions
import pathlib
import uuid

_PATHS = {
    "PurePosixPath": pathlib.PurePosixPath,
    "PureWindowsPath": pathlib.PureWindowsPath,
    "PosixPath": pathlib.Path,
    "WindowsPath": pathlib.Path,
    "Path": pathlib.Path,
}


def _offset(tz):
    """A tzinfo's offset in seconds, if it is a fixed one that round-trips."""
    if tz is None:
        return None
    if type(tz) is datetime.timezone:
        return tz.utcoffset(None).total_seconds()
    raise LookupError  # zoneinfo and others: pickled instead


def reduce_plain(obj):
    """``(name, built-in value)`` for a value of a type in the table, else
    ``None`` (then it is pickled)."""
    t = type(obj)
    try:
        if t is datetime.datetime:
            return ("datetime", (obj.replace(tzinfo=None).isoformat(), _offset(obj.tzinfo), obj.fold))
        if t is datetime.date:
            return ("date", obj.isoformat())
        if t is datetime.time:
            return ("time", (obj.replace(tzinfo=None).isoformat(), _offset(obj.tzinfo), obj.fold))
    except LookupError:
        return None
    if t is datetime.timedelta:
        return ("timedelta", (obj.days, obj.seconds, obj.microseconds))
    if t is decimal.Decimal:
        return ("decimal", str(obj))
    if t is fractions.Fraction:
        return ("fraction", (obj.numerator, obj.denominator))
    if t is uuid.UUID:
        return ("uuid", obj.bytes)
    if t.__name__ in _PATHS and t.__module__ == "pathlib":
        return ("path:" + t.__name__, str(obj))
    return None


def _tz(offset):
    return None if offset is None else datetime.timezone(datetime.timedelta(seconds=offset))


def rebuild(name, payload):
    """The value ``reduce_plain`` reduced to ``(name, payload)``."""
    if name == "datetime":
        text, offset, fold = payload
        return datetime.datetime.fromisoformat(text).replace(tzinfo=_tz(offset), fold=fold)
    if name == "date":
        return datetime.date.fromisoformat(payload)
    if name == "time":
        text, offset, fold = payload
        return datetime.time.fromisoformat(text).replace(tzinfo=_tz(offset), fold=fold)
    if name == "timedelta":
        return datetime.timedelta(*payload)
    if name == "decimal":
        return decimal.Decimal(payload)
    if name == "fraction":
        return fractions.Fraction(*payload)
    if name == "uuid":
        return uuid.UUID(bytes=payload)
    if name.startswith("path:") and name[5:] in _PATHS:
        return _PATHS[name[5:]](payload)
    raise ValueError(f"unknown stored type {name!r}")
