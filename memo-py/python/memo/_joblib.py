"""``memo.Memory``: a drop-in for ``joblib.Memory`` on memo's engine.

Change ``from joblib import Memory`` to ``from memo import Memory`` and keep
the code. The store lives in ``<location>/memo``; each cached call runs
through the same runtime as ``memo.memoize`` (single flight across
processes, enforced limits, numpy views, crash safety, the remote tier,
the ``memo`` command). ``docs/from-joblib.md`` lists what differs and why.
"""

import copy
import datetime
import functools
import inspect
import logging
import os
import pprint
import sys
import threading
import time
import warnings
from typing import Any, Callable, Optional

from . import _memo
from ._memoize import MemoizedFunction, _params
from ._source import canonical_code

_MMAP_MODES = (None, "r", "c")
_logger = logging.getLogger("memo.Memory")


def _check_mmap_mode(mmap_mode):
    if mmap_mode in ("r+", "w+"):
        raise ValueError(
            f"mmap_mode={mmap_mode!r} is refused: writing into a cached array would change "
            "the cached result for every later call. Use mmap_mode='c' (copy-on-write: "
            "writable, the cache unchanged), 'r' (read-only views of the stored bytes) "
            "or None (writable copies)."
        )
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode={mmap_mode!r}: one of None, 'r', 'c'")


# joblib's compression methods, each mapped to the zstd setting nearest in
# what it buys: zlib and gzip levels to the same zstd level (zstd's are at
# least as small and several times faster), lz4 (speed) to level 1, bz2
# and lzma/xz (size) to 9 and 19.
_ZSTD_OF_METHOD = {"zlib": None, "gzip": None, "lz4": 1, "bz2": 9, "lzma": 19, "xz": 19}


def _zstd_level(compress):
    """joblib's ``compress`` (``True``, 0-9, a method name or ``(method,
    level)``) as memo's: ``None`` for none, else a zstd level."""
    if compress is None or compress is False:
        return None
    if compress is True:
        return 3  # joblib's True is zlib at 3
    method, level = None, None
    if isinstance(compress, str):
        method, level = compress, 3
    elif isinstance(compress, int) and 0 <= compress <= 9:
        level = compress
    elif (
        isinstance(compress, tuple)
        and len(compress) == 2
        and isinstance(compress[0], str)
        and isinstance(compress[1], int)
        and 0 <= compress[1] <= 9
    ):
        method, level = compress
    else:
        raise ValueError(
            f"compress={compress!r}: True, an int from 0 to 9, or (method, level) as joblib takes"
        )
    if method is not None and method not in _ZSTD_OF_METHOD:
        raise ValueError(
            f"Non valid compression method given: {method!r}. Possible values are "
            f"{sorted(_ZSTD_OF_METHOD)}."
        )
    if level == 0:
        return None
    return _ZSTD_OF_METHOD.get(method) or level


def _format_arg(arg):
    text = pprint.pformat(arg, indent=2)
    return text if len(text) <= 1500 else text[:700] + "..."


def _func_name(func):
    return getattr(func, "__name__", None) or type(func).__name__


def format_signature(func, *args, **kwargs):
    """``(module.name, name(args...))`` as joblib prints them."""
    name = _func_name(func)
    module = getattr(func, "__module__", None)
    path = f"{module}.{name}" if module else name
    parts = [_format_arg(a) for a in args]
    parts.extend(f"{k}={_format_arg(v)}" for k, v in kwargs.items())
    return path, f"{name}({', '.join(parts)})"


def _format_time(t):
    return f"{t:.1f}s, {t / 60:.1f}min"


def _print_duration(func, duration, context=""):
    """joblib's timing line: right-aligned on a rule of underscores."""
    msg = f"{_func_name(func)} {context}- {_format_time(duration)}"
    print(max(0, 80 - len(msg)) * "_" + msg)


def expires_after(days=0, seconds=0, microseconds=0, milliseconds=0, minutes=0, hours=0, weeks=0):
    """A ``cache_validation_callback`` that recomputes results older than the
    given duration (the arguments of ``datetime.timedelta``), as joblib's."""
    delta = datetime.timedelta(
        days=days, seconds=seconds, microseconds=microseconds, milliseconds=milliseconds,
        minutes=minutes, hours=hours, weeks=weeks,
    )

    def cache_validation_callback(metadata):
        return time.time() - metadata["time"] < delta.total_seconds()

    return cache_validation_callback


def _is_view(a):
    return getattr(a, "flags", None) is not None and not a.flags.writeable


_SCALARS = (str, bytes, int, float, bool, type(None))


def _as_mode(output, mmap_mode):
    """A loaded result as ``mmap_mode`` asks: ``None``, writable copies of its
    arrays (as joblib loads them); ``'r'``, the read-only views of the stored
    bytes, as ``numpy.memmap`` like joblib's; ``'c'``, writable copies, as
    ``numpy.memmap`` with mode ``'c'``. Containers without arrays come back
    as they were loaded (no copy)."""
    np = sys.modules.get("numpy")
    if np is None or type(output) in _SCALARS:
        # Without numpy loaded, no stored value holds an array.
        return output
    ndarray, memmap = np.ndarray, np.memmap

    # A flat container of scalars (the common small result) is returned as
    # loaded, without a walk.
    t = type(output)
    if t is dict:
        for x in output.values():
            if type(x) not in _SCALARS:
                break
        else:
            return output
    elif t is list or t is tuple:
        for x in output:
            if type(x) not in _SCALARS:
                break
        else:
            return output

    def walk(v):
        t = type(v)
        if t in _SCALARS:
            return v
        if t is ndarray or t is memmap:
            if mmap_mode == "r":
                m = v.view(memmap)
                m.mode = "r"
                return m
            c = v if v.flags.writeable else v.copy()
            if mmap_mode == "c":
                c = c.view(memmap)
                c.mode = "c"
            return c
        if t is list or t is tuple:
            items = [walk(x) for x in v]
            if all(a is b for a, b in zip(items, v)):
                return v
            return items if t is list else tuple(items)
        if t is dict:
            items = {k: walk(x) for k, x in v.items()}
            if all(items[k] is x for k, x in v.items()):
                return v
            return items
        if mmap_mode != "r" and not isinstance(v, np.generic):
            # An unpickled object: its arrays are views; a deep copy makes
            # them writable, as joblib's loaded objects are.
            return copy.deepcopy(v)
        return v

    return walk(output)


class _Ran(threading.local):
    """What this thread's last run of the body did: whether it ran, and
    the metadata of that run."""

    ran = False
    metadata: dict = {}


def _identity(func):
    """``(module, qualname, code)`` of anything callable joblib caches:
    functions, lambdas, ``functools.partial`` objects."""
    if isinstance(func, functools.partial):
        from ._memoize import key

        module, name, code = _identity(func.func)
        bound = key((func.args, func.keywords))
        return module, name + ".partial", f"{code} partial:{bound}"
    module = getattr(func, "__module__", None) or "__main__"
    name = getattr(func, "__qualname__", None) or _func_name(func)
    return module, name, canonical_code(func)


class MemorizedResult:
    """A reference to a cached result (``call_and_shelve``): small and
    picklable, loaded with ``get()``."""

    def __init__(self, location, func, args_id, mmap_mode=None, verbose=0, with_metadata=False):
        self.location = location
        self.with_metadata = with_metadata
        self.func = func
        self.args_id = args_id
        self.mmap_mode = mmap_mode
        self.verbose = verbose

    def _store(self):
        return _memo.Store._at(self.location)

    def get(self):
        """The cached value; ``KeyError`` if it was cleared."""
        found = self._store().get(self.args_id, _MISSING)
        if found is _MISSING:
            raise KeyError(
                f"{self.func} with argument hash {self.args_id} is not in {self.location}"
            )
        return _as_mode(found[0] if self.with_metadata else found, self.mmap_mode)

    def clear(self):
        """Removes the value from the cache."""
        self._store().remove(self.args_id)

    def __repr__(self):
        return f'MemorizedResult(location="{self.location}", func="{self.func}", args_id="{self.args_id}")'

    def __reduce__(self):
        return (
            MemorizedResult,
            (self.location, self.func, self.args_id, self.mmap_mode, self.verbose, self.with_metadata),
        )


_MISSING = object()


class NotMemorizedResult:
    """``call_and_shelve``'s result when nothing is cached."""

    __slots__ = ("value", "valid")

    def __init__(self, value):
        self.value = value
        self.valid = True

    def get(self):
        if self.valid:
            return self.value
        raise KeyError("No value stored.")

    def clear(self):
        self.valid = False
        self.value = None

    def __repr__(self):
        if self.valid:
            return f"NotMemorizedResult({pprint.pformat(self.value)})"
        return "NotMemorizedResult with no value"

    def __getstate__(self):
        return {"valid": self.valid, "value": self.value}

    def __setstate__(self, state):
        self.valid = state["valid"]
        self.value = state["value"]


class NotMemorizedFunc:
    """What ``Memory(location=None).cache`` returns: calls the function,
    caches nothing."""

    def __init__(self, func):
        self.func = func

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def call_and_shelve(self, *args, **kwargs):
        return NotMemorizedResult(self.func(*args, **kwargs))

    def call(self, *args, **kwargs):
        return self.func(*args, **kwargs), {}

    def check_call_in_cache(self, *args, **kwargs):
        return False

    def clear(self, warn=True):
        pass

    def __repr__(self):
        return f"NotMemorizedFunc(func={self.func})"


class MemorizedFunc:
    """A function cached by ``Memory.cache``: call it as the function."""

    def __init__(
        self,
        func,
        location,
        backend="local",
        ignore=None,
        mmap_mode=None,
        compress=False,
        verbose=1,
        timestamp=None,
        cache_validation_callback=None,
    ):
        _check_backend(backend, None)
        _check_mmap_mode(mmap_mode)
        self._zstd = _zstd_level(compress)
        if cache_validation_callback is not None and not callable(cache_validation_callback):
            raise ValueError(
                f"cache_validation_callback needs to be callable. Got {cache_validation_callback}."
            )
        self._memory = location if isinstance(location, Memory) else None
        if self._memory is not None:
            # The Memory's open store, with its bytes_limit.
            self._store = self._memory._store
            location = self._memory._store_dir
        else:
            self._store = _memo.Store._at(os.fspath(location))
        self.func = func
        self.ignore = [] if ignore is None else list(ignore)
        self.mmap_mode = mmap_mode
        self.compress = compress
        self._verbose = verbose
        self.timestamp = timestamp
        self.cache_validation_callback = cache_validation_callback
        self._location = os.fspath(location)
        self._ran = _Ran()
        self._build()
        functools.update_wrapper(self, func, updated=())

    def _build(self):
        func = self.func
        self._code_obj = getattr(func, "__code__", None)
        module, name, code = _identity(func)
        self.func_id = f"{module}.{name}"
        sig = inspect.signature(func)
        ran = self._ran
        # A function with a cache_validation_callback stores (output,
        # metadata): the callback reads `time` on every hit. Others store the
        # output alone (a hit decodes less; `call` returns the metadata of
        # its own run). The prefix keeps each shape, and memo.memoize's
        # entries of the same function, under keys of their own.
        with_metadata = self.cache_validation_callback is not None
        self._with_metadata = with_metadata
        code = ("joblib-compatible+metadata " if with_metadata else "joblib-compatible ") + code

        def body(*args, **kwargs):
            ran.ran = True
            if self._verbose > 0:
                path, signature = format_signature(func, *args, **kwargs)
                print(f"{'_' * 80}\n[Memory] Calling {path}...\n{signature}")
            start = time.time()
            output = func(*args, **kwargs)
            duration = time.time() - start
            if self._verbose > 0:
                _print_duration(func, duration)
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            inputs = {k: repr(v) for k, v in bound.arguments.items() if k not in self.ignore}
            ran.metadata = {"duration": duration, "input_args": inputs, "time": start}
            return (output, ran.metadata) if with_metadata else output

        # joblib compresses arrays too: the level is the function's own,
        # so memo compresses them where that pays (and hits decode them).
        self._f = MemoizedFunction(
            body, module, name, code, _params(func), store=self._store, ignore=self.ignore,
            compress=self._zstd,
        )

    def _fresh(self):
        # `func.__code__` reassigned since decoration: key the new code.
        if getattr(self.func, "__code__", None) is not self._code_obj:
            self._build()

    def _cached(self, args, kwargs):
        """(found, (output, metadata)) of a stored, valid result."""
        self._fresh()
        found, value = self._f._get(*args, **kwargs)
        if found and self.cache_validation_callback is not None:
            if not self.cache_validation_callback(value[1]):
                return False, None
        return found, value

    def _output(self, value):
        """The output of a stored value (without its metadata)."""
        return value[0] if self._with_metadata else value

    def __call__(self, *args, **kwargs):
        if self.cache_validation_callback is None and getattr(self.func, "__code__", None) is self._code_obj:
            # The hit path, without the checks a callback or a new code need.
            found, value = self._f._get(*args, **kwargs)
        else:
            found, value = self._cached(args, kwargs)
        if found:
            if self._verbose > 4:
                _print_duration(self.func, 0.0, "cache loaded ")
            return _as_mode(self._output(value), self.mmap_mode)
        if self.cache_validation_callback is not None and self._f.is_cached(*args, **kwargs):
            # Stored but not valid any more: computed again, replacing it.
            return self._after(self._f.recompute(*args, **kwargs), fresh=True, args=args, kwargs=kwargs)[0]
        self._ran.ran = False
        value = self._f(*args, **kwargs)
        return self._after(value, fresh=self._ran.ran, args=args, kwargs=kwargs)[0]

    def _after(self, value, fresh, args, kwargs):
        output = self._output(value)
        metadata = self._ran.metadata if fresh else (value[1] if self._with_metadata else {})
        if fresh and self.mmap_mode == "r":
            # As joblib: the first call returns the stored bytes too.
            found, stored = self._f._get(*args, **kwargs)
            if found:
                output = self._output(stored)
        if not fresh or self.mmap_mode is not None:
            output = _as_mode(output, self.mmap_mode)
        return output, metadata

    def call(self, *args, **kwargs):
        """Runs the function, stores its result; ``(output, metadata)``."""
        self._fresh()
        return self._after(self._f.recompute(*args, **kwargs), True, args, kwargs)

    def check_call_in_cache(self, *args, **kwargs):
        """Whether the call's result is stored (and valid)."""
        return self._cached(args, kwargs)[0]

    def call_and_shelve(self, *args, **kwargs):
        """Computes the call if needed; a ``MemorizedResult`` referring to it."""
        found, _ = self._cached(args, kwargs)
        if not found:
            self(*args, **kwargs)
        return MemorizedResult(
            self._location, self.func_id, self._f.key(*args, **kwargs), self.mmap_mode,
            max(0, self._verbose - 1), self._with_metadata,
        )

    def clear(self, warn=True):
        """Removes every cached result of this function."""
        if self._verbose > 0 and warn:
            _logger.warning("[%r]: Clearing function cache identified by %s", self, self.func_id)
        self._f.clear()

    def __repr__(self):
        return f"MemorizedFunc(func={self.func}, location={self._location})"

    def __reduce__(self):
        return (
            MemorizedFunc,
            (self.func, self._memory or self._location, "local", self.ignore, self.mmap_mode,
             self.compress,
             self._verbose, None, self.cache_validation_callback),
        )


def _check_backend(backend, backend_options):
    if backend != "local":
        raise ValueError(
            f"backend={backend!r}: memo.Memory stores on the local filesystem; to share a "
            "cache across machines set MEMO_REMOTE (redis://, s3://, file://) instead"
        )
    if backend_options:
        unknown = set(backend_options) - {"compress", "mmap_mode", "verbose"}
        if unknown:
            raise ValueError(
                f"backend_options {sorted(unknown)}: memo.Memory honours only compress, "
                "mmap_mode and verbose there"
            )


class Memory:
    """joblib's ``Memory`` on memo's engine: ``location=None`` caches
    nothing; otherwise results live in the memo store ``<location>/memo``.

    >>> import tempfile
    >>> from memo import Memory
    >>> memory = Memory(tempfile.mkdtemp(), verbose=0)
    >>> @memory.cache
    ... def square(x):
    ...     return x * x
    >>> square(3), square.check_call_in_cache(3)
    (9, True)
    """

    def __init__(
        self,
        location=None,
        backend="local",
        mmap_mode=None,
        compress=False,
        verbose=1,
        bytes_limit=None,
        backend_options=None,
    ):
        _check_backend(backend, backend_options)
        opts = dict(backend_options or {})
        mmap_mode = opts.get("mmap_mode", mmap_mode)
        compress = opts.get("compress", compress)
        verbose = opts.get("verbose", verbose)
        _check_mmap_mode(mmap_mode)
        _zstd_level(compress)
        self.location = location
        self.backend = backend
        self.backend_options = backend_options
        self.mmap_mode = mmap_mode
        self.compress = compress
        self._verbose = verbose
        self.bytes_limit = bytes_limit
        self.timestamp = time.time()
        if location is None:
            self._store_dir = None
            return
        self._store_dir = os.path.join(os.fspath(location), "memo")
        # Opened once here with the limit, so it holds on every put; the
        # decorated functions share this open store.
        self._store = _memo.Store(self._store_dir, max_bytes=bytes_limit)

    def cache(self, func=None, ignore=None, verbose=None, mmap_mode=False, cache_validation_callback=None):
        """Caches ``func``: as a call, a bare decorator or a decorator with
        arguments (``@memory.cache(ignore=["x"])``)."""
        if cache_validation_callback is not None and not callable(cache_validation_callback):
            raise ValueError(
                f"cache_validation_callback needs to be callable. Got {cache_validation_callback}."
            )
        if func is None:
            return functools.partial(
                self.cache, ignore=ignore, verbose=verbose, mmap_mode=mmap_mode,
                cache_validation_callback=cache_validation_callback,
            )
        if self._store_dir is None:
            return NotMemorizedFunc(func)
        if verbose is None:
            verbose = self._verbose
        if mmap_mode is False:
            mmap_mode = self.mmap_mode
        if isinstance(func, MemorizedFunc):
            func = func.func
        return MemorizedFunc(
            func, self, ignore=ignore, mmap_mode=mmap_mode, compress=self.compress,
            verbose=verbose, timestamp=self.timestamp,
            cache_validation_callback=cache_validation_callback,
        )

    def clear(self, warn=True):
        """Removes every cached result."""
        if warn:
            _logger.warning("[%r]: Flushing completely the cache", self)
        if self._store_dir is not None:
            self._store.clear()

    def reduce_size(self, bytes_limit=None, items_limit=None, age_limit=None):
        """Evicts results (least recently used first) until the cache fits
        ``bytes_limit`` (bytes, or a str like ``"1G"``) and ``items_limit``
        entries, and holds nothing older than ``age_limit`` (a
        ``datetime.timedelta``)."""
        if self._store_dir is None or (bytes_limit is None and items_limit is None and age_limit is None):
            return
        max_age = None
        if age_limit is not None:
            seconds = age_limit.total_seconds()
            if seconds < 0:
                raise ValueError(f"age_limit has to be a positive timedelta, got {age_limit}")
            max_age = max(seconds, 1e-3)
        if isinstance(bytes_limit, str):
            bytes_limit = _memo_size(bytes_limit)
        if items_limit == 0:
            self._store.clear()
            return
        # memo's `trim` evicts down to LOW_WATER (0.8) of a limit, and its
        # byte limit also covers the index: these limits make it evict down
        # to exactly joblib's (the results' bytes, the item count).
        low_water = 0.8
        max_bytes = max_entries = None
        if bytes_limit is not None:
            index = self._store.stats()["index_bytes"]
            max_bytes = max(1, int((bytes_limit + index) / low_water))
        if items_limit is not None:
            max_entries = max(1, -(-items_limit * 10 // 8))
        _memo.Store(
            self._store_dir, max_bytes=max_bytes, max_entries=max_entries, max_age=max_age
        ).trim()

    def eval(self, func, *args, **kwargs):
        """``func(*args, **kwargs)``, through the cache."""
        if self._store_dir is None:
            return func(*args, **kwargs)
        return self.cache(func)(*args, **kwargs)

    def __repr__(self):
        return f"Memory(location={self._store_dir})"

    def __reduce__(self):
        return (
            Memory,
            (self.location, self.backend, self.mmap_mode, self.compress, self._verbose,
             self.bytes_limit, self.backend_options),
        )


def _memo_size(text: str) -> int:
    """joblib's size strings (``"10M"``, ``"1G"``, ``"3K"``: powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)
