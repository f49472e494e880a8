"""Which project a Python program or function belongs to: the nearest
directory holding ``pyproject.toml``, ``setup.py`` or ``.git`` (the default
store is that project's ``.memo`` wherever the program is started from)."""

import os
import sys
from typing import Optional

MARKERS = ("pyproject.toml", "setup.py", ".git")


def project_of(path: Optional[str]) -> Optional[str]:
    """The root of the project the file at ``path`` is in, if any."""
    if not path or path.startswith("<"):
        return None
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if any(os.path.exists(os.path.join(d, m)) for m in MARKERS):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def main_project() -> Optional[str]:
    """The project of the running program (``__main__``'s file), if any."""
    main = sys.modules.get("__main__")
    return project_of(getattr(main, "__file__", None))


def function_project(fn) -> Optional[str]:
    """The project of the file defining ``fn`` (a notebook cell's is the
    working directory's, found by the rest of the default-store rule)."""
    code = getattr(fn, "__code__", None)
    path = getattr(code, "co_filename", None)
    return project_of(path)
