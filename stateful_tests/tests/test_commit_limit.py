"""The seed's out-of-memory bug: ``system`` against ``reserve-commit`` under a commit limit.

Before the reserve + commit fix, each fixed-size arena obtained its whole block already
committed, so on Windows a machine with little commit to spare could not create even one.
Three contrasts, one per way of imposing a commit limit: the emulated kernel's own limit,
Linux's RLIMIT_DATA (private writable memory counts, PROT_NONE reservations do not), and a
Windows Job object's per-process memory limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from arenacheck.backends.standin import EmulatedKernel32
from arenacheck.harness.runner import run_machine
from arenacheck.impl.arena import Arena, system_arena
from arenacheck.impl.errors import OSCallFailed
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.impl.win_kernel32 import ntdll_wine_version
from arenacheck.machines.arena import machine_for
from arenacheck.machines.oracle import Divergence
from arenacheck.model.geometry import GIB, Geometry
from hypothesis import settings

from stateful_tests.tests.children import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
ARENAS = 100
ERROR_COMMITMENT_LIMIT = 1455
ENOMEM = 12


def test_emulated_commit_limit_system_fails_reserve_commit_fits() -> None:
    k32 = EmulatedKernel32(commit_limit=1 * GIB)
    backend = WindowsBackend(k32, "win32-emulated")
    g = Geometry.oxc(backend.page, backend.granularity)
    try:
        with pytest.raises(OSCallFailed) as caught:
            system_arena(backend, g)
        assert caught.value.code == ERROR_COMMITMENT_LIMIT
        assert k32.model.allocations == {}, "a failed creation left memory reserved"
        arenas = [Arena.new(backend, g) for _ in range(ARENAS)]
        assert k32.model.committed_bytes == ARENAS * g.first_commit < 1 * GIB
        for a in arenas:
            a.free()
    finally:
        k32.close()


def test_harness_finds_and_minimises_the_seed_bug(tmp_path: Path) -> None:
    machine = machine_for(
        "win32-emulated", "oxc", impl="arenacheck.impl.arena:system_arena", commit_limit=1 * GIB
    )
    budget = settings(settings.default, database=None, print_blob=False)
    with pytest.raises(Divergence) as caught:
        run_machine(
            machine, backend_name="win32-emulated", run_settings=budget, write_failures_to=tmp_path
        )
    assert caught.value.check == "creation_failed", caught.value
    assert "although the OS had room for the first commit" in str(caught.value)
    (trace,) = tmp_path.glob("*.json")
    steps = json.loads(trace.read_text())["steps"]
    assert [s["rule"] for s in steps] == ["new_arena"], steps


# The contrast itself, the same under every limit: one system arena, then reserve-commit ones.
CONTRAST = """
g = Geometry.oxc(backend.page, backend.granularity)
result = {}
try:
    system_arena(backend, g)
    result["system"] = "created"
except OSCallFailed as e:
    result["system"] = e.code
arenas = []
try:
    for _ in range(%d):
        arenas.append(Arena.new(backend, g))
except OSCallFailed as e:
    result["error"] = e.code
result["reserve_commit"] = len(arenas)
print(json.dumps(result))
"""

LINUX_CHILD = (
    """
import json, resource
from arenacheck.impl.arena import Arena, system_arena
from arenacheck.impl.errors import OSCallFailed
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.model.geometry import GIB, Geometry

soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
resource.setrlimit(resource.RLIMIT_DATA, (1 * GIB, hard))
backend = PosixBackend()
"""
    + CONTRAST
)


@pytest.mark.linux_only("RLIMIT_DATA, which limits private writable memory on Linux 4.7+")
def test_linux_rlimit_data_system_fails_reserve_commit_fits() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LINUX_CHILD % ARENAS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got == {"system": ENOMEM, "reserve_commit": ARENAS}, got


WINDOWS_CHILD = (
    """
import ctypes, json
from ctypes import wintypes as W
from arenacheck.impl.arena import Arena, system_arena
from arenacheck.impl.errors import OSCallFailed
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.model.geometry import GIB, Geometry

class IO(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("r", "w", "o", "rb", "wb", "ob")]

class BASIC(ctypes.Structure):
    _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64),
                ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", W.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", W.DWORD),
                ("Affinity", ctypes.c_size_t), ("PriorityClass", W.DWORD),
                ("SchedulingClass", W.DWORD)]

class EXTENDED(ctypes.Structure):
    _fields_ = [("Basic", BASIC), ("Io", IO), ("ProcessMemoryLimit", ctypes.c_size_t),
                ("JobMemoryLimit", ctypes.c_size_t), ("PeakProcessMemoryUsed", ctypes.c_size_t),
                ("PeakJobMemoryUsed", ctypes.c_size_t)]

assert ctypes.sizeof(EXTENDED) == 144
k32 = ctypes.WinDLL("kernel32", use_last_error=True)
k32.CreateJobObjectW.argtypes = [ctypes.c_void_p, W.LPCWSTR]
k32.CreateJobObjectW.restype = W.HANDLE
k32.SetInformationJobObject.argtypes = [W.HANDLE, ctypes.c_int, ctypes.c_void_p, W.DWORD]
k32.SetInformationJobObject.restype = W.BOOL
k32.GetCurrentProcess.restype = W.HANDLE
k32.AssignProcessToJobObject.argtypes = [W.HANDLE, W.HANDLE]
k32.AssignProcessToJobObject.restype = W.BOOL
job = k32.CreateJobObjectW(None, None)
info = EXTENDED()
info.Basic.LimitFlags = 0x100  # JOB_OBJECT_LIMIT_PROCESS_MEMORY
info.ProcessMemoryLimit = 1 * GIB + 256 * 2**20  # the interpreter's own commit included
ok = k32.SetInformationJobObject(job, 9, ctypes.byref(info), ctypes.sizeof(info))
assert ok, ctypes.get_last_error()
assert k32.AssignProcessToJobObject(job, k32.GetCurrentProcess()), ctypes.get_last_error()
backend = WindowsBackend()
"""
    + CONTRAST
)


WINE = ntdll_wine_version()


@pytest.mark.skipif(sys.platform != "win32", reason="Job objects exist only on Windows")
@pytest.mark.skipif(
    WINE is not None,
    reason=f"Wine {WINE} does not enforce JOB_OBJECT_LIMIT_PROCESS_MEMORY: under it the "
    "system arena commits 6 GiB in a job limited to 1.25 GiB; Windows refuses a commit past a "
    "job's ProcessMemoryLimit",
)
def test_windows_job_limit_system_fails_reserve_commit_fits() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WINDOWS_CHILD % ARENAS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": child_pythonpath()},
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    # A commit over a job's process limit fails with STATUS_COMMITMENT_LIMIT (1455) in
    # NT-derived code; docs/VM_SEMANTICS.md A.5 leaves the code on current Windows to a probe.
    assert got["system"] in (ERROR_COMMITMENT_LIMIT, 8), got
    assert got["reserve_commit"] == ARENAS, got
