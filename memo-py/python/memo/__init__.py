"""memo: memoize Python functions into a crash-safe store shared by threads,
processes and machines, with numpy results loaded as views of the mapped
file.

>>> import memo, tempfile
>>> @memo.memoize(dir=tempfile.mkdtemp())
... def fit(x, order=3):
...     return [x ** k for k in range(order)]
>>> fit(2), fit(2, order=3), fit.is_cached(2)
([1, 2, 4], [1, 2, 4], True)
"""

from ._errors import MemoError, UnhashableArgument
from ._joblib import (
    MemorizedFunc,
    MemorizedResult,
    Memory,
    NotMemorizedFunc,
    NotMemorizedResult,
    expires_after,
)
from ._memo import Store, _settle_installs
from ._memoize import DataFile, Lazy, MemoizedFunction, key, memoize, track


class _ChildExit:
    """Installs, as a multiprocessing child ends, what its remote hits left
    queued for the local store: a remote hit installs its value in the
    background and the process's exit installs what is left, but a
    multiprocessing child ends with os._exit, which skips that."""

    registered = False

    def before_fork(self):
        # multiprocessing clears its finalizers in a new child, then runs
        # its after-fork callbacks: the finalizer is made there.
        import sys

        util = sys.modules.get("multiprocessing.util")
        if util is not None and not _ChildExit.registered:
            util.register_after_fork(self, _ChildExit.in_child)
            _ChildExit.registered = True

    @staticmethod
    def in_child(_self):
        import multiprocessing.util

        multiprocessing.util.Finalize(None, _settle_installs, exitpriority=0)


_child_exit = _ChildExit()

import os as _os

_os.register_at_fork(before=_child_exit.before_fork)

__all__ = [
    "DataFile",
    "Lazy",
    "MemoError",
    "MemoizedFunction",
    "MemorizedFunc",
    "MemorizedResult",
    "Memory",
    "NotMemorizedFunc",
    "NotMemorizedResult",
    "expires_after",
    "Store",
    "UnhashableArgument",
    "key",
    "memoize",
    "track",
]
