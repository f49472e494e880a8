"""The remote tier through a real redis-server: a result computed on one
machine (here: one store directory and process) is a hit on another."""

import memo
from conftest import run_py

MACHINE = """
import memo, sys
runs = []
@memo.memoize(store=memo.Store(sys.argv[1], remote=sys.argv[2], remote_secret="team"))
def fit(x):
    runs.append(x)
    return {{"coef": [x, x + 1], "name": "ridge"}}
print(fit(3)["coef"], len(runs), fit.store.stats()["remote_hits"])
"""


def test_a_result_computed_on_one_machine_is_a_hit_on_another(tmp_path, redis_url):
    a = run_py(MACHINE.format(), args=[str(tmp_path / "a"), redis_url]).stdout.split("]")
    b = run_py(MACHINE.format(), args=[str(tmp_path / "b"), redis_url]).stdout.split("]")
    assert a[1].split()[0] == "1"  # computed on a
    assert b[1].split() == ["0", "1"]  # a remote hit on b
    # And b now has it locally.
    c = run_py(MACHINE.format(), args=[str(tmp_path / "b"), redis_url]).stdout.split("]")
    assert c[1].split()[0] == "0"


def test_memo_remote_from_the_environment(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("MEMO_REMOTE", redis_url)
    monkeypatch.setenv("MEMO_REMOTE_SECRET", "s")
    code = """
import memo
@memo.memoize(dir={d!r})
def g(x):
    print("computing")
    return x
g(1)
"""
    assert run_py(code.format(d=str(tmp_path / "one"))).stdout.strip() == "computing"
    assert run_py(code.format(d=str(tmp_path / "two"))).stdout.strip() == ""


def test_a_dead_remote_costs_nothing_but_the_remote(tmp_path):
    s = memo.Store(str(tmp_path / "s"), remote="redis://127.0.0.1:1")
    s.put(memo.key(1), "local")
    assert s.get(memo.key(1)) == "local"


def test_remote_hits_are_installed_locally_by_the_end_of_the_process(tmp_path, redis_url):
    # Installs run in the background; a process that ends right after its
    # hits (its store kept to the end, as a module-level one is) still
    # leaves every value in its local store.
    put = """
import memo, sys
s = memo.Store(sys.argv[1], remote=sys.argv[2])
for i in range(200):
    s.put(memo.key(("v", i)), list(range(i % 7)))
"""
    hit = """
import memo, sys
s = memo.Store(sys.argv[1], remote=sys.argv[2])
for i in range(200):
    assert s.get(memo.key(("v", i))) == list(range(i % 7)), i
print("hit")
"""
    run_py(put, args=[str(tmp_path / "a"), redis_url])
    assert run_py(hit, args=[str(tmp_path / "b"), redis_url]).stdout.strip() == "hit"
    local = memo.Store(str(tmp_path / "b"))
    assert len(local) == 200
    assert all(local.get(memo.key(("v", i))) == list(range(i % 7)) for i in range(200))


def test_a_multiprocessing_child_installs_its_remote_hits_before_it_ends(tmp_path):
    # A multiprocessing child ends with os._exit, which skips the exit
    # hook: the package installs what it left queued as the child finishes.
    # (A shared directory: its hits are fast enough to leave a queue.)
    code = """
import memo, multiprocessing, sys
a = memo.Store(sys.argv[1], remote=sys.argv[2])
for i in range(3000):
    a.put(memo.key(("v", i)), i)

def child():
    b = memo.Store(sys.argv[3], remote=sys.argv[2])
    for i in range(3000):
        assert b.get(memo.key(("v", i))) == i, i
    global keep
    keep = b  # never dropped: only the child's end installs what is queued

p = multiprocessing.get_context("fork").Process(target=child)
p.start()
p.join()
assert p.exitcode == 0, p.exitcode
local = memo.Store(sys.argv[3])
print(len(local))
"""
    args = [str(tmp_path / "a"), f"file://{tmp_path / 'shared'}", str(tmp_path / "b")]
    assert run_py(code, args=args).stdout.strip() == "3000"
