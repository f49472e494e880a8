"""The exceptions memo raises."""


class MemoError(Exception):
    """A store could not be opened, read or written; the message names the
    path, URL or key."""


class UnhashableArgument(MemoError, TypeError):
    """An argument has no canonical form: it is not built-in data, a numpy
    array, a dataclass, ..., has no ``__memo_key__()`` method and cannot be
    pickled. The message names the argument and the function."""
