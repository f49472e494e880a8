"""The function the process-sweep bench runs in 4 spawned processes."""

import os
import time

import memo


@memo.memoize
def step(x):
    with open(os.environ["MEMO_BENCH_LOG"], "a") as f:
        f.write(f"{x}\n")
    time.sleep(0.05)
    return x


def sweep(n):
    return step.map(range(n), threads=1)
