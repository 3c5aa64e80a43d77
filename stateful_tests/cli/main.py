"""The ``arenacheck`` command: backends, replay, campaign, zoo, bench, windows-python."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from arenacheck.backends.registry import BACKEND_NAMES, unavailable_reason


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


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run a regression file or trace step by step; 1 at a divergence, 0 if none."""
    from arenacheck.record.replay import IncompatibleBackend, load_program, replay_program

    program = load_program(args.file)
    backend = args.backend or program["found_on"]
    config = ", ".join(f"{k} {v}" for k, v in program["machine"].items() if k != "machine")
    print(f"replaying {args.file}: {program['machine']['machine']} ({config}) on {backend}")
    print(f"recorded failure: {program['error']}")
    try:
        replay_program(program, backend, impl=args.arena_impl, out=sys.stdout)
    except IncompatibleBackend as e:
        print(f"cannot replay on {backend}: {e}", file=sys.stderr)
        return 2
    except Exception:
        return 1
    return 0


def cmd_campaign(args: argparse.Namespace) -> int:
    from arenacheck.cli.campaign import run_campaign
    from arenacheck.harness.profiles import register_profiles

    reason = unavailable_reason(args.backend)
    if reason is not None:
        print(f"backend {args.backend} unavailable: {reason}", file=sys.stderr)
        return 2
    register_profiles()
    return run_campaign(args.backend, args.minutes, args.jobs, Path(args.failures))


def cmd_zoo(args: argparse.Namespace) -> int:
    from arenacheck.faults.zoo_runner import run_zoo

    return run_zoo(jobs=args.jobs)


def cmd_bench(args: argparse.Namespace) -> int:
    from arenacheck.cli.bench import run_bench

    return run_bench(quick=args.quick)


def _reader_went_away(error: OSError) -> bool:
    """Whether ``error`` is stdout's pipe having lost its reader."""
    if isinstance(error, BrokenPipeError):
        return True
    import errno

    if sys.platform != "win32" or error.errno != errno.EINVAL:
        return False
    # Windows' C runtime reports a write to a pipe whose reader closed it (ERROR_NO_DATA) as
    # EINVAL, which other faults raise too; an empty write past the runtime asks the pipe.
    import _winapi
    import msvcrt

    try:
        _winapi.WriteFile(msvcrt.get_osfhandle(sys.stdout.fileno()), b"")
    except BrokenPipeError:
        return True
    except OSError:
        return False
    return False


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

    replay = sub.add_parser("replay", help="re-run a regression file or trace step by step")
    replay.add_argument("file", help="failures/<machine>-<hash>.py or .json")
    replay.add_argument(
        "--backend", choices=BACKEND_NAMES, help="default: where the failure was found"
    )
    replay.add_argument(
        "--arena-impl", metavar="MODULE:FACTORY", help="replay against another implementation"
    )
    replay.set_defaults(func=cmd_replay)

    campaign = sub.add_parser("campaign", help="run every machine of a backend for minutes")
    campaign.add_argument("--backend", required=True, choices=BACKEND_NAMES)
    campaign.add_argument("--minutes", type=float, required=True)
    campaign.add_argument("-j", "--jobs", type=int, default=1, help="worker processes")
    campaign.add_argument("--failures", default="failures", help="where regression files go")
    campaign.set_defaults(func=cmd_campaign)

    zoo = sub.add_parser("zoo", help="run ArenaMachine against every fault of the bug zoo")
    zoo.add_argument("-j", "--jobs", type=int, default=2, help="worker processes")
    zoo.set_defaults(func=cmd_zoo)

    bench = sub.add_parser("bench", help="measure the harness and the arena: five figures")
    bench.add_argument("--quick", action="store_true", help="a reduced run, under two minutes")
    bench.set_defaults(func=cmd_bench)

    windows = sub.add_parser(
        "windows-python",
        help="run Windows CPython under wine64: arenacheck windows-python -m pytest -n auto",
        add_help=False,
    )
    windows.set_defaults(func=None)

    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["windows-python"]:
        # Everything after the command is the interpreter's: argparse would take -m for ours.
        from arenacheck.cli.windows_python import main as windows_python

        return windows_python(arguments[1:])
    args = parser.parse_args(arguments)
    try:
        status: int = args.func(args)
    except OSError as error:
        if not _reader_went_away(error):
            raise
        # The reader went away (``arenacheck backends | head``): nothing more to say, and
        # nothing to say it to; point stdout at /dev/null so the exit flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
