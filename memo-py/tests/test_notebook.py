"""Notebooks: a function defined in an IPython cell is keyed by its source,
its results persist across kernel restarts (new processes), and two
notebooks' same-named functions keep their own results."""

import pytest

from conftest import need, run_py

try:
    import IPython  # noqa: F401

    HAVE_IPYTHON = True
except ImportError:
    HAVE_IPYTHON = False

KERNEL = """
import sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
cells = sys.argv[1].split("#--cell--")
for cell in cells:
    r = shell.run_cell(cell)
    if not r.success:
        raise SystemExit(f"cell failed: {r.error_in_exec or r.error_before_exec}")
"""

NOTEBOOK = """
import memo
runs = []
@memo.memoize
def f(x):
    '''a notebook's f'''
    runs.append(x)
    return x * {factor}
#--cell--
print(f(2), len(runs))
"""


def run_notebook(factor, store):
    src = NOTEBOOK.format(factor=factor)
    return run_py(KERNEL, args=[src], env={"MEMO_DIR": store}).stdout.strip()


def test_cells_persist_across_restarts_and_notebooks_coexist(tmp_path):
    need("ipython", HAVE_IPYTHON)
    store = str(tmp_path / "store")
    assert run_notebook(10, store) == "20 1"  # computed
    assert run_notebook(10, store) == "20 0"  # a restarted kernel loads it
    assert run_notebook(100, store) == "200 1"  # another notebook's f: its own result
    assert run_notebook(10, store) == "20 0"  # the first one's is still there


def test_editing_a_cells_comment_keeps_results(tmp_path):
    need("ipython", HAVE_IPYTHON)
    store = str(tmp_path / "store")
    assert run_notebook(3, store) == "6 1"
    src = NOTEBOOK.format(factor=3).replace("return x * 3", "return x * 3  # tripled")
    out = run_py(KERNEL, args=[src], env={"MEMO_DIR": store}).stdout.strip()
    assert out == "6 0"
