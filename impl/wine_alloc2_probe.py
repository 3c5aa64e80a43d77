"""Whether Wine's ``VirtualAlloc2`` survives an aligned reservation, decided in a child.

Wine 8.0's ``NtAllocateVirtualMemoryEx`` maps an aligned view without looking at the views
Wine itself keeps in its reserved areas: a large reservation on a 4 GiB ``Alignment`` (the
tight strategy's 2 GiB container) lands on one of them, and ntdll aborts the whole process
(``create_view: Assertion 'view->protect & VPROT_SYSTEM' failed``). Small reservations on
the same alignment, and large ones on smaller alignments, work. Which shapes are safe
depends on Wine's version and its address-space layout, not on anything a caller can see,
so the only safe rule is to try the exact shape in a child process first: a child that
comes back with the reservation made means the call is safe in a process laid out like it;
one that dies means the caller must not make it. On Windows nothing is probed.

Run as ``python -m impl.wine_alloc2_probe SIZE ALIGN``, the module is that child.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import warnings

PROBE_TIMEOUT = 120.0
# The child prints this and the base it got; anything else is a refusal or a death.
SURVIVED = "survived"


@functools.cache
def aligned_reserve_survives(size: int, align: int) -> bool:
    """True when a child process made this ``VirtualAlloc2`` reservation and lived."""
    # The child finds arenacheck where this process did: the inherited path (an install,
    # or the folder ``arenacheck windows-python`` puts on PYTHONPATH).
    env = dict(os.environ)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "arenacheck.impl.wine_alloc2_probe", str(size), str(align)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        outcome = f"no answer within {PROBE_TIMEOUT:.0f} s"
    else:
        if done.returncode == 0 and done.stdout.split()[:1] == [SURVIVED]:
            return True
        # Wine's abort can leave exit status 0 behind: only the child's own word counts.
        said = done.stdout.strip() or "nothing"
        outcome = f"it ended with status {done.returncode} and said {said}"
    # Said once per process: Wine's own abort message, written straight to the Unix
    # stderr the child inherited, reaches the terminal and needs this to explain it.
    warnings.warn(
        f"Wine's VirtualAlloc2 did not survive a {size:#x}-byte reservation on a {align:#x} "
        f"alignment in a child process ({outcome}); aligned reservations of that shape use "
        "reserve, release and re-reserve instead",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


def _probe(size: int, align: int) -> int:
    """The child's one call: the backend's own aligned reservation, released again."""
    from arenacheck.impl.win_backend import WindowsBackend
    from arenacheck.impl.win_kernel32 import NativeKernel32

    backend = WindowsBackend(NativeKernel32())
    base = backend.call_aligned_reserve(size, align)
    if base is None:
        print("refused")
        return 1
    backend.release(base, size)
    print(SURVIVED, hex(base))
    return 0


def main(argv: list[str]) -> int:
    size, align = (int(a, 0) for a in argv)
    return _probe(size, align)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
