"""memo for Python side by side with functools.lru_cache, cachebox,
diskcache, joblib.Memory and cachier, in one process on one machine.

    target/py/bin/python memo-py/benches/bench.py [--quick] [--json out.json]

(`scripts/python-env.sh --bench` builds memo into target/py and installs
the peers.) Each row is the median of repeated measurements; ratios are
against the other tools measured in the same run. Run it with nothing else
busy: the machine's noise is larger than some of the differences.
"""

import argparse
import functools
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

import memo

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def median_per_call(call, n, repeats):
    """Median over `repeats` batches of the time of one of `n` calls, in µs."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        for _ in range(n):
            call()
        out.append((time.perf_counter_ns() - t) / n / 1000)
    return statistics.median(out)


def median_once(call, repeats):
    """Median of `repeats` single calls, in µs."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t) / 1000)
    return statistics.median(out)


def small_result(x):
    return {"id": x, "name": "result", "values": [1.5, 2.5, 3.5], "ok": True}  # ~100 B


def peers(tmp, body, memory_tier=True):
    """(name, decorated) for every tool that can memoize `body`."""
    out = []
    if memory_tier:
        out.append(("functools.lru_cache", functools.lru_cache(maxsize=1024)(body)))
        try:
            import cachebox

            out.append(("cachebox", cachebox.cached(cachebox.LRUCache(1024))(body)))
        except ImportError:
            print("cachebox not installed: its rows are left out", file=sys.stderr)
    out.append(("memo", memo.memoize(dir=os.path.join(tmp, "memo"))(body)))
    if memory_tier:
        out.append(("memo memory=1024", memo.memoize(dir=os.path.join(tmp, "memo-m"), memory=1024)(body)))
    try:
        import diskcache

        out.append(("diskcache", diskcache.Cache(os.path.join(tmp, "diskcache")).memoize()(body)))
    except ImportError:
        print("diskcache not installed: its rows are left out", file=sys.stderr)
    import joblib

    out.append(("joblib.Memory", joblib.Memory(os.path.join(tmp, "joblib"), verbose=0).cache(body)))
    try:
        from cachier import cachier

        out.append(("cachier", cachier(cache_dir=os.path.join(tmp, "cachier"))(body)))
    except ImportError:
        print("cachier not installed: its rows are left out", file=sys.stderr)
    return out


def bench_small_hits(tmp, quick):
    rows = {}
    for name, f in peers(tmp, small_result):
        f(7)
        f(7)
        slow = name in ("joblib.Memory", "cachier", "diskcache")
        n = (200 if slow else 20_000) // (10 if quick else 1)
        rows[name] = median_per_call(lambda: f(7), n, 7)
    return rows


def big_result(n):
    return np.arange(n, dtype=np.float64)


def bench_big_hits(tmp, quick):
    import joblib

    n = 10_000_000  # 80 MB
    rows = {}
    tools = [
        ("memo", memo.memoize(dir=os.path.join(tmp, "memo-big"))(big_result)),
        ("joblib.Memory", joblib.Memory(os.path.join(tmp, "jb"), verbose=0).cache(big_result)),
        ("joblib.Memory mmap_mode='r'",
         joblib.Memory(os.path.join(tmp, "jbm"), mmap_mode="r", verbose=0).cache(big_result)),
    ]
    try:
        import diskcache

        tools.append(("diskcache", diskcache.Cache(os.path.join(tmp, "dcb")).memoize()(big_result)))
    except ImportError:
        pass
    try:
        from cachier import cachier

        tools.append(("cachier", cachier(cache_dir=os.path.join(tmp, "cb"))(big_result)))
    except ImportError:
        pass
    for name, f in tools:
        f(n)
        f(n)
        rows[name] = median_once(lambda: f(n), 5 if quick else 15)
    return rows


def labels(n):
    return np.random.default_rng(7).integers(0, 100, n, dtype=np.int32)


def dir_bytes(path):
    return sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
    )


def bench_compressed(tmp, quick):
    """A 64 MiB int32 label array (100 classes) through memo.Memory and
    joblib.Memory, both with compress=3: bytes on disk, first call (compute
    and store), cached hit."""
    import joblib

    n = (16 << 20) if not quick else (4 << 20)  # int32: 64 MiB
    rows = {}
    for name, mem in [
        ("memo.Memory compress=3", memo.Memory(os.path.join(tmp, "mc"), compress=3, verbose=0)),
        ("joblib.Memory compress=3", joblib.Memory(os.path.join(tmp, "jc"), compress=3, verbose=0)),
        ("memo.Memory (no compression)", memo.Memory(os.path.join(tmp, "mn"), verbose=0)),
    ]:
        f = mem.cache(labels)
        t = time.perf_counter_ns()
        f(n)
        first = (time.perf_counter_ns() - t) / 1e6
        hit = median_once(lambda: f(n), 3 if quick else 7) / 1000
        rows[name] = {"bytes": dir_bytes(mem.location), "first_ms": first, "hit_ms": hit}
    return rows


def total(a):
    return float(a[:10].sum())


def bench_big_argument(tmp, quick):
    import joblib

    a = np.random.default_rng(0).random((512 << 20) // 8 // (8 if quick else 1))
    rows = {}
    tools = [
        ("memo", memo.memoize(dir=os.path.join(tmp, "memo-arg"))(total)),
        ("joblib.Memory", joblib.Memory(os.path.join(tmp, "jba"), verbose=0).cache(total)),
    ]
    try:
        import diskcache

        tools.append(("diskcache", diskcache.Cache(os.path.join(tmp, "dca")).memoize()(total)))
    except ImportError:
        pass
    for name, f in tools:
        f(a)
        rows[name] = median_once(lambda: f(a), 3 if quick else 5)
    rows["blake3 of the bytes alone (memo.key)"] = median_once(lambda: memo.key(a), 3 if quick else 5)
    return rows, a.nbytes


def trivial(x):
    return x


def bench_miss(tmp, quick):
    f = memo.memoize(dir=os.path.join(tmp, "memo-miss"))(trivial)
    n = 2000 if quick else 20_000
    xs = iter(range(10**9))
    memo_us = median_per_call(lambda: f(next(xs)), n // 5, 5)
    body_us = median_per_call(lambda: trivial(next(xs)), n, 5)
    return {"memo miss (store included)": memo_us, "the body alone": body_us}


def bench_processes(tmp, quick):
    import sweep_worker

    n = 60 if quick else 200
    os.environ["MEMO_DIR"] = os.path.join(tmp, "sweep")
    os.environ["MEMO_BENCH_LOG"] = os.path.join(tmp, "sweep.log")
    ctx = multiprocessing.get_context("spawn")
    t = time.perf_counter()
    with ctx.Pool(4) as pool:
        pool.map(sweep_worker.sweep, [n] * 4)
    wall = time.perf_counter() - t
    computed = len(open(os.environ["MEMO_BENCH_LOG"]).read().split())
    return {"wall_s": wall, "ideal_s": n * 0.05 / 4, "inputs": n, "computed": computed}


def ratio_line(rows, base, other):
    if base in rows and other in rows:
        return f"{other} / {base} = {rows[other] / rows[base]:.1f}x"
    return ""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--only", help="comma-separated rows: small,big,arg,miss,processes,compress")
    a = p.parse_args()
    only = set((a.only or "small,big,arg,miss,processes,compress").split(","))
    tmp = tempfile.mkdtemp(prefix="memo-bench-")
    results = {}
    try:
        if "small" in only:
            r = results["hit, 100 B result (µs)"] = bench_small_hits(tmp, a.quick)
            print("hit returning a 100 B result, µs per call (median):")
            for k, v in r.items():
                print(f"  {k:32} {v:10.2f}")
            print("  " + ratio_line(r, "memo", "joblib.Memory"))
            print("  " + ratio_line(r, "functools.lru_cache", "memo memory=1024"))
        if "big" in only:
            r = results["hit, 80 MB float64 result (µs)"] = bench_big_hits(tmp, a.quick)
            print("hit returning an 80 MB float64 array, µs (median):")
            for k, v in r.items():
                print(f"  {k:32} {v:10.1f}")
            print("  " + ratio_line(r, "memo", "joblib.Memory mmap_mode='r'"))
        if "arg" in only:
            r, nbytes = bench_big_argument(tmp, a.quick)
            results[f"hit, {nbytes >> 20} MiB float64 argument (µs)"] = r
            print(f"hit whose argument is a {nbytes >> 20} MiB float64 array, µs (median):")
            for k, v in r.items():
                print(f"  {k:40} {v:12.0f}")
            print("  " + ratio_line(r, "memo", "joblib.Memory"))
        if "miss" in only:
            r = results["miss of a trivial body (µs)"] = bench_miss(tmp, a.quick)
            print("memoized miss of a trivial body, µs per call (median):")
            for k, v in r.items():
                print(f"  {k:32} {v:10.2f}")
        if "compress" in only:
            r = results["64 MiB int32 labels, compress=3"] = bench_compressed(tmp, a.quick)
            print("a 64 MiB int32 label array (100 classes) through Memory(compress=3):")
            for k, v in r.items():
                print(f"  {k:32} {v['bytes'] / 2**20:8.1f} MiB on disk, first call "
                      f"{v['first_ms']:8.1f} ms, hit {v['hit_ms']:8.1f} ms")
            m, j = r["memo.Memory compress=3"], r["joblib.Memory compress=3"]
            print(f"  joblib / memo: {j['bytes'] / m['bytes']:.2f}x the bytes, "
                  f"{j['hit_ms'] / m['hit_ms']:.1f}x the hit time, "
                  f"{j['first_ms'] / m['first_ms']:.1f}x the first call")
        if "processes" in only:
            r = results["4 processes sweeping 50 ms inputs"] = bench_processes(tmp, a.quick)
            print(
                f"4 processes (spawn) sweeping the same {r['inputs']} inputs of a 50 ms function: "
                f"{r['wall_s']:.2f} s wall (ideal {r['ideal_s']:.2f} s, "
                f"{r['wall_s'] / r['ideal_s']:.2f}x), {r['computed']} computations"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
