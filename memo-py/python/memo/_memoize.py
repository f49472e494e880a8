"""``memo.memoize`` and its companions: ``track``, ``Lazy``, ``DataFile``,
``key``. The call itself runs in the native module (``memo._memo``)."""

import concurrent.futures
import functools
import importlib
import inspect
import os
import pathlib
import sys
import threading
from typing import Any, Callable, Iterable, List, Optional, Sequence

from . import _memo
from ._project import function_project
from ._source import canonical_code

_MISSING = object()


def key(value: Any) -> str:
    """The canonical key of any value, hashed as arguments are: 64
    lowercase hex characters, the same in every process and machine.

    >>> import memo
    >>> memo.key({"a": 1, "b": 2}) == memo.key({"b": 2, "a": 1})
    True
    >>> memo.key(1) == memo.key(1.0)
    False
    """
    return _memo.key(value)


def _digest_of(helpers) -> Optional[bytes]:
    """The digest of tracked helpers' code (``uses=``)."""
    if not helpers:
        return None
    digests = []
    for h in helpers:
        d = getattr(h, "__memo_digest__", None)
        if d is None:
            name = getattr(h, "__qualname__", repr(h))
            raise TypeError(
                f"uses=[{name}]: decorate it with @memo.track so its code is part of the key"
            )
        digests.append(d)
    return _memo.digest(b"".join(sorted(digests)))


def track(fn=None, *, uses: Sequence[Callable] = ()):
    """Marks ``fn`` as a helper whose code memoized functions key on when
    they list it in ``uses=[...]``; editing it then recomputes them. The
    function itself is returned unchanged (calling it costs nothing more).

    >>> import memo
    >>> @memo.track
    ... def scale(x):
    ...     return 2 * x
    >>> len(scale.__memo_digest__)
    32
    """

    def mark(f):
        nested = _digest_of(uses) or b""
        f.__memo_digest__ = _memo.digest(canonical_code(f).encode() + nested)
        return f

    return mark if fn is None else mark(fn)


class Lazy:
    """A call by reference: its key now, its value on the first ``get()``.
    As an argument of another memoized function it is keyed by its key,
    so a pipeline's later steps find their results without loading the
    earlier ones."""

    __slots__ = ("_fn", "_args", "_kwargs", "_value", "key")

    def __init__(self, fn, args, kwargs):
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._value = _MISSING
        #: The call's key (64 hex characters).
        self.key: str = fn.key(*args, **kwargs)

    def get(self):
        """The call's value: stored, or computed and stored now."""
        if self._value is _MISSING:
            self._value = self._fn(*self._args, **self._kwargs)
        return self._value

    def is_loaded(self) -> bool:
        """Whether ``get()`` has run."""
        return self._value is not _MISSING

    def __memo_key__(self):
        return self.key

    def __repr__(self):
        return f"memo.Lazy({self._fn.__qualname__}, key={self.key[:12]}...)"


class DataFile:
    """A file or directory argument keyed by its path and its contents
    (hashed when the call is keyed, and again only when the file changed:
    the digest is kept for the process), so editing the file recomputes
    what read it.

    >>> import memo, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write("1,2\\n")
    >>> k = memo.key(memo.DataFile(p))
    >>> _ = open(p, "w").write("1,3\\n")
    >>> k == memo.key(memo.DataFile(p))
    False
    """

    __slots__ = ("path",)

    def __init__(self, path):
        #: The file's path.
        self.path = pathlib.Path(path)

    def __memo_key__(self):
        return (str(self.path), _memo.file_digest(str(self.path)))

    def __fspath__(self):
        return str(self.path)

    def __repr__(self):
        return f"memo.DataFile({str(self.path)!r})"

    def __eq__(self, other):
        return isinstance(other, DataFile) and other.path == self.path

    def __hash__(self):
        return hash(self.path)


def _lookup(module: str, qualname: str):
    """The memoized function named ``module.qualname`` (how one pickles: by
    reference, so workers of multiprocessing and joblib import it)."""
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class MemoizedFunction(_memo.Function):
    """A function whose results memo keeps. Call it as the function; see
    ``memo.memoize``."""

    def __get__(self, obj, objtype=None):
        # A method: `self` is the first argument, keyed like any other.
        if obj is None:
            return self
        return _BoundMethod(self, obj)

    def __reduce__(self):
        if "<locals>" in self.__qualname__:
            import pickle

            raise pickle.PicklingError(
                f"{self.__qualname__} is defined inside a function: memoized functions "
                "pickle by reference, so define it at module level"
            )
        return (_lookup, (self.__module__, self.__qualname__))

    def __repr__(self):
        return f"<memoized function {self.__module__}.{self.__qualname__}>"

    def lazy(self, *args, **kwargs) -> Lazy:
        """The call by reference: ``Lazy`` with its key now and its value on
        the first ``get()``."""
        return Lazy(self, args, kwargs)

    def map(
        self,
        inputs: Iterable[Any],
        threads: Optional[int] = None,
        progress: Optional[bool] = None,
    ) -> List[Any]:
        """The results of calling the function on each input, in input order.

        Each input is a tuple of positional arguments (anything else is one
        argument). Stored results are loaded and the rest computed on
        ``threads`` threads (default: one per core), each once across
        processes: every process running the same sweep first takes the
        inputs nobody is computing, then waits for the ones others are, so
        processes share the work out. ``progress`` (default: when stderr is
        a terminal) draws a bar on stderr.
        """
        calls = [x if isinstance(x, tuple) else (x,) for x in inputs]
        n = len(calls)
        results: List[Any] = [None] * n
        if n == 0:
            return results
        threads = max(1, threads or os.cpu_count() or 1)
        bar = _Progress(self.__qualname__, n, sys.stderr.isatty() if progress is None else progress)
        busy: List[int] = []
        lock = threading.Lock()

        def first(i):
            done, value = self._try_call(*calls[i])
            if done:
                results[i] = value
                bar.step()
            else:
                with lock:
                    busy.append(i)

        def wait(i):
            results[i] = self(*calls[i])
            bar.step()

        try:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                for f in [pool.submit(first, i) for i in range(n)]:
                    f.result()
                for f in [pool.submit(wait, i) for i in sorted(busy)]:
                    f.result()
        finally:
            bar.close()
        return results


class _BoundMethod:
    """A memoized method bound to its instance."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func, obj):
        self.__func__ = func
        self.__self__ = obj

    def __call__(self, *args, **kwargs):
        return self.__func__(self.__self__, *args, **kwargs)

    def __getattr__(self, name):
        attr = getattr(self.__func__, name)
        if name in ("uncached", "recompute", "is_cached", "key", "lazy"):
            return functools.partial(attr, self.__self__)
        return attr

    def map(self, inputs, threads=None, progress=None):
        inputs = [(self.__self__, *(x if isinstance(x, tuple) else (x,))) for x in inputs]
        return self.__func__.map(inputs, threads=threads, progress=progress)


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, name, total, show):
        self.name, self.total, self.show = name, total, show
        self.done = 0
        self.lock = threading.Lock()

    def step(self):
        if not self.show:
            return
        with self.lock:
            self.done += 1
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(
                f"\r{self.name} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            )
            sys.stderr.flush()

    def close(self):
        if self.show:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _params(fn):
    sig = inspect.signature(fn)
    out = []
    for p in sig.parameters.values():
        has_default = p.default is not inspect.Parameter.empty
        out.append((p.name, int(p.kind), has_default, p.default if has_default else None))
    return out


def memoize(
    fn=None,
    *,
    dir=None,
    store=None,
    ignore: Sequence[str] = (),
    version=None,
    uses: Sequence[Callable] = (),
    ttl=None,
    min_cost=None,
    memory: int = 0,
    compress=None,
):
    """Memoizes ``fn``: each call's result is computed once across threads,
    processes, machines and runs, and loaded after.

    ``dir`` or ``store`` (not both) choose the store; by default it is
    ``$MEMO_DIR``, else the project's ``.memo`` (``memo.Store.default_dir``).
    ``ignore`` names arguments left out of the key; ``version`` is bumped by
    hand; ``uses`` lists ``@memo.track`` helpers whose code is in the key;
    ``ttl`` and ``min_cost`` are durations (``"1h"``, ``"50ms"`` or
    seconds); ``memory=N`` keeps up to N results in this process as the
    objects themselves. ``compress`` stores results compressed with zstd
    where that pays (``True`` or ``"zstd"`` for level 3, a level 1-22,
    ``"zstd:9"``; arrays too, whose hits then decode instead of viewing the
    file); ``None`` follows the store's ``compress``, ``False`` never.

    >>> import memo, tempfile
    >>> @memo.memoize(dir=tempfile.mkdtemp())
    ... def square(x):
    ...     return x * x
    >>> square(12), square(12), square.is_cached(12)
    (144, 144, True)
    """
    if store is not None and dir is not None:
        raise ValueError("memoize: give dir= or store=, not both")
    if isinstance(ignore, str):
        ignore = [ignore]

    def wrap(f):
        if isinstance(f, MemoizedFunction):
            raise TypeError(f"{f.__qualname__} is memoized already")
        if inspect.iscoroutinefunction(f):
            return _memoize_async(f, dir=dir, store=store, ignore=ignore, version=version,
                                  uses=uses, ttl=ttl, min_cost=min_cost, memory=memory,
                                  compress=compress)
        return _make(f, dir, store, ignore, version, uses, ttl, min_cost, memory, compress)

    return wrap if fn is None else wrap(fn)


def _make(f, dir, store, ignore, version, uses, ttl, min_cost, memory, compress=None):
    if store is not None and not isinstance(store, _memo.Store):
        raise TypeError(f"store= takes a memo.Store, not a {type(store).__name__}")
    # The store opens on the first call (dir= and the default one), so an
    # import touches no disk and MEMO_DIR set after it counts.
    m = MemoizedFunction(
        f,
        f.__module__ or "__main__",
        f.__qualname__,
        canonical_code(f),
        _params(f),
        store=store,
        dir=None if dir is None else os.fspath(dir),
        project=function_project(f),
        ignore=list(ignore),
        version="" if version is None else str(version),
        helpers=_digest_of(uses),
        ttl=ttl,
        min_cost=min_cost,
        memory=int(memory),
        compress=compress,
    )
    functools.update_wrapper(m, f)
    return m


def _memoize_async(f, **kw):
    """An ``async def``: stays a coroutine function. The key and the
    lookup happen when it is awaited; a miss awaits the body and stores
    its result (single flight within the call's key is not held across an
    ``await``: two tasks missing at once both compute)."""
    sync_twin = _make(f, kw["dir"], kw["store"], kw["ignore"], kw["version"], kw["uses"],
                      kw["ttl"], kw["min_cost"], kw["memory"], kw["compress"])

    @functools.wraps(f)
    async def call(*args, **kwargs):
        found, value = sync_twin._get(*args, **kwargs)
        if found:
            return value
        import time

        began = time.perf_counter()
        value = await f(*args, **kwargs)
        sync_twin._put(time.perf_counter() - began, value, *args, **kwargs)
        return value

    call.uncached = f
    call.is_cached = sync_twin.is_cached
    call.key = sync_twin.key
    call.clear = sync_twin.clear
    call.stats = sync_twin.stats
    return call
