"""One default store rule for both languages, independent of where a
program is started: $MEMO_DIR; else an existing .memo from the working
directory up to its project root; else the .memo of the project of the
script defining the function; else the per-user cache directory."""

import os

from conftest import run_py

SCRIPT = """
import memo
@memo.memoize
def f(x):
    return x
f(1)
print(memo.Store.default_dir())
print(f.store.dir)
"""


def make_project(root):
    os.makedirs(root / "src")
    (root / "pyproject.toml").write_text("[project]\nname='lab'\n")
    (root / "src" / "lab.py").write_text(SCRIPT)
    return root / "src" / "lab.py"


def run(script, cwd, tmp_path, **env):
    base = {"MEMO_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    base.update(env)
    code = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    return run_py(code, cwd=cwd, env=base).stdout.split("\n")[:2]


def test_a_script_started_from_outside_its_project_uses_the_projects_store(tmp_path):
    script = make_project(tmp_path / "lab")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    default, used = run(script, elsewhere, tmp_path)
    assert used == str(tmp_path / "lab" / ".memo")
    assert default == str(tmp_path / "lab" / ".memo")
    assert not (elsewhere / ".memo").exists()


def test_memo_dir_wins(tmp_path):
    script = make_project(tmp_path / "lab")
    _, used = run(script, tmp_path, tmp_path, MEMO_DIR=str(tmp_path / "mine"))
    assert used == str(tmp_path / "mine")


def test_an_existing_store_of_the_working_directorys_project_is_found(tmp_path):
    script = make_project(tmp_path / "lab")
    other = tmp_path / "other"
    (other / "deep").mkdir(parents=True)
    (other / ".git").mkdir()
    run_py(f"import memo; memo.Store({str(other / '.memo')!r})")
    _, used = run(script, other / "deep", tmp_path)
    assert used == str(other / ".memo")


def test_a_loose_script_uses_the_per_user_cache_not_the_working_directory(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "s.py").write_text(SCRIPT)
    _, used = run(loose / "s.py", loose, tmp_path)
    assert used == str(tmp_path / "xdg" / "memo")
    assert not (loose / ".memo").exists()
