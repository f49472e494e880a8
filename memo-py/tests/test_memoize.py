"""The decorator: computed once, edits that matter recompute and those
that do not (comments, docstrings, formatting) do not, helpers, versions,
ttl, min_cost, the in-process tier, methods, Lazy, DataFile, map, async,
and pickling by reference."""

import asyncio
import os
import pickle
import textwrap
import time

import numpy as np
import pytest

import memo
from conftest import run_py


def test_computed_once_then_loaded(store_dir):
    calls = []

    @memo.memoize(dir=store_dir)
    def fit(data, order=3):
        calls.append(order)
        return [float(x) * order for x in data]

    assert fit([1, 2]) == [3.0, 6.0]
    assert fit([1, 2]) == [3.0, 6.0]
    assert fit([1, 2], order=4) == [4.0, 8.0]
    assert calls == [3, 4]
    assert fit.is_cached([1, 2]) and not fit.is_cached([9])
    s = fit.stats()
    assert (s["entries"], s["hits"], s["misses"]) == (2, 1, 2)
    assert fit.uncached([1, 2]) == [3.0, 6.0] and calls == [3, 4, 3]
    assert fit.recompute([1, 2]) == [3.0, 6.0] and calls == [3, 4, 3, 3]
    assert fit.clear() == 2
    assert not fit.is_cached([1, 2])
    assert fit.__name__ == "fit" and fit.__wrapped__([1], 1) == [1.0]


def test_exceptions_are_raised_and_not_stored(store_dir):
    calls = []

    @memo.memoize(dir=store_dir)
    def f(x):
        calls.append(x)
        raise ValueError(f"bad {x}")

    for _ in range(2):
        with pytest.raises(ValueError, match="bad 1"):
            f(1)
    assert calls == [1, 1]


SCRIPT = """
import memo, sys
@memo.memoize
def step(x):
{body}
was = step.is_cached(3)
v = step(3)
print("loaded" if was else "computed", v)
"""


def run_version(tmp_path, body):
    path = tmp_path / "pipeline.py"
    path.write_text(SCRIPT.format(body=textwrap.indent(textwrap.dedent(body), "    ")))
    env = {"MEMO_DIR": str(tmp_path / "cache")}
    code = f"import runpy; runpy.run_path({str(path)!r}, run_name='__main__')"
    return run_py(code, env=env).stdout.split()


def test_comment_docstring_and_formatting_edits_do_not_recompute(tmp_path):
    assert run_version(tmp_path, "return x * 2")[0] == "computed"
    assert run_version(tmp_path, '"""Doubles."""\n# why: a comment\nreturn (x *   2)  # same')[0] == "loaded"
    assert run_version(tmp_path, "return x * 3") == ["computed", "9"]


def test_helper_edits_recompute_through_uses(tmp_path):
    template = """
import memo
@memo.track
def helper(x):
    return x + {n}
@memo.memoize(uses=[helper])
def step(x):
    return helper(x)
print(0 if step.is_cached(1) else 1)
step(1)
"""
    env = {"MEMO_DIR": str(tmp_path / "cache")}
    p = tmp_path / "m.py"
    outs = []
    for n in (1, 1, 2):
        p.write_text(template.format(n=n))
        outs.append(run_py(f"import runpy; runpy.run_path({str(p)!r}, run_name='__main__')", env=env).stdout.strip())
    assert outs == ["1", "0", "1"]


def test_version_bumps_recompute(store_dir):
    calls = []

    def make(v):
        @memo.memoize(dir=store_dir, version=v)
        def f(x):
            calls.append(v)
            return x
        return f

    make(1)(5)
    make(1)(5)
    make(2)(5)
    assert calls == [1, 2]


def test_ttl_expires_results(store_dir):
    calls = []

    @memo.memoize(dir=store_dir, ttl=0.3)
    def f(x):
        calls.append(x)
        return x

    f(1)
    f(1)
    assert f.is_cached(1)
    time.sleep(0.4)
    # Expired: not cached, though its entry is still in the store.
    assert not f.is_cached(1)
    f(1)
    assert calls == [1, 1]
    assert f.is_cached(1)


def test_min_cost_skips_cheap_results(store_dir):
    @memo.memoize(dir=store_dir, min_cost="50ms")
    def cheap(x):
        return x

    @memo.memoize(dir=store_dir, min_cost=0.05)
    def slow(x):
        time.sleep(0.06)
        return x

    cheap(1)
    slow(1)
    assert not cheap.is_cached(1) and slow.is_cached(1)


def test_memory_tier_returns_the_same_object(store_dir):
    @memo.memoize(dir=store_dir, memory=2)
    def f(x):
        return [x]

    a = f(1)
    assert f(1) is a
    f(2)
    f(3)  # evicts the least recently used
    assert f(3) is f(3)


def test_methods_key_self_like_an_argument(store_dir):
    calls = []

    class Scaler:
        def __init__(self, k):
            self.k = k

        def __memo_key__(self):
            return self.k

        @memo.memoize(dir=store_dir)
        def apply(self, x):
            calls.append((self.k, x))
            return self.k * x

    assert Scaler(2).apply(3) == 6 and Scaler(2).apply(3) == 6
    assert Scaler(3).apply(3) == 9
    assert calls == [(2, 3), (3, 3)]
    assert Scaler(2).apply.is_cached(3)


def test_lazy_calls_are_keyed_by_reference(store_dir):
    loads = []

    @memo.memoize(dir=store_dir)
    def load(n):
        loads.append(n)
        return np.arange(n)

    @memo.memoize(dir=store_dir)
    def total(data):
        return int(data.get().sum())

    lz = load.lazy(5)
    assert lz.key == load.key(5) and not lz.is_loaded()
    assert total(lz) == 10 and lz.is_loaded()
    lz2 = load.lazy(5)
    assert total(lz2) == 10 and not lz2.is_loaded()
    assert loads == [5]


def test_data_files_are_keyed_by_contents(store_dir, tmp_path):
    p = tmp_path / "data.csv"
    p.write_text("1,2,3")
    calls = []

    @memo.memoize(dir=store_dir)
    def parse(f):
        calls.append(1)
        return [int(x) for x in open(f).read().split(",")]

    assert parse(memo.DataFile(p)) == [1, 2, 3]
    assert parse(memo.DataFile(p)) == [1, 2, 3]
    p.write_text("4,5")
    assert parse(memo.DataFile(p)) == [4, 5]
    assert len(calls) == 2
    with pytest.raises(memo.MemoError, match="missing.csv"):
        parse(memo.DataFile(tmp_path / "missing.csv"))


def test_map_keeps_input_order_and_loads_stored_results(store_dir):
    calls = []

    @memo.memoize(dir=store_dir)
    def sq(x, k=1):
        calls.append(x)
        return x * x * k

    assert sq.map([1, 2, (3, 2)]) == [1, 4, 18]
    assert sq.map(range(5), threads=3) == [0, 1, 4, 9, 16]
    assert sorted(calls) == [0, 1, 2, 3, 3, 4]  # (3, 2) and 3 are two calls
    assert sq.map([]) == []


def test_async_functions_stay_coroutines(store_dir):
    calls = []

    @memo.memoize(dir=store_dir)
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    import inspect

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(1)) == {"x": 1}
    assert asyncio.run(fetch(1)) == {"x": 1}
    assert calls == [1] and fetch.is_cached(1)


@memo.memoize
def module_level(x):
    return x + 1


def test_decorated_functions_pickle_by_reference():
    again = pickle.loads(pickle.dumps(module_level))
    assert again is module_level

    @memo.memoize
    def local(x):
        return x

    with pytest.raises(pickle.PicklingError, match="module level"):
        pickle.dumps(local)


def test_registry_names_python_functions_by_module_and_qualname(store_dir):
    @memo.memoize(dir=store_dir)
    def fit(x):
        return x

    fit(1)
    names = [f["function"] for f in memo.Store(store_dir).functions()]
    assert any(n.endswith("test_memoize.test_registry_names_python_functions_by_module_and_qualname.<locals>.fit") for n in names), names


def test_dir_and_store_are_exclusive(store_dir):
    with pytest.raises(ValueError, match="not both"):
        memo.memoize(dir=store_dir, store=memo.Store(store_dir))


def test_an_unstorable_result_is_returned_and_said(store_dir):
    import threading
    import warnings

    @memo.memoize(store=memo.Store(store_dir, pickle=False))
    def f():
        return threading.Lock

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert f() is threading.Lock
    assert any("pickle=False" in str(x.message) for x in w)


def test_the_store_opens_on_the_first_call(tmp_path):
    d = tmp_path / "lazy"

    @memo.memoize(dir=str(d))
    def f(x):
        return x

    assert not d.exists(), "decorating touches no disk"
    f(1)
    assert d.is_dir()


def test_threads_calling_one_key_compute_once_and_wait_without_the_gil(store_dir):
    import threading

    calls = []

    @memo.memoize(dir=store_dir)
    def slow(x):
        calls.append(x)
        # A pure-Python busy wait: it needs the GIL all along, so it ends
        # only if the waiting threads released it.
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
        return x * 2

    out = []
    ts = [threading.Thread(target=lambda: out.append(slow(21))) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    assert out == [42] * 4 and calls == [21]


def test_data_file_directories_are_keyed_by_their_tree(store_dir, tmp_path):
    d = tmp_path / "dataset"
    d.mkdir()
    (d / "a.csv").write_text("1")
    calls = []

    @memo.memoize(dir=store_dir)
    def count(folder):
        calls.append(1)
        return len(os.listdir(folder))

    assert count(memo.DataFile(d)) == 1
    assert count(memo.DataFile(d)) == 1
    (d / "b.csv").write_text("2")
    assert count(memo.DataFile(d)) == 2
    (d / "a.csv").write_text("changed")
    assert count(memo.DataFile(d)) == 2
    assert len(calls) == 3
