"""Real processes: racing processes compute each call once, workers of
multiprocessing share one store, and a process killed at any moment of a
put leaves a store that verifies clean."""

import concurrent.futures
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

import memo
from conftest import run_py

HERE = os.path.dirname(os.path.abspath(__file__))


def computed(log):
    try:
        return open(log).read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def test_racing_processes_compute_once(tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("MEMO_TEST_LOG", str(log))
    monkeypatch.syspath_prepend(HERE)
    import workers

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        results = list(pool.map(workers.slow_square, [7] * 8, [0.3] * 8))
    assert results == [49] * 8
    assert computed(log) == ["square 7"]


def test_processes_sweeping_the_same_inputs_share_them_out(tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("MEMO_TEST_LOG", str(log))
    monkeypatch.syspath_prepend(HERE)
    import workers

    n = 40
    ctx = multiprocessing.get_context("spawn")
    began = time.perf_counter()
    with ctx.Pool(4) as pool:
        out = pool.map(workers.sweep, [n] * 4)
    wall = time.perf_counter() - began
    assert all(o == [x * x for x in range(n)] for o in out)
    lines = computed(log)
    assert sorted(lines) == sorted(f"square {x}" for x in range(n)), "each input computed once"
    # One process alone needs n x 50 ms = 2 s; four share the work (a loose
    # bound: process start-up and a busy machine add to it).
    print(f"4 processes swept {n} x 50 ms inputs in {wall:.2f} s (one alone: {n * 0.05:.1f} s)")


def test_memoized_functions_cross_process_pools_by_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMO_TEST_LOG", str(tmp_path / "log"))
    monkeypatch.syspath_prepend(HERE)
    import workers

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(workers.slow_square, range(6)) == [x * x for x in range(6)]
    # The parent finds what the workers stored (under the keys it makes).
    store = memo.Store(os.environ["MEMO_DIR"])
    assert all(workers.slow_square.key(x) in store for x in range(6))


KILLED_CHILD = """
import sys, numpy as np
sys.path.insert(0, {here!r})
import workers
i = 0
while True:
    workers.big(i, {n})
    i += 1
"""


def test_kill_9_at_random_moments_leaves_a_clean_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMO_TEST_LOG", str(tmp_path / "log"))
    rounds = int(os.environ.get("MEMO_PY_KILL_ROUNDS", "6"))
    rng = random.Random(7)
    for r in range(rounds):
        n = rng.choice([10, 20_000, 300_000])
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_CHILD.format(here=HERE, n=n)],
            env=dict(os.environ),
        )
        time.sleep(rng.uniform(0.3, 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait()
    store = memo.Store(os.environ["MEMO_DIR"])
    report = store.verify()
    assert report["corrupt"] == 0 and not report["problems"], report
    assert len(store) > 0
    # Every stored value still loads, and is what was computed.
    monkeypatch.syspath_prepend(HERE)
    import workers

    loaded = 0
    for i in range(50):
        for n in (10, 20_000, 300_000):
            v = store.get(workers.big.key(i, n))
            if v is not None:
                assert v.shape == (n,) and np.all(v == i)
                loaded += 1
    assert loaded > 0


def test_a_child_process_reads_what_a_parent_stored(store_dir):
    s = memo.Store(store_dir)
    s.put(memo.key("shared"), {"a": np.arange(4)})
    out = run_py(
        f"""
        import memo
        print(memo.Store({store_dir!r}).get(memo.key("shared"))["a"].tolist())
        """
    ).stdout.strip()
    assert out == "[0, 1, 2, 3]"
