"""Keys: canonical and type-tagged, equal across processes and hash seeds,
one key for the positional, keyword and default-filled forms of a call."""

import dataclasses
import datetime
import decimal
import enum
import fractions
import pathlib
import uuid
from collections import namedtuple

import numpy as np
import pytest

import memo
from conftest import run_py

# Test vector shared with Rust (memo-core/src/key.rs,
# `a_python_and_a_rust_value_share_a_key`): Key::of(&7_i64).
KEY_OF_SEVEN_I64 = "758c98c155fbde19f54b262a6f55b6779d7fdde4e838a000b5139b1cd9b64923"


def test_scalars_of_different_types_differ():
    keys = [memo.key(v) for v in (1, 1.0, True, "1", b"1", None, 1 + 0j, (1,), [1])]
    assert len(set(keys)) == len(keys)


def test_negative_zero_and_nan_payloads_are_values():
    assert memo.key(0.0) != memo.key(-0.0)
    assert memo.key(float("nan")) == memo.key(float("nan"))


def test_dict_and_set_order_do_not_matter():
    a = {"x": 1, "y": [1, 2], "z": {3, 4}}
    b = {"z": {4, 3}, "y": [1, 2], "x": 1}
    assert memo.key(a) == memo.key(b)
    assert memo.key({1, 2, 3}) == memo.key({3, 2, 1})
    assert memo.key(frozenset({1})) != memo.key({1})
    assert memo.key([1, 2]) != memo.key([2, 1])


def test_big_integers():
    assert memo.key(2**64) != memo.key(2**64 + 1)
    assert memo.key(2**200) == memo.key(2**200)
    assert memo.key(-(2**200)) != memo.key(2**200)


def test_standard_types_by_value():
    for make in (
        lambda: datetime.datetime(2026, 12, 7, 10, 0),
        lambda: datetime.date(2026, 12, 7),
        lambda: datetime.timedelta(hours=3),
        lambda: decimal.Decimal("1.10"),
        lambda: fractions.Fraction(3, 4),
        lambda: uuid.UUID(int=7),
        lambda: pathlib.PurePosixPath("/a/b"),
    ):
        assert memo.key(make()) == memo.key(make())
    assert memo.key(decimal.Decimal("1.1")) != memo.key(decimal.Decimal("1.10"))
    assert memo.key(pathlib.PurePosixPath("/a")) != memo.key("/a")


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float


Pair = namedtuple("Pair", "a b")


class Keyed:
    def __init__(self, v, noise):
        self.v, self.noise = v, noise

    def __memo_key__(self):
        return self.v


def test_enums_dataclasses_namedtuples_and_memo_key():
    assert memo.key(Color.RED) != memo.key(Color.BLUE)
    assert memo.key(Color.RED) != memo.key(1)
    assert memo.key(Point(1.0, 2.0)) == memo.key(Point(1.0, 2.0))
    assert memo.key(Point(1.0, 2.0)) != memo.key(Point(2.0, 1.0))
    assert memo.key(Pair(1, 2)) != memo.key((1, 2))
    assert memo.key(Keyed(3, object())) == memo.key(Keyed(3, object()))


def test_numpy_arrays_by_dtype_shape_and_contents():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert memo.key(a) == memo.key(a.copy())
    assert memo.key(a) != memo.key(a.astype(np.float32))
    assert memo.key(a) != memo.key(a.reshape(4, 3))
    b = a.copy()
    b[2, 3] += 1
    assert memo.key(a) != memo.key(b)
    # Layout does not matter: Fortran order, a strided view, big-endian.
    assert memo.key(a) == memo.key(np.asfortranarray(a))
    wide = np.arange(24, dtype=np.float64).reshape(3, 8)
    assert memo.key(wide[:, ::2]) == memo.key(np.ascontiguousarray(wide[:, ::2]))
    assert memo.key(a) == memo.key(a.astype(">f8"))
    assert memo.key(np.float32(1.0)) != memo.key(1.0)


def test_a_large_array_is_hashed_in_place():
    big = np.random.default_rng(1).random(3_000_000)
    k = memo.key(big)
    assert k == memo.key(big.copy())
    big[-1] += 1
    assert k != memo.key(big)


def test_a_key_is_the_same_in_rust():
    assert memo.key(7) == KEY_OF_SEVEN_I64


def test_keys_do_not_depend_on_the_hash_seed():
    code = """
        import memo
        print(memo.key({"a": {1, 2, "x"}, "b": frozenset({"p", "q"}), 3: [1.5, None]}))
    """
    seen = {run_py(code, env={"PYTHONHASHSEED": str(s)}).stdout for s in (0, 1, 12345)}
    assert len(seen) == 1


def test_positional_keyword_and_default_forms_are_one_key(store_dir):
    @memo.memoize(dir=store_dir)
    def f(x, y=2, *, z=3):
        return x + y + z

    k = f.key(1)
    assert k == f.key(1, 2) == f.key(x=1) == f.key(1, y=2, z=3) == f.key(y=2, x=1)
    assert k != f.key(1, 3)
    assert len(k) == 64 and all(c in "0123456789abcdef" for c in k)


def test_ignored_arguments_are_left_out(store_dir):
    calls = []

    @memo.memoize(dir=store_dir, ignore=["verbose"])
    def f(x, verbose=False):
        calls.append(x)
        return x

    f(1, verbose=True)
    f(1, verbose=False)
    assert calls == [1]
    with pytest.raises(ValueError, match="nope"):
        memo.memoize(dir=store_dir, ignore=["nope"])(lambda x: x)


def test_an_unhashable_argument_is_named():
    @memo.memoize
    def f(data, n):
        return n

    import threading

    with pytest.raises(memo.UnhashableArgument, match="argument `data` of .*f.*lock"):
        f(threading.Lock(), 1)
    with pytest.raises(TypeError):
        f(threading.Lock(), 1)


def test_a_container_holding_itself_is_refused():
    x = []
    x.append(x)
    with pytest.raises(memo.UnhashableArgument, match="nested"):
        memo.key(x)


def test_wrong_arguments_raise_the_functions_own_error():
    @memo.memoize
    def f(x):
        return x

    with pytest.raises(TypeError, match="argument"):
        f(1, 2)
