"""The Rust pipeline example's steps on numpy: load -> standardize -> fit.

Run it twice: the first run computes every step, the second loads them all
(the arrays as read-only views of the stored bytes, no copy). Change
``--degree`` and only the fit runs again.

    python memo-py/examples/pipeline.py [--rows N] [--degree D]
"""

import argparse
import time

import numpy as np

import memo


def said(step):
    print(f"  ran {step}")


@memo.memoize
def load(rows: int, seed: int = 0) -> np.ndarray:
    """Simulated measurements: rows x 20 features and a target column."""
    said("load")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 20))
    y = x @ np.arange(1.0, 21.0) + rng.normal(scale=0.1, size=rows)
    return np.column_stack([x, y])


@memo.memoize
def standardize(data: memo.Lazy) -> np.ndarray:
    """Zero mean and unit variance per column (the raw data passed by
    reference: when this step is stored, the data is never loaded)."""
    said("standardize")
    d = data.get()
    return (d - d.mean(axis=0)) / d.std(axis=0)


@memo.memoize
def fit(data: memo.Lazy, degree: int) -> dict:
    """Least squares of the target on the features raised to 1..degree."""
    said("fit")
    d = data.get()
    x, y = d[:, :-1], d[:, -1]
    design = np.column_stack([x**k for k in range(1, degree + 1)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return {"coef": coef, "rmse": float(np.sqrt(np.mean((design @ coef - y) ** 2)))}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--degree", type=int, default=1)
    a = p.parse_args()
    began = time.perf_counter()
    raw = load.lazy(a.rows)
    clean = standardize.lazy(raw)
    model = fit(clean, a.degree)
    took = time.perf_counter() - began
    print(f"rmse {model['rmse']:.4f} with {len(model['coef'])} coefficients in {took * 1000:.1f} ms")
    print(f"store: {load.store.dir}")


if __name__ == "__main__":
    main()
