"""Shared fixtures of memo's Python tests: store directories, child
processes running Python snippets, and real servers on free loopback
ports. With CI=true a test whose server or package is missing fails;
elsewhere it is skipped with a loud message."""

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

IN_CI = os.environ.get("CI") == "true"


def need(what: str, present: bool):
    """Fails (in CI) or skips loudly when ``what`` is missing."""
    if present:
        return
    message = f"{what} is not installed: this test cannot run"
    if IN_CI:
        pytest.fail(message + " (CI=true)")
    sys.stderr.write(f"\n*** SKIPPED: {message} ***\n")
    pytest.skip(message)


@pytest.fixture
def store_dir(tmp_path):
    """A fresh store directory (not yet created)."""
    return str(tmp_path / "store")


@pytest.fixture(autouse=True)
def _no_ambient_store(monkeypatch, tmp_path):
    """No test reads or writes the user's or the repository's caches."""
    monkeypatch.setenv("MEMO_DIR", str(tmp_path / "default-store"))
    monkeypatch.delenv("MEMO_REMOTE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def run_py(code: str, *, env=None, cwd=None, timeout=120, check=True, args=()):
    """Runs ``code`` in a new Python process; its CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"child failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on a free loopback port, stopped after the test."""
    exe = shutil.which("redis-server")
    need("redis-server", exe is not None)
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}"
    proc.kill()
    proc.wait()
