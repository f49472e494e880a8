"""memo.Store: the store as a dict of keys, its limits, its reports, and
clear errors for bad input that lose nothing."""

import os
import threading
import time

import numpy as np
import pytest

import memo


def test_get_put_remove_contains_len(store_dir):
    s = memo.Store(store_dir)
    k = memo.key("a")
    assert s.get(k) is None and s.get(k, 5) == 5 and k not in s and len(s) == 0
    s.put(k, {"v": [1, 2]})
    assert s.get(k) == {"v": [1, 2]} and k in s and len(s) == 1
    assert s.remove(k) is True and s.remove(k) is False and k not in s
    assert s.dir == store_dir and not s.is_read_only
    assert repr(s) == f"memo.Store({store_dir!r})"


def test_get_or_compute_runs_once_across_threads(store_dir):
    s = memo.Store(store_dir)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return np.arange(3)

    out = []
    ts = [threading.Thread(target=lambda: out.append(s.get_or_compute(memo.key("x"), slow))) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(calls) == 1 and all(list(o) == [0, 1, 2] for o in out)


def test_limits_are_enforced(store_dir):
    s = memo.Store(store_dir, max_bytes="2MiB", max_age="1h", max_entries=1000, policy="lfu")
    for i in range(50):
        s.put(memo.key(i), np.full(20_000, i, dtype=np.float64))  # 160 kB each
    s.trim()
    st = s.stats()
    assert st["bytes"] <= 2 * 1024 * 1024 + 512 * 1024, st
    assert st["evictions"] > 0


def test_stats_functions_and_verify_as_the_command_reports_them(store_dir):
    @memo.memoize(dir=store_dir)
    def f(x):
        return x

    f(1), f(1), f(2)
    s = memo.Store(store_dir)
    st = s.stats()
    for field in ("entries", "bytes", "hits", "misses", "hit_ratio", "compute_secs",
                  "remote_hits", "remote_misses", "remote_errors", "uploads"):
        assert field in st
    assert st["entries"] == 2
    (row,) = s.functions()
    assert row["function"].endswith(".f") and row["entries"] == 2 and row["hits"] == 1
    v = s.verify()
    assert v["entries_checked"] == 2 and v["corrupt"] == 0 and v["problems"] == []
    s.clear()
    assert len(s) == 0


def test_read_only_stores_serve_hits_and_refuse_puts(store_dir):
    memo.Store(store_dir).put(memo.key("a"), 1)
    ro = memo.Store(store_dir, read_only=True)
    assert ro.is_read_only and ro.get(memo.key("a")) == 1
    with pytest.raises(memo.MemoError):
        ro.put(memo.key("b"), 2)
    calls = []

    @memo.memoize(store=ro)
    def f(x):
        calls.append(x)
        return x

    assert f(1) == 1 and f(1) == 1 and calls == [1, 1]


def test_a_file_as_the_store_directory_is_a_clear_error(tmp_path):
    p = tmp_path / "not-a-dir"
    p.write_text("precious")
    with pytest.raises(memo.MemoError, match="not-a-dir"):
        memo.Store(str(p))
    assert p.read_text() == "precious"


def test_bad_options_are_named(store_dir):
    with pytest.raises(ValueError, match="max_bytes"):
        memo.Store(store_dir, max_bytes="lots")
    with pytest.raises(ValueError, match="policy"):
        memo.Store(store_dir, policy="fifo")
    with pytest.raises(ValueError, match="durability"):
        memo.Store(store_dir, durability="maybe")
    with pytest.raises(ValueError, match="not a memo key"):
        memo.Store(store_dir).get("xyz")
    with pytest.raises(memo.MemoError, match="ftp"):
        memo.Store(store_dir, remote="ftp://host/x")


def test_durable_stores(store_dir):
    s = memo.Store(store_dir, durability="sync")
    s.put(memo.key(1), "kept")
    assert memo.Store(store_dir).get(memo.key(1)) == "kept"


def test_a_value_too_large_is_a_clear_error_and_loses_nothing(store_dir):
    s = memo.Store(store_dir, max_bytes="1MiB")
    s.put(memo.key("small"), 1)
    with pytest.raises(memo.MemoError, match="too large|larger|limit"):
        s.put(memo.key("huge"), np.zeros(300_000))  # 2.4 MB
    assert s.get(memo.key("small")) == 1 and memo.key("huge") not in s
    calls = []

    @memo.memoize(store=s)
    def big(n):
        calls.append(n)
        return np.zeros(n)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert big(300_000).shape == (300_000,)  # returned, not stored
    assert s.get(memo.key("small")) == 1
