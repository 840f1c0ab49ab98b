"""The `jaxcheck` command: `jaxcheck check` and `jaxcheck demo`.

The benchmark is a developer tool, `tools/bench.py` in the repository.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="jaxcheck", description="Fast, located gradient checks for JAX."
    )
    parser.add_argument(
        "--version", action="version", version=f"jaxcheck {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="check the gradient of a model given by a factory; exit 0 ok, "
        "1 wrong, 2 usage error",
    )
    demo = commands.add_parser(
        "demo",
        help="check the seed examples and a planted bug",
        description="Checks the seed examples and a planted bug, and says why.",
    )
    subparsers = {"check": check, "demo": demo}
    from . import cli_check as _cli_check
    from . import demo as _demo

    _cli_check.add_arguments(check)
    _demo.add_arguments(demo)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # say it with the usage of the command it was given to
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "check":
        return _cli_check.run(args)
    return _demo.run(args)


if __name__ == "__main__":
    sys.exit(main())
