"""The same script with ``from joblib import Memory`` and ``from memo import
Memory``: a three-step numpy pipeline (load -> standardize -> least-squares
fit on 1M x 20 float64) and a sweep of 1,000 small calls, each run first
into an empty cache and then again fully cached, in fresh processes.

    target/py/bin/python memo-py/benches/joblib_pipeline.py [--rows N] [--repeats R]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

SCRIPT = r'''
import sys, time
import numpy as np
from {module} import Memory

memory = Memory(sys.argv[1], verbose=0, mmap_mode={mmap_mode!r})
rows = int(sys.argv[2])

@memory.cache
def load(rows, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 20))
    y = x @ np.arange(1.0, 21.0) + rng.normal(scale=0.1, size=rows)
    return np.column_stack([x, y])

@memory.cache
def standardize(data):
    return (data - data.mean(axis=0)) / data.std(axis=0)

@memory.cache
def fit(data):
    x, y = data[:, :-1], data[:, -1]
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coef

@memory.cache
def small(i):
    return {{"i": i, "sq": i * i, "name": "point"}}

t = time.perf_counter()
coef = fit(standardize(load(rows)))
pipeline = time.perf_counter() - t
t = time.perf_counter()
sweep = [small(i) for i in range(1000)]
sweep_s = time.perf_counter() - t
print(pipeline, sweep_s, float(coef[0]))
'''


def run(module, location, rows, mmap_mode):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(module=module, mmap_mode=mmap_mode), location, str(rows)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    p.add_argument("--mmap-mode", default=None, choices=[None, "r"],
                   help="both tools' mmap_mode (default None: writable copies)")
    a = p.parse_args()
    figures = {}
    for module in ("joblib", "memo"):
        first, cached, sweep_first, sweep_cached = [], [], [], []
        for _ in range(a.repeats):
            loc = tempfile.mkdtemp(prefix=f"bench-{module}-")
            try:
                p1, s1 = run(module, loc, a.rows, a.mmap_mode)
                p2, s2 = run(module, loc, a.rows, a.mmap_mode)
            finally:
                shutil.rmtree(loc, ignore_errors=True)
            first.append(p1)
            cached.append(p2)
            sweep_first.append(s1)
            sweep_cached.append(s2)
        figures[module] = {
            "pipeline first run s": statistics.median(first),
            "pipeline cached rerun s": statistics.median(cached),
            "sweep first run s": statistics.median(sweep_first),
            "sweep cached rerun s": statistics.median(sweep_cached),
        }
    j, m = figures["joblib"], figures["memo"]
    print(f"mmap_mode={a.mmap_mode!r}, {a.rows} rows, median of {a.repeats}")
    print(f"{'':28}{'joblib.Memory':>16}{'memo.Memory':>16}{'ratio':>10}")
    for k in j:
        print(f"{k:28}{j[k] * 1000:14.1f}ms{m[k] * 1000:14.1f}ms{j[k] / m[k]:9.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
