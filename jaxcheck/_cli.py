"""The `jaxcheck` command: `jaxcheck demo` and `jaxcheck bench`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxcheck", description="Fast, located gradient checks for JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="check the seed examples and a planted bug")
    from . import _demo

    _demo.add_arguments(demo)
    args = parser.parse_args(argv)
    return _demo.run(args)


if __name__ == "__main__":
    sys.exit(main())
