#!/usr/bin/env python3
"""The Python memoizers a user would otherwise pick, on memo's workloads.

joblib.Memory, diskcache (`Cache.memoize`) and functools.lru_cache (in
memory, not persistent), measured the way the Rust benches measure memo:

- memoize_hit_small: a hit of `f(x: int) -> int`, cycling over 1024 cached
  arguments (benches/memoize.rs);
- hit_8MiB: a hit returning 8 MiB of float64 (a numpy array; joblib also
  with mmap_mode="r", its zero-copy path) (benches/bulk.rs);
- memoize_miss_u64: a miss of a trivial body, each call a new argument;
- hit_100B / put_100B: diskcache's `get` / `set` of 100 bytes over 100k
  keys (benches/store.rs).

Writes target/memo-bench/python.json (medians in ns), which
benches/chart.py draws beside the Rust results. Needs `pip install joblib
diskcache numpy`; prints what it measured.

    python3 benches/peers.py
"""

import functools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

try:
    import diskcache
    import joblib
    import numpy as np
except ImportError as e:
    sys.exit(f"peers.py needs joblib, diskcache and numpy ({e}): pip install joblib diskcache numpy")

N = 1024
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "memo-bench")


def per_call(fn, args, rounds=21):
    """Median over `rounds` batches of the mean time per call, in ns."""
    samples = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        for a in args:
            fn(a)
        samples.append((time.perf_counter_ns() - t) / len(args))
    return statistics.median(samples)


def each(fn, rounds=21):
    """Median of `rounds` single timed calls, in ns."""
    samples = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples)


def main():
    tmp = tempfile.mkdtemp(prefix="memo-peers-")
    results = {}
    try:
        memory = joblib.Memory(os.path.join(tmp, "joblib"), verbose=0)
        memory_mm = joblib.Memory(os.path.join(tmp, "joblib-mmap"), mmap_mode="r", verbose=0)
        cache = diskcache.Cache(os.path.join(tmp, "diskcache"))

        def small(x):
            return (x * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF

        j_small = memory.cache(small)
        d_small = cache.memoize()(small)
        l_small = functools.lru_cache(maxsize=4096)(small)
        keys = list(range(N))
        for f in (j_small, d_small, l_small):
            for x in keys:
                f(x)
        results["memoize_hit_small"] = {
            "joblib Memory hit": per_call(j_small, keys, rounds=5),
            "diskcache memoize hit": per_call(d_small, keys),
            "functools.lru_cache hit (in memory, not persistent)": per_call(l_small, keys),
        }

        def big(seed):
            return np.arange(1 << 20, dtype=np.float64) * seed

        j_big, jm_big, d_big = memory.cache(big), memory_mm.cache(big), cache.memoize()(big)
        for f in (j_big, jm_big, d_big):
            f(1)
        results["hit_8MiB"] = {
            "joblib Memory hit (numpy)": each(lambda: j_big(1)),
            "joblib Memory hit, mmap_mode='r'": each(lambda: jm_big(1)),
            "diskcache memoize hit (numpy)": each(lambda: d_big(1)),
        }

        counter = iter(range(10**9))
        j_miss = memory.cache(lambda x: x + 1)
        d_miss = cache.memoize()(lambda x: x + 1)
        results["memoize_miss_u64"] = {
            "joblib Memory miss": each(lambda: j_miss(next(counter)), rounds=201),
            "diskcache memoize miss": each(lambda: d_miss(next(counter)), rounds=1001),
        }

        store = diskcache.Cache(os.path.join(tmp, "store"))
        value = bytes(100)
        names = [f"key-{i}" for i in range(100_000)]
        put_ns = per_call(lambda k: store.set(k, value), names[:20_000], rounds=3)
        for k in names:
            store.set(k, value)
        sample = random.Random(7).sample(names, 10_000)
        results["hit_100B"] = {"diskcache get": per_call(store.get, sample, rounds=5)}
        results["put_100B"] = {"diskcache set": put_ns}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    os.makedirs(ROOT, exist_ok=True)
    out = os.path.join(ROOT, "python.json")
    with open(out, "w") as f:
        json.dump(
            {
                "python": sys.version.split()[0],
                "joblib": joblib.__version__,
                "diskcache": diskcache.__version__,
                "groups": results,
            },
            f,
            indent=1,
        )
    for group, rows in results.items():
        for name, ns in rows.items():
            print(f"{group:20} {name:55} {ns / 1000:12.2f} µs")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
