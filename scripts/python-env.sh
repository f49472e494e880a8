#!/usr/bin/env bash
# Builds memo for Python (memo-py) into the virtual environment target/py,
# made here with the packages its tests and benches use; prints the
# environment's python. Run by scripts/test.sh and the Python benches.
#
#   scripts/python-env.sh           # test packages: maturin pytest numpy joblib ipython
#   scripts/python-env.sh --bench   # and the peers the benches compare against
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
packages=(maturin pytest numpy joblib ipython)
if [ "${1:-}" = "--bench" ]; then
    packages+=(diskcache cachier cachebox)
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
# maturin builds into the workspace's target directory, so a rebuild after
# the Rust tests compiles only what changed.
VIRTUAL_ENV="$PWD/$venv" "$venv/bin/maturin" develop --release --quiet \
    --manifest-path memo-py/Cargo.toml >&2
echo "$PWD/$venv/bin/python"
