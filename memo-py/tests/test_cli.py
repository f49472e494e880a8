"""The `memo` command installed with the package is the same program as the
Rust binary: it lists Python functions as module.qualname."""

import json
import os
import subprocess
import sys

import memo


def memo_cmd(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "memo")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "memo._cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


def test_the_command_lists_python_functions(store_dir):
    @memo.memoize(dir=store_dir)
    def fit(x):
        return x

    fit(1)
    fit(1)
    p = memo_cmd("functions", "--json", "--dir", store_dir)
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(p.stdout)
    assert row["function"] == "test_cli.test_the_command_lists_python_functions.<locals>.fit"
    assert row["hits"] == 1 and row["entries"] == 1
    p = memo_cmd("verify", "--dir", store_dir)
    assert p.returncode == 0 and "no damage" in p.stdout


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    p = memo_cmd("stats", "--dir", str(tmp_path / "nope"))
    assert p.returncode == 2 and "nope" in p.stderr
    p = memo_cmd("--version")
    assert p.returncode == 0 and "memo" in p.stdout
