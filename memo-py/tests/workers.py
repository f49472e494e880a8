"""Memoized functions the multi-process tests run in child processes
(module level, so they pickle by reference and spawn workers import them).
Each computation appends a line to $MEMO_TEST_LOG."""

import os
import time

import numpy as np

import memo


def log(line: str) -> None:
    with open(os.environ["MEMO_TEST_LOG"], "a") as f:
        f.write(line + "\n")


@memo.memoize
def slow_square(x, delay=0.05):
    log(f"square {x}")
    time.sleep(delay)
    return x * x


@memo.memoize
def big(i, n):
    log(f"big {i}")
    return np.full(n, i, dtype=np.float64)


def sweep(n):
    """One process's sweep of the shared inputs."""
    return slow_square.map(range(n), threads=1)
