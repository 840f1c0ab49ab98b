"""The `jaxcheck` command: `jaxcheck check`, `jaxcheck demo` and `jaxcheck bench`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxcheck", description="Fast, located gradient checks for JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="check the gradient of a model given by a factory; exit 0 ok, "
        "1 wrong, 2 usage error",
    )
    demo = commands.add_parser("demo", help="check the seed examples and a planted bug")
    bench = commands.add_parser(
        "bench", help="time check_grad against a per-parameter loop and other checkers"
    )
    from . import _bench, _cli_check, _demo

    _cli_check.add_arguments(check)
    _demo.add_arguments(demo)
    _bench.add_arguments(bench)
    args = parser.parse_args(argv)
    if args.command == "check":
        return _cli_check.run(args)
    if args.command == "demo":
        return _demo.run(args)
    return _bench.run(args)


if __name__ == "__main__":
    sys.exit(main())
