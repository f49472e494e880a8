"""The Python half of the canonical encoding of arguments (the native half
is ``memo-py/src/canon.rs``): values that are not built-in containers or
scalars are reduced to ``(type name, built-in value)``, which is encoded
under that name. ``docs/format.md`` ("Python arguments") lists the
mapping."""

import dataclasses
import datetime
import decimal
import enum
import fractions
import pathlib
import pickle
import uuid

from ._errors import UnhashableArgument


def _qual(t) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def _tz(tz):
    if tz is None:
        return None
    key = getattr(tz, "key", None)  # zoneinfo.ZoneInfo
    if key is not None:
        return str(key)
    return tz.utcoffset(None).total_seconds() if isinstance(tz, datetime.timezone) else repr(tz)


def reduce(obj):
    """``(type name, built-in value)`` standing for ``obj`` in a key."""
    t = type(obj)
    if not isinstance(obj, type):
        memo_key = getattr(obj, "__memo_key__", None)
        if callable(memo_key):
            return (f"__memo_key__:{_qual(t)}", memo_key())
    if isinstance(obj, enum.Enum):
        return (f"enum:{_qual(t)}", obj.name)
    if t.__module__ == "numpy":
        import numpy as np

        if isinstance(obj, np.generic):
            if obj.dtype.hasobject:
                return ("numpy.object_", obj.item())
            return (f"numpy.{obj.dtype.str}", obj.tobytes())
    if isinstance(obj, datetime.datetime):
        return ("datetime.datetime", (obj.replace(tzinfo=None).isoformat(), _tz(obj.tzinfo), obj.fold))
    if isinstance(obj, datetime.date):
        return ("datetime.date", obj.isoformat())
    if isinstance(obj, datetime.time):
        return ("datetime.time", (obj.replace(tzinfo=None).isoformat(), _tz(obj.tzinfo), obj.fold))
    if isinstance(obj, datetime.timedelta):
        return ("datetime.timedelta", (obj.days, obj.seconds, obj.microseconds))
    if isinstance(obj, decimal.Decimal):
        return ("decimal.Decimal", str(obj))
    if isinstance(obj, fractions.Fraction):
        return ("fractions.Fraction", (obj.numerator, obj.denominator))
    if isinstance(obj, uuid.UUID):
        return ("uuid.UUID", obj.bytes)
    if isinstance(obj, pathlib.PurePath):
        return (_qual(t), str(obj))
    if isinstance(obj, complex):
        return ("complex", (obj.real, obj.imag))
    if isinstance(obj, (bytearray, memoryview)):
        return (t.__name__, bytes(obj))
    if isinstance(obj, range):
        return ("range", (obj.start, obj.stop, obj.step))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return (_qual(t), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, tuple) and hasattr(t, "_fields"):
        return (_qual(t), tuple(obj))
    for base in (bool, int, float, str, bytes, tuple, list, dict, set, frozenset):
        if isinstance(obj, base):
            return (_qual(t), base(obj))
    try:
        return (f"pickle:{_qual(t)}", pickle.dumps(obj, protocol=5))
    except Exception as e:  # noqa: BLE001 - any pickling failure is the same answer
        raise UnhashableArgument(
            f"a {_qual(t)} has no canonical form and cannot be pickled ({e}); "
            "give its class a __memo_key__() method, or leave the argument out "
            "of the key with ignore=[...]"
        ) from None


def array_blocks(a, block_bytes: int = 1 << 20):
    """``a``'s contents as C-contiguous little-endian arrays of about
    ``block_bytes`` each, in C order: a strided or big-endian array hashed
    without a copy of all of it."""
    import numpy as np

    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    if a.ndim == 0:
        yield np.ascontiguousarray(a.reshape(1), dtype=dt)
        return
    row = max(a[0:1].nbytes, 1)
    step = max(1, block_bytes // row)
    for i in range(0, a.shape[0], step):
        yield np.ascontiguousarray(a[i : i + step], dtype=dt)
