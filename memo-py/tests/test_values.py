"""Values: plain data in memo's own encoding, numpy arrays back as
read-only views of the mapped file at any depth, other objects pickled
(protocol 5, buffers out of band) and loaded only from a store trusted
with code."""

import datetime
import decimal
import fractions
import os
import pathlib
import uuid
import warnings

import numpy as np
import pytest

import memo


def roundtrip(store_dir, value):
    s = memo.Store(store_dir)
    k = memo.key(("roundtrip", repr(type(value))))
    s.put(k, value)
    return memo.Store(store_dir).get(k)


PLAIN = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, -(2**300), 1.5, float("inf"), -0.0,
    1 + 2j, "", "héllo ✓", b"", b"\x00\xff", bytearray(b"ab"), [], (), {}, set(), frozenset(),
    [1, [2, (3, {"a": {4}})]], {"k": (1, 2), 3: None, (1, 2): frozenset({"x"})},
    datetime.datetime(2026, 12, 7, 10, 30, 1, 5), datetime.date(2026, 1, 2),
    datetime.time(3, 4, 5), datetime.timedelta(days=-1, seconds=5),
    datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    decimal.Decimal("3.140"), fractions.Fraction(-7, 3), uuid.UUID(int=12345),
    pathlib.PurePosixPath("/x/y"), pathlib.Path("rel/p"),
]


@pytest.mark.parametrize("value", PLAIN, ids=lambda v: type(v).__name__)
def test_plain_values_round_trip_exactly(store_dir, value):
    got = roundtrip(store_dir, value)
    assert got == value and type(got) is type(value)


def test_plain_values_never_unpickle(store_dir):
    # A store that is not trusted with pickles still serves plain data.
    os.makedirs(store_dir)
    os.chmod(store_dir, 0o777)
    s = memo.Store(store_dir)
    s.put(memo.key("p"), {"a": [1, 2.5, "x"], "arr": np.arange(3)})
    got = s.get(memo.key("p"))
    assert got["a"] == [1, 2.5, "x"]
    assert list(got["arr"]) == [0, 1, 2]


DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64", "complex64", "complex128", "datetime64[ns]",
          "timedelta64[s]", "S5", "U3", ">f8", ">i4"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nbytes", [0, 100, 64 * 1024 - 8, 64 * 1024 + 8, 2 * 1024 * 1024 + 24])
def test_arrays_of_every_dtype_and_size_come_back_as_read_only_views(store_dir, dtype, nbytes):
    dt = np.dtype(dtype)
    n = nbytes // dt.itemsize
    rng = np.random.default_rng(n)
    a = np.frombuffer(rng.bytes(n * dt.itemsize), dtype=dt).copy()
    if dt.kind == "f" or dt.kind == "c":
        a[np.isnan(a)] = 0
    got = roundtrip(store_dir, a)
    assert got.dtype == a.dtype and got.shape == a.shape
    assert got.tobytes() == a.tobytes()
    assert not got.flags.writeable
    with pytest.raises(ValueError):
        if got.size:
            got[0] = got[0]
        else:
            raise ValueError("empty")


def test_arrays_nested_in_containers_and_non_contiguous_arrays(store_dir):
    base = np.arange(100.0).reshape(10, 10)
    value = {"w": base, "parts": [base[:, ::3], (np.int32(7), np.float32(2.5))], "t": base.T}
    got = roundtrip(store_dir, value)
    assert np.array_equal(got["w"], base) and not got["w"].flags.writeable
    assert np.array_equal(got["parts"][0], base[:, ::3])
    assert np.array_equal(got["t"], base.T)
    assert got["parts"][1] == (np.int32(7), np.float32(2.5))
    assert type(got["parts"][1][0]) is np.int32


def test_a_large_array_hit_views_the_mapped_file(store_dir):
    a = np.random.default_rng(0).random(10_000_000)  # 80 MB
    got = roundtrip(store_dir, a)
    assert np.array_equal(got, a)
    # A view: its memory belongs to memo's mapping, not to a new array.
    assert got.base is not None and not got.flags.owndata


class Model:
    def __init__(self, coef, name):
        self.coef, self.name = coef, name


def test_objects_are_pickled_with_their_arrays_out_of_band(store_dir):
    m = Model(np.arange(1_000_000, dtype=np.float64), "ridge")
    got = roundtrip(store_dir, m)
    assert isinstance(got, Model) and got.name == "ridge"
    assert np.array_equal(got.coef, m.coef)
    # Loaded from the stored bytes without a copy: a read-only view.
    assert not got.coef.flags.writeable and not got.coef.flags.owndata


def test_pickle_false_refuses_objects(store_dir):
    s = memo.Store(store_dir, pickle=False)
    with pytest.raises(memo.MemoError, match="pickle=False"):
        s.put(memo.key("m"), Model(1, "x"))
    s.put(memo.key("ok"), [1, 2])
    assert s.get(memo.key("ok")) == [1, 2]


def test_pickles_are_not_loaded_from_a_store_others_can_write(store_dir):
    calls = []

    def make():
        calls.append(1)
        return Model(3, "m")

    os.makedirs(store_dir)
    s = memo.Store(store_dir)
    k = memo.key("model")
    assert s.get_or_compute(k, make).coef == 3
    assert s.get_or_compute(k, make).coef == 3
    assert len(calls) == 1
    os.chmod(store_dir, 0o777)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        shared = memo.Store(store_dir)
        assert shared.get(k) is None
        assert shared.get(k, "missing") == "missing"
    assert any("can be written by other users" in str(x.message) for x in w)


def test_a_pickle_from_a_remote_without_secret_is_not_loaded(store_dir, tmp_path):
    remote = f"file://{tmp_path / 'remote'}"
    s = memo.Store(store_dir, remote=remote)
    k = memo.key("m")
    s.put(k, Model(1, "a"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert s.get(k) is None
    assert any("MEMO_REMOTE_SECRET" in str(x.message) for x in w)
    signed = memo.Store(str(tmp_path / "signed"), remote=f"file://{tmp_path / 'r2'}",
                        remote_secret="s3cret")
    signed.put(k, Model(2, "b"))
    assert signed.get(k).coef == 2


def test_damaged_bytes_are_a_miss_not_a_crash(store_dir):
    calls = []

    @memo.memoize(dir=store_dir)
    def f(x):
        calls.append(x)
        return {"x": np.arange(x)}

    f(10)
    # Flip bytes inside every record: the checksum makes it a miss.
    damaged = 0
    for root, _, names in os.walk(store_dir):
        if os.path.basename(root) not in ("seg", "blob"):
            continue
        for n in names:
            p = os.path.join(root, n)
            data = bytearray(open(p, "rb").read())
            for i in range(200, len(data), 97):
                data[i] ^= 0xFF
                damaged += 1
            open(p, "wb").write(data)
    assert damaged > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert list(f(10)["x"]) == list(range(10))
    assert calls == [10, 10]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a store to another user")
def test_pickles_are_not_loaded_from_another_users_store(store_dir):
    s = memo.Store(store_dir)
    k = memo.key("theirs")
    s.put(k, Model(5, "m"))
    s.put(memo.key("plain"), [1, 2])
    for root, dirs, files in os.walk(store_dir):
        for n in dirs + files:
            os.chown(os.path.join(root, n), 65534, 65534)
    os.chown(store_dir, 65534, 65534)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        theirs = memo.Store(store_dir)
        assert theirs.get(k) is None
        assert theirs.get(memo.key("plain")) == [1, 2]  # plain data still loads
    assert any("belongs to user 65534" in str(x.message) for x in w)
