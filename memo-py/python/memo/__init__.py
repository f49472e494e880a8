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
from ._memo import Store
from ._memoize import DataFile, Lazy, MemoizedFunction, key, memoize, track

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
