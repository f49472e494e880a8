"""The ``memo`` command of the Python package: the same program as the Rust
binary (``memo-cli``), run in this process."""

import sys

from . import _memo


def main() -> None:
    """Runs ``memo`` with this process's arguments and exits with its status."""
    sys.exit(_memo.cli(["memo", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
