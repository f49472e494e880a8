#!/usr/bin/env python3
"""Draws memo-core's module graph: which top-level room imports which, and
the cycles among them (strongly connected components of more than one
room). `python3 scripts/house.py` prints the edges with the files that make
them, then the cycles; exit status 1 if there is a cycle."""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(__file__), "..", "memo-core", "src")
# Rooms: a top-level module (a file `x.rs` or a folder `x/`), and the
# sub-rooms of the runtime and the engine, which may not import each other
# in a circle either.
def room(rel):
    parts = rel[:-3].split("/")
    if parts[0] == "lib":
        return None
    return parts[0]

uses = defaultdict(lambda: defaultdict(set))
# Where the names `lib.rs` re-exports at the root live.
REEXPORTS = {
    "Key": "key", "ParseKeyError": "key", "Store": "store", "StoreBuilder": "store",
    "Durability": "store", "Error": "error", "Result": "error", "Stats": "stats",
    "FunctionStats": "stats", "FunctionInfo": "stats", "Selection": "stats",
    "Transfer": "stats", "VerifyReport": "stats", "Bytes": "mmap", "Array": "array",
    "DataFile": "data_file", "Compression": "compress", "Lazy": "memoize", "Hashable": "memoize",
    "Storable": "memoize", "Policy": "evict", "RemoteMode": "remote",
    "Pod": "?", "Zeroable": "?",
}
pat = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
sup = re.compile(r"\bsuper::([a-z_][a-z0-9_]*)")
for dirpath, _, files in os.walk(ROOT):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, ROOT)
        me = room(rel)
        if me is None:
            continue
        text = open(path).read()
        # Tests may reach anywhere.
        text = re.split(r"#\[cfg\(all\(test|#\[cfg\(test\)\]", text)[0]
        text = "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))
        names = [m.group(1) for m in pat.finditer(text)]
        # Root re-exports: `crate::Key`, `crate::{Key, Store}`.
        for m in re.finditer(r"\bcrate::([A-Z][A-Za-z0-9_]*)", text):
            names.append(REEXPORTS.get(m.group(1), "?"))
        for m in re.finditer(r"\bcrate::\{([^}]*)\}", text):
            for n in re.split(r"[,\s]+", m.group(1)):
                n = n.split("::")[0]
                if n[:1].isupper():
                    names.append(REEXPORTS.get(n, "?"))
                elif n:
                    names.append(n)
        for other in names:
            known = os.path.exists(os.path.join(ROOT, other + ".rs")) or os.path.isdir(
                os.path.join(ROOT, other))
            if known and other not in (me, "__private"):
                uses[me][other].add(rel)

nodes = sorted(set(uses) | {o for d in uses.values() for o in d})
index, low, stack, on, sccs = {}, {}, [], set(), []
def strong(v, counter=[0]):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in uses[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        sccs.append(comp)
sys.setrecursionlimit(10000)
for v in nodes:
    if v not in index:
        strong(v)
edges = sum(len(d) for d in uses.values())
# The floors, lowest first, along the path the data takes (DESIGN.md's
# crate map): a room may import rooms on its own floor or below.
FLOORS = [
    ["key", "error", "sync", "time", "report", "format", "mmap", "dir", "units"],
    ["codec", "compress", "array", "stats", "data_file"],
    ["lock", "segment", "blob", "index", "clock", "evict", "registry"],
    ["remote"],
    ["store"],
    ["memoize"],
]
floor = {r: i for i, rs in enumerate(FLOORS) for r in rs}
upward = [(a, b, f) for a in uses for b in uses[a] for f in uses[a][b]
          if floor.get(a, 99) < floor.get(b, 99)]
if "-v" in sys.argv:
    for a in sorted(uses):
        for b in sorted(uses[a]):
            print(f"{a} -> {b}   ({', '.join(sorted(uses[a][b]))})")
cycles = [sorted(c) for c in sccs if len(c) > 1]
print(f"{len(nodes)} rooms, {edges} imports between rooms, {len(cycles)} circles, "
      f"{len(upward)} files importing upward")
for a, b, f in sorted(upward):
    print(f"upward: {a} (floor {floor.get(a)}) -> {b} (floor {floor.get(b)}) in {f}")
unplaced = [r for r in nodes if r not in floor]
if unplaced:
    print("rooms on no floor:", ", ".join(unplaced))
for c in cycles:
    print("circle:", " <-> ".join(c))
    for a in c:
        for b in c:
            if b in uses[a]:
                print(f"   {a} -> {b}: {', '.join(sorted(uses[a][b]))}")
sys.exit(1 if cycles or upward or unplaced else 0)
