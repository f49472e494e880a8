#!/usr/bin/env python3
"""Renders the README's comparison chart (docs/benchmarks.svg) from the
benches' JSON results: memo against the stores and memoizers a user would
otherwise pick, on the same workloads.

Sources, all under target/:
- criterion/<group>/<bench>/new/{benchmark,estimates}.json, written by
  `cargo bench -p memo-benches --bench store` and `--bench memoize`;
- memo-bench/bulk.json, written by `cargo bench -p memo-benches --bench bulk`;
- memo-bench/python.json, written by `python3 benches/peers.py` (joblib,
  diskcache, functools.lru_cache).

    cargo bench -p memo-benches --bench store -- 'hit_100B|put_100B'
    cargo bench -p memo-benches --bench memoize -- 'memoize_hit_small|memoize_miss_u64'
    cargo bench -p memo-benches --bench bulk
    python3 benches/peers.py
    python3 benches/chart.py            # writes docs/benchmarks.svg

Standard library only. A row whose result is missing is left out and named
on stderr; the chart says which results it was drawn from.
"""

import glob
import json
import math
import os
import sys
from datetime import date
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(HERE, "..", "target")
OUT = os.path.join(HERE, "..", "docs", "benchmarks.svg")

# (panel title, rows of (label, source, group, name)); source "criterion",
# "bulk" or "python". The first rows of a panel are memo's.
PANELS = [
    (
        "memoized hit, small argument and result",
        [
            ("memo #[memoize]", "criterion", "memoize_hit_small", "memo #[memoize] hit"),
            ("memo #[memoize(memory = 4096)]", "criterion", "memoize_hit_small", "memo #[memoize(memory = 4096)] hit"),
            ("cached #[cached] (Rust, in memory only)", "criterion", "memoize_hit_small", "cached #[cached] hit (in memory, not persistent)"),
            ("functools.lru_cache (in memory only)", "python", "memoize_hit_small", "functools.lru_cache hit (in memory, not persistent)"),
            ("diskcache memoize", "python", "memoize_hit_small", "diskcache memoize hit"),
            ("joblib Memory", "python", "memoize_hit_small", "joblib Memory hit"),
        ],
    ),
    (
        "memoized hit returning 8 MiB of f64",
        [
            ("memo, Array<f64> result", "bulk", "hit_8MiB", "memo #[memoize] hit, Array<f64>"),
            ("memo, Vec<f64> result", "bulk", "hit_8MiB", "memo #[memoize] hit, Vec<f64>"),
            ("cached #[cached] (Rust, in memory only)", "bulk", "hit_8MiB", "cached #[cached] hit, Vec<f64> (in memory)"),
            ("joblib Memory, mmap_mode='r'", "python", "hit_8MiB", "joblib Memory hit, mmap_mode='r'"),
            ("diskcache memoize (numpy)", "python", "hit_8MiB", "diskcache memoize hit (numpy)"),
            ("joblib Memory (numpy)", "python", "hit_8MiB", "joblib Memory hit (numpy)"),
        ],
    ),
    (
        "memoized miss, trivial body (computed and stored)",
        [
            ("memo #[memoize] (ext4)", "criterion", "memoize_miss_u64", "ext4: memoized miss"),
            ("diskcache memoize", "python", "memoize_miss_u64", "diskcache memoize miss"),
            ("joblib Memory", "python", "memoize_miss_u64", "joblib Memory miss"),
        ],
    ),
    (
        "store hit, 100 B value, 100k keys",
        [
            ("memo get_bytes", "criterion", "hit_100B", "memo get_bytes"),
            ("LMDB (heed) get", "criterion", "hit_100B", "lmdb (heed) get"),
            ("cached RedbCache get", "criterion", "hit_100B", "cached RedbCache get"),
            ("diskcache get", "python", "hit_100B", "diskcache get"),
            ("cacache read_sync", "criterion", "hit_100B", "cacache read_sync"),
        ],
    ),
    (
        "store put, 100 B value (not synced)",
        [
            ("memo put_bytes", "criterion", "put_100B", "memo put_bytes (Flush)"),
            ("LMDB (heed) put, NO_SYNC", "criterion", "put_100B", "lmdb (heed) put, NO_SYNC, txn each"),
            ("cached RedbCache set", "criterion", "put_100B", "cached RedbCache set (not durable)"),
            ("diskcache set", "python", "put_100B", "diskcache set"),
            ("cacache write_sync", "criterion", "put_100B", "cacache write_sync"),
        ],
    ),
]


def criterion_results():
    """{(group, name): median ns} from criterion's last run of each bench."""
    out = {}
    pattern = os.path.join(TARGET, "criterion", "*", "*", "new", "benchmark.json")
    for path in glob.glob(pattern):
        with open(path) as f:
            bench = json.load(f)
        with open(os.path.join(os.path.dirname(path), "estimates.json")) as f:
            est = json.load(f)
        out[(bench["group_id"], bench["function_id"])] = est["median"]["point_estimate"]
    return out


def json_results(name):
    path = os.path.join(TARGET, "memo-bench", f"{name}.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    if "groups" in data:
        return {(g, n): ns for g, rows in data["groups"].items() for n, ns in rows.items()}
    return {(data["group"], r["name"]): r["ns"] for r in data["results"]}


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def render(panels, lo, hi):
    width, label_w, bar_w = 900, 300, 470
    row_h, gap, title_h = 20, 18, 22
    height = 70 + sum(title_h + len(rows) * row_h + gap for _, rows in panels) + 20
    lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))

    def x(ns):
        return label_w + bar_w * (math.log10(ns) - lo_e) / (hi_e - lo_e)

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">memo against what a user would '
        "otherwise pick: time per operation (log scale, shorter is better)</text>",
        f'<text x="10" y="40" fill="#555">2-core machine, each panel\'s rows from one run of '
        f"benches/ (criterion medians; Python peers by benches/peers.py); drawn {date.today()}</text>",
    ]
    y = 60
    for e in range(lo_e, hi_e + 1):
        gx = x(10**e)
        svg.append(f'<line x1="{gx:.1f}" y1="{y}" x2="{gx:.1f}" y2="{height - 20}" stroke="#ddd"/>')
        svg.append(f'<text x="{gx:.1f}" y="{y - 4}" text-anchor="middle" fill="#555">{human(10**e)}</text>')
    y += 6
    for title, rows in panels:
        svg.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(title)}</text>')
        y += title_h
        for label, ns in rows:
            memo = label.startswith("memo")
            colour = "#d9480f" if memo else "#7b8794"
            weight = ' font-weight="bold"' if memo else ""
            svg.append(
                f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end"{weight}>{escape(label)}</text>'
            )
            w = max(x(ns) - label_w, 1)
            svg.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"/>')
            svg.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{human(ns)}</text>')
            y += row_h
        y += gap
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    sources = {
        "criterion": criterion_results(),
        "bulk": json_results("bulk"),
        "python": json_results("python"),
    }
    panels, missing = [], []
    for title, rows in PANELS:
        found = []
        for label, source, group, name in rows:
            ns = sources[source].get((group, name))
            if ns is None:
                missing.append(f"{source}: {group}/{name}")
            else:
                found.append((label, ns))
        if found:
            panels.append((title, found))
    for m in missing:
        print(f"chart.py: no result for {m} (left out)", file=sys.stderr)
    if not panels:
        sys.exit("chart.py: no results at all: run the benches first (see the module docs)")
    values = [ns for _, rows in panels for _, ns in rows]
    with open(OUT, "w") as f:
        f.write(render(panels, min(values), max(values)))
    print(f"written: {os.path.normpath(OUT)} ({len(values)} bars, {len(missing)} missing)")


if __name__ == "__main__":
    main()
