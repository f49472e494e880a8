"""memo.Memory against joblib's own behaviour.

The first part adapts the public-API tests of joblib 1.6's
``joblib/test/test_memory.py`` (BSD-3-Clause, (c) the joblib developers):
test_memory_integration, test_no_memory, test_memory_kwarg,
test_memory_lambda, test_memory_partial, test_memory_eval,
test_argument_change, test_memory_numpy, test_memory_numpy_check_mmap_mode,
test_memory_exception, test_memory_ignore, test_memory_ignore_decorated,
test_memory_args_as_kwargs, test_partial_decoration, test_persistence,
test_check_call_in_cache, test_call_and_shelve, test_memorized_pickling,
test_memorized_repr, test_memory_file_modification,
test_memory_in_memory_function_code_change,
test_clear_memory_with_none_location, test_memory_func_with_kwonly_args,
test_memory_func_with_signature, test_memory_reduce_size_* (adapted:
joblib's read its backend's item list), test_memory_clear,
test_memory_objects_repr, test_memorized_result_pickle,
test_memory_pickle_dump_load. The others test joblib's internals (its store
backends and their registry, func_code.py files, per-item directories,
collision warnings between same-named functions, which memo keys apart by
code instead) and have no counterpart. The second part tests what memo
adds or changes (docs/from-joblib.md)."""

import datetime
import functools
import gc
import os
import pickle
import shutil
import sys
import time

import numpy as np
import pytest

import memo
from memo import Memory, MemorizedFunc, MemorizedResult, NotMemorizedFunc, NotMemorizedResult
from conftest import run_py


def f(x, y=1):
    """A module-level function to test caching (as joblib's)."""
    return 3 * x + y


def check_identity_lazy(func, accumulator, location):
    memory = Memory(location=location, verbose=0)
    func = memory.cache(func)
    for i in range(3):
        for _ in range(2):
            assert func(i) == i
            assert len(accumulator) == i + 1


def test_memory_integration(tmp_path):
    accumulator = []

    def f(arg):
        accumulator.append(1)
        return arg

    check_identity_lazy(f, accumulator, str(tmp_path))
    for mmap_mode in ("r", None):
        memory = Memory(location=str(tmp_path), verbose=10, mmap_mode=mmap_mode)
        g = memory.cache(f)
        g(1)
        g.clear(warn=False)
        current = len(accumulator)
        out = g(1)
        assert len(accumulator) == current + 1
        assert memory.eval(f, 1) == out
        assert len(accumulator) == current + 1
    f.__module__ = "__main__"
    Memory(location=str(tmp_path), verbose=0).cache(f)(1)


def test_no_memory():
    accumulator = []

    def ff(arg):
        accumulator.append(1)
        return arg

    gg = Memory(location=None, verbose=0).cache(ff)
    assert isinstance(gg, NotMemorizedFunc)
    for _ in range(4):
        current = len(accumulator)
        gg(1)
        assert len(accumulator) == current + 1


def test_memory_kwarg(tmp_path):
    accumulator = []

    def g(arg1=None, arg2=1):
        accumulator.append(1)
        return arg1

    check_identity_lazy(g, accumulator, str(tmp_path))
    g = Memory(location=str(tmp_path), verbose=0).cache(g)
    assert g(arg1=30, arg2=2) == 30


def test_memory_lambda(tmp_path):
    accumulator = []

    def helper(x):
        accumulator.append(1)
        return x

    check_identity_lazy(lambda x: helper(x), accumulator, str(tmp_path))


def test_memory_partial(tmp_path):
    accumulator = []

    def func(x, y):
        accumulator.append(1)
        return y

    check_identity_lazy(functools.partial(func, 1), accumulator, str(tmp_path))


def test_memory_eval(tmp_path):
    mm = Memory(location=str(tmp_path), verbose=0).cache(eval("lambda x: x"))
    assert mm(1) == 1


def test_argument_change(tmp_path):
    def count_and_append(x=[]):
        len_x = len(x)
        x.append(None)
        return len_x

    func = Memory(location=str(tmp_path), verbose=0).cache(count_and_append)
    assert func() == 0
    assert func() == 1


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_memory_numpy(tmp_path, mmap_mode):
    accumulator = []

    def n(arg=None):
        accumulator.append(1)
        return arg

    cached_n = Memory(location=str(tmp_path), mmap_mode=mmap_mode, verbose=0).cache(n)
    rnd = np.random.RandomState(0)
    for i in range(3):
        a = rnd.random_sample((10, 10))
        for _ in range(3):
            assert np.all(cached_n(a) == a)
            assert len(accumulator) == i + 1


def test_memory_numpy_check_mmap_mode(tmp_path):
    memory = Memory(location=str(tmp_path), mmap_mode="r", verbose=0)

    @memory.cache()
    def twice(a):
        return a * 2

    a = np.ones(3)
    b = twice(a)
    c = twice(a)
    assert isinstance(c, np.memmap) and c.mode == "r"
    assert isinstance(b, np.memmap) and b.mode == "r"
    assert not c.flags.writeable


def test_memory_exception(tmp_path):
    memory = Memory(location=str(tmp_path), verbose=0)

    class MyException(Exception):
        pass

    @memory.cache
    def h(exc=0):
        if exc:
            raise MyException

    h()
    for _ in range(3):
        with pytest.raises(MyException):
            h(1)


def test_memory_ignore(tmp_path):
    memory = Memory(location=str(tmp_path), verbose=0)
    accumulator = []

    @memory.cache(ignore=["y"])
    def z(x, y=1):
        accumulator.append(1)

    assert z.ignore == ["y"]
    z(0, y=1)
    z(0, y=1)
    z(0, y=2)
    assert len(accumulator) == 1


def test_memory_ignore_decorated(tmp_path):
    memory = Memory(location=str(tmp_path), verbose=0)
    accumulator = []

    def decorate(f):
        @functools.wraps(f)
        def wrapped(*args, **kwargs):
            return f(*args, **kwargs)

        return wrapped

    @memory.cache(ignore=["y"])
    @decorate
    def z(x, y=1):
        accumulator.append(1)

    assert z.ignore == ["y"]
    z(0, y=1)
    z(0, y=1)
    z(0, y=2)
    assert len(accumulator) == 1


def test_memory_args_as_kwargs(tmp_path):
    memory = Memory(location=str(tmp_path), verbose=0)

    @memory.cache
    def plus_one(a):
        return a + 1

    assert plus_one(1) == 2
    assert plus_one(a=1) == 2
    assert plus_one(a=2) == 3


@pytest.mark.parametrize("ignore, verbose, mmap_mode", [(["x"], 100, "r"), ([], 10, None)])
def test_partial_decoration(tmp_path, ignore, verbose, mmap_mode):
    memory = Memory(location=str(tmp_path), verbose=0)

    @memory.cache(ignore=ignore, verbose=verbose, mmap_mode=mmap_mode)
    def z(x):
        pass

    assert z.ignore == ignore
    assert z._verbose == verbose
    assert z.mmap_mode == mmap_mode


def test_persistence(tmp_path):
    memory = Memory(location=str(tmp_path), verbose=0)
    g = memory.cache(f)
    output = g(1)
    h = pickle.loads(pickle.dumps(g))
    assert h.check_call_in_cache(1) and h(1) == output
    memory2 = pickle.loads(pickle.dumps(memory))
    assert repr(memory2) == repr(memory)
    memory = Memory(location=None, verbose=0)
    pickle.loads(pickle.dumps(memory))
    gp = pickle.loads(pickle.dumps(memory.cache(f)))
    gp(1)


@pytest.mark.parametrize("consider_cache_valid", [True, False])
def test_check_call_in_cache(tmp_path, consider_cache_valid):
    for func in (
        MemorizedFunc(f, str(tmp_path), cache_validation_callback=lambda _: consider_cache_valid),
        Memory(location=str(tmp_path), verbose=0).cache(
            f, cache_validation_callback=lambda _: consider_cache_valid
        ),
    ):
        result = func.check_call_in_cache(2)
        assert isinstance(result, bool) and not result
        assert func(2) == 7
        result = func.check_call_in_cache(2)
        assert isinstance(result, bool) and result == consider_cache_valid
        func.clear()
    assert not NotMemorizedFunc(f).check_call_in_cache(2)


def test_call_and_shelve(tmp_path):
    for func, Result in zip(
        (
            MemorizedFunc(f, str(tmp_path)),
            NotMemorizedFunc(f),
            Memory(location=str(tmp_path), verbose=0).cache(f),
            Memory(location=None).cache(f),
        ),
        (MemorizedResult, NotMemorizedResult, MemorizedResult, NotMemorizedResult),
    ):
        assert func(2) == 7
        result = func.call_and_shelve(2)
        assert isinstance(result, Result)
        assert result.get() == 7
        result.clear()
        with pytest.raises(KeyError):
            result.get()
        result.clear()


def test_memorized_pickling(tmp_path):
    for func in (MemorizedFunc(f, str(tmp_path)), NotMemorizedFunc(f)):
        result = func.call_and_shelve(2)
        result2 = pickle.loads(pickle.dumps(result))
        assert result2.get() == result.get()


def test_memorized_repr(tmp_path):
    func = MemorizedFunc(f, str(tmp_path))
    result = func.call_and_shelve(2)
    func2 = MemorizedFunc(f, str(tmp_path))
    result2 = func2.call_and_shelve(2)
    assert result.get() == result2.get()
    assert repr(func) == repr(func2)
    repr(NotMemorizedFunc(f))
    repr(NotMemorizedFunc(f).call_and_shelve(2))
    for verbose in (11, 5):
        MemorizedFunc(f, str(tmp_path), verbose=verbose, timestamp=time.time()).call_and_shelve(11).get()


def test_memory_file_modification(capsys, tmp_path, monkeypatch):
    dir_name = tmp_path / "tmp_import"
    dir_name.mkdir()
    filename = dir_name / "tmp_memo_joblib_.py"
    content = "def f(x):\n    print(x)\n    return x\n"
    filename.write_text(content)
    monkeypatch.syspath_prepend(str(dir_name))
    import tmp_memo_joblib_ as tmp

    memory = Memory(location=str(tmp_path), verbose=0)
    g = memory.cache(tmp.f)
    g(1)
    g(2)
    g(1)
    filename.write_text("\n\n" + content)
    g(1)
    g(1)
    shutil.rmtree(dir_name)
    dir_name.mkdir()
    filename.write_text('def f(x):\n    print("x=%s" % x)\n    return x\n')
    g(1)
    g(1)
    sys.stdout.write("Reloading\n")
    sys.modules.pop("tmp_memo_joblib_")
    import tmp_memo_joblib_ as tmp

    g = memory.cache(tmp.f)
    g(1)
    g(1)
    out, _ = capsys.readouterr()
    assert out == "1\n2\nReloading\nx=1\n"


def _sum(a, b):
    return a + b


def _product(a, b):
    return a * b


def test_memory_in_memory_function_code_change(tmp_path):
    def _function_to_cache(a, b):
        pass

    _function_to_cache.__code__ = _sum.__code__
    g = Memory(location=str(tmp_path), verbose=0).cache(_function_to_cache)
    assert g(1, 2) == 3
    assert g(1, 2) == 3
    _function_to_cache.__code__ = _product.__code__
    assert g(1, 2) == 2
    assert g(1, 2) == 2


def test_clear_memory_with_none_location():
    Memory(location=None).clear()


def func_with_kwonly_args(a, b, *, kw1="kw1", kw2="kw2"):
    return a, b, kw1, kw2


def func_with_signature(a: int, b: float) -> float:
    return a + b


def test_memory_func_with_kwonly_args(tmp_path):
    memory = Memory(location=str(tmp_path), verbose=0)
    func_cached = memory.cache(func_with_kwonly_args)
    assert func_cached(1, 2, kw1=3) == (1, 2, 3, "kw2")
    # joblib raises ValueError("Too many arguments"); memo lets Python
    # raise its own TypeError, as calling the function would
    # (docs/from-joblib.md).
    with pytest.raises(TypeError):
        func_cached(1, 2, 3, kw2=4)
    func_cached(1, 2, kw1=3, kw2=4)
    with pytest.raises(TypeError):
        func_cached(1, 2, 3, kw2=4)
    func_cached = memory.cache(func_with_kwonly_args, ignore=["kw2"])
    assert func_cached(1, 2, kw1=3, kw2=4) == (1, 2, 3, 4)
    assert func_cached(1, 2, kw1=3, kw2="ignored") == (1, 2, 3, 4)


def test_memory_func_with_signature(tmp_path):
    assert Memory(location=str(tmp_path), verbose=0).cache(func_with_signature)(1, 2.0) == 3.0


def _setup_toy_cache(tmp_path, num_inputs=10):
    memory = Memory(location=str(tmp_path), verbose=0)

    @memory.cache()
    def get_1000_bytes(arg):
        return "a" * 1000

    for arg in range(num_inputs):
        get_1000_bytes(arg)
    return memory, get_1000_bytes


def cached_count(memory, g, n=10):
    return sum(g.check_call_in_cache(i) for i in range(n))


def test_memory_reduce_size_bytes_limit(tmp_path):
    memory, g = _setup_toy_cache(tmp_path)
    memory.reduce_size()
    assert cached_count(memory, g) == 10
    memory.reduce_size(bytes_limit="1M")
    assert cached_count(memory, g) == 10
    memory.reduce_size(bytes_limit="3K")
    assert 0 < cached_count(memory, g) <= 2
    memory.reduce_size(bytes_limit=500)
    assert cached_count(memory, g) == 0


def test_memory_reduce_size_items_limit(tmp_path):
    memory, g = _setup_toy_cache(tmp_path)
    memory.reduce_size(items_limit=10)
    assert cached_count(memory, g) == 10
    memory.reduce_size(items_limit=5)
    assert 0 < cached_count(memory, g) <= 5
    memory.reduce_size(items_limit=0)
    assert cached_count(memory, g) == 0


def test_memory_reduce_size_age_limit(tmp_path):
    memory, g = _setup_toy_cache(tmp_path)
    # memo knows when entries were last used through a clock ring of
    # (access tick, second) pairs spaced a second or more apart: ages are
    # as precise as that, so this waits a little longer than joblib's test.
    time.sleep(2.2)
    memory.reduce_size(age_limit=datetime.timedelta(days=1))
    # Counted without looking the entries up (a lookup is a use).
    assert len(memory._store) == 10
    g(-1)
    g(-2)
    time.sleep(2.2)
    memory.reduce_size(age_limit=datetime.timedelta(seconds=2))
    assert len(memory._store) == 2
    assert g.check_call_in_cache(-1) and g.check_call_in_cache(-2)
    with pytest.raises(ValueError, match="has to be a positive"):
        memory.reduce_size(age_limit=datetime.timedelta(seconds=-1))


def test_memory_clear(tmp_path):
    memory, g = _setup_toy_cache(tmp_path)
    memory.clear()
    assert cached_count(memory, g) == 0


def test_memory_objects_repr(tmp_path):
    def my_func(a, b):
        return a + b

    memory = Memory(location=str(tmp_path), verbose=0)
    memorized_func = memory.cache(my_func)
    store = os.path.join(str(tmp_path), "memo")
    assert repr(memorized_func) == f"MemorizedFunc(func={my_func}, location={store})"
    assert repr(memory) == f"Memory(location={store})"
    result = memorized_func.call_and_shelve(42, 42)
    assert repr(result).startswith(f'MemorizedResult(location="{store}", func="')
    assert repr(NotMemorizedFunc(my_func)) == f"NotMemorizedFunc(func={my_func})"


def test_memorized_result_pickle(tmp_path):
    memory = Memory(location=str(tmp_path), verbose=0)

    @memory.cache
    def g(x):
        return x**2

    memorized_result = g.call_and_shelve(42)
    memorized_result.get()
    memorized_result_loads = pickle.loads(pickle.dumps(memorized_result))
    for attr in ("location", "func", "args_id"):
        assert getattr(memorized_result, attr) == getattr(memorized_result_loads, attr)
    assert memorized_result_loads.get() == 42**2


@pytest.mark.parametrize(
    "memory_kwargs",
    [{"compress": 0, "verbose": 0}, {"mmap_mode": "r", "verbose": 0}, {"verbose": 0}],
)
def test_memory_pickle_dump_load(tmp_path, memory_kwargs):
    memory = Memory(location=str(tmp_path), **memory_kwargs)
    memory_reloaded = pickle.loads(pickle.dumps(memory))
    assert repr(memory) == repr(memory_reloaded)
    assert memory_reloaded.mmap_mode == memory.mmap_mode
    func_reloaded = pickle.loads(pickle.dumps(memory.cache(f)))
    assert repr(func_reloaded) == repr(memory.cache(f))
    result = memory.cache(f).call_and_shelve(2)
    assert pickle.loads(pickle.dumps(result)).get() == result.get()


# What memo adds or changes.


def test_the_store_lives_in_location_memo(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    memory = Memory(tmp_path, verbose=0)  # a pathlib.Path
    memory.cache(f)(1)
    assert (tmp_path / "memo").is_dir() and (tmp_path / "precious.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["memo", "precious.txt"]


def test_verbose_prints_what_joblib_prints(tmp_path, capsys):
    g = Memory(str(tmp_path), verbose=1).cache(f)
    g(2, y=3)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "_" * 80
    assert out[1] == f"[Memory] Calling {__name__}.f..."
    assert out[2] == "f(2, y=3)"
    assert out[3].endswith("f - 0.0s, 0.0min") and out[3].startswith("_")
    g(2, y=3)
    assert capsys.readouterr().out == ""


def test_mmap_modes(tmp_path):
    for mode, writeable in ((None, True), ("r", False), ("c", True)):
        memory = Memory(str(tmp_path / str(mode)), mmap_mode=mode, verbose=0)
        g = memory.cache(lambda n: {"a": np.arange(n)})
        g(4)
        out = g(4)["a"]
        assert out.flags.writeable == writeable, mode
        if writeable:
            out[0] = 99
            assert g(4)["a"][0] == 0, "writing into a result never changes the cache"
    for bad in ("r+", "w+"):
        with pytest.raises(ValueError, match="would change"):
            Memory(str(tmp_path), mmap_mode=bad)


class Model:
    def __init__(self):
        self.coef = np.arange(5.0)


def test_objects_with_arrays_come_back_writable_without_mmap_mode(tmp_path):
    g = Memory(str(tmp_path), verbose=0).cache(lambda: Model())
    g()
    m = g()
    m.coef[0] = 7.0
    assert g().coef[0] == 0.0


def test_call_returns_output_and_metadata(tmp_path):
    g = Memory(str(tmp_path), verbose=0).cache(f)
    out, meta = g.call(1, y=2)
    assert out == 5
    assert set(meta) == {"duration", "input_args", "time"}
    assert meta["input_args"] == {"x": "1", "y": "2"}


def test_expires_after(tmp_path):
    calls = []

    def slow(x):
        calls.append(x)
        return x

    g = Memory(str(tmp_path), verbose=0).cache(
        slow, cache_validation_callback=memo.expires_after(seconds=0.3)
    )
    g(1)
    g(1)
    time.sleep(0.4)
    g(1)
    assert calls == [1, 1]


def test_bytes_limit_is_enforced_on_every_store(tmp_path):
    memory = Memory(str(tmp_path), verbose=0, bytes_limit="2M")
    g = memory.cache(lambda i: np.full(50_000, i, dtype=np.float64))  # 400 kB each
    for i in range(30):
        g(i)
    st = memo.Store(str(tmp_path / "memo")).stats()
    assert st["bytes"] <= 2.5 * 1024 * 1024, st
    assert st["evictions"] > 0


def test_backends_memo_cannot_honour_are_named(tmp_path):
    with pytest.raises(ValueError, match="MEMO_REMOTE"):
        Memory(str(tmp_path), backend="s3")
    with pytest.raises(ValueError, match="bucket"):
        Memory(str(tmp_path), backend_options={"bucket": "x"})
    Memory(str(tmp_path), backend="local", backend_options={"mmap_mode": "r"})


def test_compress_is_honoured_without_a_warning(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = Memory(str(tmp_path), compress=3, verbose=0).cache(f)
    assert g(1) == 4 and g(1) == 4
    with pytest.raises(ValueError):
        Memory(str(tmp_path), compress="lots")


def test_comment_edits_do_not_invalidate_and_notebooks_coexist(tmp_path):
    """joblib#1533: a comment or docstring edit recomputed everything; here
    only code edits do."""
    script = tmp_path / "pipe.py"
    body = "from memo import Memory\nm = Memory({loc!r}, verbose=0)\n@m.cache\ndef g(x):\n{body}\nprint(g.check_call_in_cache(2), g(2))\n"
    loc = str(tmp_path / "cache")
    outs = []
    for b in ("    return x * 2", '    """Doubles."""\n    # a comment\n    return x * 2', "    return x * 3"):
        script.write_text(body.format(loc=loc, body=b))
        outs.append(run_py(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')").stdout.strip())
    assert outs == ["False 4", "True 4", "False 6"]


def test_concurrent_processes_compute_once(tmp_path):
    """joblib#1030: processes racing on one cache computed, and rewrote, the
    same result; here one computes and the others wait for it."""
    code = """
import sys, time
sys.path.insert(0, {here!r})
from memo import Memory
m = Memory({loc!r}, verbose=0)
def slow(x):
    with open({log!r}, "a") as f:
        f.write("ran\\n")
    time.sleep(0.5)
    return x
print(m.cache(slow)(7))
"""
    import subprocess

    log = str(tmp_path / "log")
    src = code.format(here=os.path.dirname(__file__), loc=str(tmp_path / "c"), log=log)
    procs = [subprocess.Popen([sys.executable, "-c", src], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == ["7"] * 4
    assert open(log).read().count("ran") == 1
