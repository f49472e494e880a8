"""Compressed values from Python: a store's ``compress``, a function's own,
``memo.Memory(compress=...)`` mapped to zstd, arrays kept as views unless a
function asks, and stores read by processes (and the Rust command) that
did not ask for compression."""

import subprocess
import sys

import numpy as np
import pytest

import memo
from memo import Memory


def saved(store):
    s = store.stats()
    return s["raw_bytes"] - s["bytes"]


def labels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 100, n, dtype=np.int32)


def test_a_compressing_store_round_trips_every_kind_of_value(store_dir):
    s = memo.Store(store_dir, compress="zstd")
    values = {
        "text": "a line of text, again and again. " * 2000,
        "bytes": bytes(range(16)) * 5000,
        "records": [{"id": i, "label": f"class-{i % 7}", "score": i % 3} for i in range(5000)],
        "small": [1, 2, 3],
        "noise": np.random.default_rng(1).bytes(300_000),
        "big": b"0123456789abcdef" * (400_000),
    }
    for name, v in values.items():
        s.put(memo.key(name), v)
    for name, v in values.items():
        assert s.get(memo.key(name)) == v, name
    assert saved(s) > 6_000_000
    st = s.stats()
    assert st["compression_ratio"] > 5
    # A store opened without compression reads them, and so does the Rust
    # command (verify decodes every compressed frame).
    other = memo.Store(store_dir)
    for name, v in values.items():
        assert other.get(memo.key(name)) == v, name
    report = other.verify()
    assert report["corrupt"] == 0 and not report["problems"], report


def test_arrays_stay_views_unless_the_function_asks(store_dir):
    s = memo.Store(store_dir, compress=True)
    a = labels(500_000)
    s.put(memo.key("a"), a)
    assert saved(s) == 0, "an array under the store's setting stays raw"
    got = s.get(memo.key("a"))
    assert np.array_equal(got, a) and not got.flags.writeable

    @memo.memoize(store=s, compress=3)
    def packed(n):
        return labels(n)

    @memo.memoize(store=s, compress=False)
    def never(n):
        return "text " * n

    assert np.array_equal(packed(500_000), a)
    assert np.array_equal(packed(500_000), a)  # a hit, decoded
    assert saved(s) > 1_000_000
    before = saved(s)
    assert never(100_000) == "text " * 100_000
    assert saved(s) == before
    info = {f["function"].rsplit(".", 1)[-1]: f for f in s.functions()}
    assert info["packed"]["compression_ratio"] > 2, info


def test_options_are_checked(store_dir):
    for bad in ["gzip", "zstd:99", 23, -1, 1.5]:
        with pytest.raises(ValueError, match="compress"):
            memo.Store(store_dir, compress=bad)
    with pytest.raises(ValueError, match="compress"):
        memo.memoize(lambda x: x, dir=store_dir, compress="lz4")


def test_memory_compress_maps_to_zstd_and_stores_smaller(tmp_path):
    a = labels(2_000_000)

    def make(n):
        return labels(n)

    plain = Memory(str(tmp_path / "plain"), verbose=0).cache(make)
    packed = Memory(str(tmp_path / "packed"), compress=3, verbose=0).cache(make)
    for g in (plain, packed):
        assert np.array_equal(g(2_000_000), a) and np.array_equal(g(2_000_000), a)
    size = lambda d: memo.Store(str(tmp_path / d / "memo")).stats()
    assert size("plain")["raw_bytes"] == size("plain")["bytes"]
    assert size("packed")["bytes"] * 2 < size("plain")["bytes"]
    for c in [True, 9, ("zlib", 3), ("gzip", 1), ("lz4", 5), ("bz2", 9), ("lzma", 3), ("xz", 1), "zlib"]:
        g = Memory(str(tmp_path / "any"), compress=c, verbose=0).cache(make)
        assert np.array_equal(g(1000), labels(1000))
    with pytest.raises(ValueError, match="Non valid compression method"):
        Memory(str(tmp_path), compress=("snappy", 3))
    with pytest.raises(ValueError):
        Memory(str(tmp_path), compress=10)


def test_memory_compress_with_mmap_mode_gives_arrays(tmp_path):
    m = Memory(str(tmp_path), compress=True, mmap_mode="r", verbose=0)
    g = m.cache(lambda n: labels(n))
    g(100_000)
    out = g(100_000)
    assert isinstance(out, np.memmap) and np.array_equal(out, labels(100_000))


def test_a_process_that_did_not_ask_reads_them(store_dir):
    s = memo.Store(store_dir, compress="zstd:5")
    s.put(memo.key("k"), ["row"] * 50_000)
    assert saved(s) > 100_000
    code = (
        "import memo, sys\n"
        f"s = memo.Store({store_dir!r})\n"
        "v = s.get(memo.key('k'))\n"
        "sys.exit(0 if v == ['row'] * 50_000 else 3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
