"""The ``arenacheck`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stateful_tests.backends import BACKEND_NAMES, unavailable_reason


def cmd_backends(args: argparse.Namespace) -> int:
    """List every backend and whether this machine can run it; non-zero if a required one cannot."""
    required = [n for n in (args.require or "").split(",") if n]
    unknown = [n for n in required if n not in BACKEND_NAMES]
    if unknown:
        print(f"unknown backend(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    missing = 0
    for name in BACKEND_NAMES:
        reason = unavailable_reason(name)
        mark = "required" if name in required else "optional"
        print(f"{name:16} {mark:9} {'available' if reason is None else 'unavailable: ' + reason}")
        missing += reason is not None and name in required
    return 1 if missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="arenacheck",
        description="Property-based model checking of virtual-memory arena allocators.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    backends = sub.add_parser("backends", help="list the backends this machine can run")
    backends.add_argument(
        "--require", metavar="NAMES", help="comma-separated backends that must be available"
    )
    backends.set_defaults(func=cmd_backends)
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
