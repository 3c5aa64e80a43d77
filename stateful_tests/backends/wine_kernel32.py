"""kernel32 under Wine: ``native/wine_vmserver.c``, built with mingw-w64, over a pipe.

``WineKernel32`` has the call shapes of ``arenacheck.impl.win_kernel32.Kernel32``
(arguments converted as ctypes' argtypes would, NULL pointers returned as ``None``,
structures filled in place, the last error read with ``get_last_error``), so the unchanged
``arenacheck.impl.win_backend`` runs against Wine's VirtualAlloc family. ``WineBackend`` is
that backend, with reads and writes going over the pipe too: the memory lives in the Wine
process, not in this one.

One server per Python process (so one per xdist worker), started on first use in a Wine
prefix of its own in a temporary directory, and shut down at exit. A shell wrapper around
``wine64`` kills the prefix's wineserver and deletes the prefix once the server exits, so even
a Python process that dies without running its exit handlers leaves nothing behind: the
server sees the end of its input and exits.

The last error follows ctypes' ``use_last_error=True``: a private value per thread of the
caller, installed with SetLastError immediately before each call and read back with
GetLastError immediately after it. The Wine process serves one caller thread, so the value
lives with the server connection, and each request carries it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import IO, Any

from arenacheck.backends.names import WIN32_WINE
from arenacheck.backends.standin import _address_of, _convert, _dword_behind, _structure_behind
from arenacheck.backends.wine_allowances import aborting_shape
from arenacheck.impl import host
from arenacheck.impl.native import native_source
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.impl.win_kernel32 import (
    DWORD,
    MEM_ADDRESS_REQUIREMENTS,
    MEM_EXTENDED_PARAMETER,
    MEMORY_BASIC_INFORMATION,
    SYSTEM_INFO,
)
from arenacheck.impl.wine_held import held_mappings
from arenacheck.model.win_constants import MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS

WINE64 = Path("/usr/lib/wine/wine64")
WINESERVER64 = Path("/usr/lib/wine/wineserver64")
MINGW_GCC = "x86_64-w64-mingw32-gcc"
SOURCE = native_source("wine_vmserver.c")
CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-s")
EXE_NAME = "wine_vmserver.exe"

# A fresh prefix takes seconds to create (longer on a loaded machine); a request is
# answered in microseconds, so a server silent for a minute is hung.
START_TIMEOUT = 300.0
REQUEST_TIMEOUT = 60.0
EXIT_TIMEOUT = 60.0
STDERR_LINES = 20

PROTOCOL_MAGIC = 0x31534D56
OP_HELLO = 0
OP_VIRTUAL_ALLOC = 1
OP_VIRTUAL_FREE = 2
OP_VIRTUAL_QUERY = 3
OP_GET_SYSTEM_INFO = 4
OP_READ = 5
OP_WRITE = 6
OP_EXIT = 7
OP_WINE_VERSION = 8
OP_VIRTUAL_PROTECT = 9
OP_VIRTUAL_ALLOC2 = 10
OP_NAMES = {
    OP_HELLO: "hello",
    OP_VIRTUAL_ALLOC: "VirtualAlloc",
    OP_VIRTUAL_FREE: "VirtualFree",
    OP_VIRTUAL_QUERY: "VirtualQuery",
    OP_GET_SYSTEM_INFO: "GetSystemInfo",
    OP_READ: "read",
    OP_WRITE: "write",
    OP_EXIT: "exit",
    OP_WINE_VERSION: "wine_get_version",
    OP_VIRTUAL_PROTECT: "VirtualProtect",
    OP_VIRTUAL_ALLOC2: "VirtualAlloc2",
}
REQUEST = struct.Struct("<II4QII")
RESPONSE = struct.Struct("<QII")
REFUSAL = struct.Struct("<QII")
ALLOC2_HEAD = struct.Struct("<QII")
ALLOC2_ENTRY = struct.Struct("<6Q")
MAX_EXTENDED = 8  # MAX_EXTENDED in the C source
# The server's answer when KernelBase exports no VirtualAlloc2.
NO_VIRTUAL_ALLOC2 = 0xFFFFFFFF
MAX_CHUNK = 1 << 20  # the server's payload buffer (MAX_PAYLOAD in the C source)

# Run by /bin/sh with argv: wine64, the server, wineserver64, the directory to delete.
# Killing the wineserver ends the prefix's helper processes (services, winedevice) so
# that nothing is left writing into the directory when it is deleted.
_WRAPPER = """\
"$1" "$2"
status=$?
"$3" -k >/dev/null 2>&1
rm -rf -- "$4"
exit "$status"
"""


class WineServerError(RuntimeError):
    """The Wine server could not be built, started, or answered out of protocol."""


class WineServerDied(WineServerError):
    """The Wine server process exited; the message names its status and last stderr lines."""


class WineWouldAbort(RuntimeError):
    """A call of a shape that aborts Wine's whole process: never sent to the server."""


class InaccessibleMemory(OSError):
    """A read or write named memory the Wine process does not have committed and accessible."""


# ---------------------------------------------------------------------- availability


def unavailable_reason() -> str | None:
    """Why this machine cannot run ``win32-wine``, naming exactly what is missing."""
    if not host.IS_LINUX:
        return f"win32-wine runs Debian's wine64 on Linux; this is {host.PLATFORM}"
    missing = []
    absent = [str(p) for p in (WINE64, WINESERVER64) if not os.access(p, os.X_OK)]
    if absent:
        missing.append(f"Debian's wine64 ({' and '.join(absent)} missing)")
    if shutil.which(MINGW_GCC) is None:
        missing.append(f"gcc-mingw-w64-x86-64 ({MINGW_GCC} not on PATH)")
    if missing:
        return "win32-wine needs " + " and ".join(missing)
    return None


# ----------------------------------------------------------------------------- build

_built: Path | None = None


def build_dir() -> Path:
    """Where the server is built: outside the source tree, one directory per source hash."""
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update("\0".join((MINGW_GCC, *CFLAGS)).encode())
    return Path(tempfile.gettempdir()) / f"arenacheck-build-{os.getuid()}-{digest.hexdigest()[:16]}"


def build_server() -> Path:
    """The server executable, compiled once per source hash; xdist workers wait on a lock."""
    global _built
    if _built is not None and _built.exists():
        return _built
    import fcntl  # POSIX only; this backend exists only on Linux

    out = build_dir()
    out.mkdir(mode=0o700, exist_ok=True)
    if out.stat().st_uid != os.getuid():
        raise WineServerError(f"{out} belongs to another user; refusing to run what it holds")
    exe = out / EXE_NAME
    with open(out / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exe.exists():
            partial = out / f"{EXE_NAME}.{os.getpid()}.partial"
            command = [MINGW_GCC, *CFLAGS, "-o", str(partial), str(SOURCE)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                partial.unlink(missing_ok=True)
                raise WineServerError(
                    f"{' '.join(command)} failed with status {done.returncode}:\n"
                    f"{done.stdout}{done.stderr}"
                )
            # Atomic: a worker that finds the executable never finds half of it.
            os.replace(partial, exe)
    _built = exe
    return exe


# ---------------------------------------------------------------------------- server


class WineServer:
    """One ``wine_vmserver.exe`` under ``wine64``, in a prefix of its own."""

    def __init__(self, exe: Path) -> None:
        self.last_error = 0
        self.directory = Path(tempfile.mkdtemp(prefix="arenacheck-wine-"))
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.update(
            WINEPREFIX=str(self.directory / "prefix"),
            WINEARCH="win64",
            WINEDEBUG="-all",
            # No Mono or Gecko installer dialogs while the prefix is created.
            WINEDLLOVERRIDES="mscoree,mshtml=",
        )
        self._env = env
        # An anonymous file, still readable after the wrapper deleted the directory; it
        # lives as long as the server and is closed by close().
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        wrapper_args = [str(p) for p in (WINE64, exe, WINESERVER64, self.directory)]
        started = time.monotonic()
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", _WRAPPER, "wine_vmserver", *wrapper_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            bufsize=0,
            # Its own session: a Ctrl-C aimed at pytest must not kill the wrapper before
            # it has cleaned up; the server still exits when our end of its input closes.
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        try:
            value, _, _ = self.request(OP_HELLO, timeout=START_TIMEOUT)
            if value != PROTOCOL_MAGIC:
                raise WineServerError(f"{exe} answered hello with {value:#x}, not the protocol's")
        except WineServerError:
            self.close()
            raise
        self.start_seconds = time.monotonic() - started
        self.unix_pid = self._server_pid()

    def _server_pid(self) -> int:
        """The Linux pid of the Wine process: the wrapper's only child (wine64 execs in place)."""
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name is in parentheses and may hold spaces: split after it.
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == self.proc.pid:
                children.append(int(entry))
        if len(children) != 1:
            raise WineServerError(
                f"expected one Wine process under the wrapper {self.proc.pid}, found {children}"
            )
        return children[0]

    def host_mappings(self, lo: int, hi: int) -> list[str]:
        """Linux mappings of the Wine process over ``[lo, hi)`` that Wine cannot map a view
        on, though its VirtualQuery reports them free (``arenacheck.impl.wine_held``)."""
        return held_mappings(Path(f"/proc/{self.unix_pid}/maps").read_text(), lo, hi)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(
        self,
        op: int,
        args: tuple[int, ...] = (),
        payload: bytes = b"",
        timeout: float = REQUEST_TIMEOUT,
    ) -> tuple[int, int, bytes]:
        """Send one request; its value, the last error after the call, and its payload."""
        padded = (*args, 0, 0, 0, 0)[:4]
        header = REQUEST.pack(op, self.last_error, *padded, len(payload), 0)
        self._send(header + payload)
        value, error, size = RESPONSE.unpack(self._receive(RESPONSE.size, op, timeout))
        data = self._receive(size, op, timeout) if size else b""
        return value, error, data

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self._in, view)
            except (BrokenPipeError, OSError) as e:
                raise self._died(f"writing a request failed ({e})") from None
            view = view[sent:]

    def _receive(self, n: int, op: int, timeout: float) -> bytes:
        chunks: list[bytes] = []
        left = n
        deadline = time.monotonic() + timeout
        while left:
            # Poll with a short period: the wineserver the server started may hold a copy
            # of the pipe's write end, so the end of output can come late, or never.
            ready, _, _ = select.select([self._out], [], [], 0.5)
            if not ready:
                if not self.alive:
                    raise self._died(f"no answer to {OP_NAMES.get(op, op)}")
                if time.monotonic() > deadline:
                    raise WineServerError(
                        f"the Wine server (pid {self.proc.pid}) did not answer "
                        f"{OP_NAMES.get(op, op)} within {timeout:.0f} s"
                    )
                continue
            chunk = os.read(self._out, left)
            if not chunk:
                raise self._died(f"its output ended during {OP_NAMES.get(op, op)}")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _died(self, what: str) -> WineServerDied:
        try:
            status: int | None = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        said = "is still running" if status is None else f"exited with status {status}"
        return WineServerDied(
            f"the Wine server (pid {self.proc.pid}) {said}: {what}; last stderr lines:\n"
            + (self.stderr_tail() or "(none)")
        )

    def stderr_tail(self, lines: int = STDERR_LINES) -> str:
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - 64 * 1024))
        text = self._stderr.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Ask the server to exit, then wait for the wrapper to delete the prefix."""
        if self.alive:
            # A server that cannot answer is dealt with below, like one that exited.
            with contextlib.suppress(WineServerError):
                self.request(OP_EXIT, timeout=EXIT_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Hung: end the wrapper's session (it has its own) and the prefix's wineserver,
            # then do the wrapper's cleaning here.
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            subprocess.run(
                [str(WINESERVER64), "-k"], env=self._env, capture_output=True, check=False
            )
            shutil.rmtree(self.directory, ignore_errors=True)
        self._stderr.close()


_server: WineServer | None = None


# Attempts at starting a server, each in a fresh prefix.
START_ATTEMPTS = 2


def start_server(exe: Path, attempts: int = START_ATTEMPTS) -> WineServer:
    """A server that answered hello. Wine sometimes leaves a prefix it is creating half
    made ("could not load kernel32.dll"), and the cure is a fresh prefix: a server that
    dies while starting is started again in a new one. Every failure is reported, as a
    warning when a later attempt succeeds, in the error when none does."""
    failures: list[WineServerDied] = []
    while True:
        try:
            server = WineServer(exe)
        except WineServerDied as died:
            failures.append(died)
            if len(failures) >= attempts:
                raise WineServerDied(
                    f"the Wine server died while starting, {attempts} times, each in a fresh "
                    "prefix:\n" + "\n".join(str(f) for f in failures)
                ) from died
            continue
        for failure in failures:
            warnings.warn(
                f"started again in a fresh prefix: {failure}", RuntimeWarning, stacklevel=2
            )
        return server


def shared_server() -> WineServer:
    """This process's server, started on first use and again if the last one died."""
    global _server
    if _server is None or not _server.alive:
        first = _server is None
        _server = start_server(build_server())
        if first:
            atexit.register(_shutdown)
    return _server


def _shutdown() -> None:
    global _server
    if _server is not None:
        _server.close()
        _server = None


# -------------------------------------------------------------------------- kernel32


class WineKernel32:
    """kernel32's VirtualAlloc, VirtualFree, VirtualProtect, VirtualQuery and GetSystemInfo,
    and KernelBase's VirtualAlloc2, in Wine."""

    def __init__(self, server: WineServer | None = None) -> None:
        self.server = server if server is not None else shared_server()
        # What the server's ntdll says of itself (``wine_get_version``).
        found, _, text = self.server.request(OP_WINE_VERSION)
        self.wine_version = text.decode("ascii", "replace") if found else None

    # ------------------------------------------------------------ last error

    def get_last_error(self) -> int:
        return self.server.last_error

    def set_last_error(self, value: int) -> int:
        # A DWORD, as Windows stores it. (ctypes itself takes only values that fit a C int.)
        old, self.server.last_error = self.server.last_error, value & 0xFFFFFFFF
        return old

    def _call(self, op: int, args: tuple[int, ...], buffer: bytes = b"") -> tuple[int, bytes]:
        value, error, data = self.server.request(op, args, buffer)
        self.server.last_error = error
        return value, data

    # ----------------------------------------------------------------- calls

    def VirtualAlloc(  # noqa: N802 - kernel32's name
        self, address: object, size: object, alloc_type: object, protect: object
    ) -> int | None:
        args = (
            _convert(1, address, ctypes.c_void_p),
            _convert(2, size, ctypes.c_size_t),
            _convert(3, alloc_type, DWORD),
            _convert(4, protect, DWORD),
        )
        value, _ = self._call(OP_VIRTUAL_ALLOC, args)
        return value or None

    def VirtualFree(self, address: object, size: object, free_type: object) -> int:  # noqa: N802
        args = (
            _convert(1, address, ctypes.c_void_p),
            _convert(2, size, ctypes.c_size_t),
            _convert(3, free_type, DWORD),
        )
        value, _ = self._call(OP_VIRTUAL_FREE, args)
        return int(ctypes.c_int32(value).value)  # BOOL

    def VirtualQuery(self, address: object, buffer: object, length: object) -> int:  # noqa: N802
        addr = _convert(1, address, ctypes.c_void_p)
        mbi = _structure_behind(buffer, MEMORY_BASIC_INFORMATION, 2)
        nbytes = _convert(3, length, ctypes.c_size_t)
        value, data = self._call(OP_VIRTUAL_QUERY, (addr, nbytes), bytes(mbi))
        _fill(mbi, data)
        return value

    def GetSystemInfo(self, buffer: object) -> None:  # noqa: N802
        si = _structure_behind(buffer, SYSTEM_INFO, 1)
        _, data = self._call(OP_GET_SYSTEM_INFO, (), bytes(si))
        _fill(si, data)

    def VirtualProtect(  # noqa: N802 - kernel32's name
        self, address: object, size: object, new_protect: object, old_protect: object
    ) -> int:
        args = (
            _convert(1, address, ctypes.c_void_p),
            _convert(2, size, ctypes.c_size_t),
            _convert(3, new_protect, DWORD),
        )
        out = _dword_behind(old_protect, 4)
        buffer = b"" if out is None else struct.pack("<I", out.value & 0xFFFFFFFF)
        value, data = self._call(OP_VIRTUAL_PROTECT, args, buffer)
        if out is not None:
            out.value = struct.unpack("<I", data)[0]
        return int(ctypes.c_int32(value).value)  # BOOL

    def VirtualAlloc2(  # noqa: N802 - KernelBase's name
        self,
        process: object,
        address: object,
        size: object,
        alloc_type: object,
        protect: object,
        parameters: object,
        count: object,
    ) -> int | None:
        """VirtualAlloc2 in the server; shapes that abort Wine's process are refused here.

        Raises WineWouldAbort for a shape a row of
        ``arenacheck.backends.wine_allowances.ABORTING_SHAPES`` names, and AttributeError
        where the server's KernelBase has no VirtualAlloc2.
        """
        handle = _convert(1, process, ctypes.c_void_p)
        args = (
            _convert(2, address, ctypes.c_void_p),
            _convert(3, size, ctypes.c_size_t),
            _convert(4, alloc_type, DWORD),
            _convert(5, protect, DWORD),
        )
        n = _convert(7, count, DWORD)
        array = _address_of(parameters, 6)
        if n > MAX_EXTENDED:
            raise ValueError(f"the Wine server takes at most {MAX_EXTENDED} extended parameters")
        entries = []
        raw = (MEM_EXTENDED_PARAMETER * n).from_address(array) if array and n else ()
        for param in raw:
            kind, value = int(param.Type), int(param.Pointer or 0)
            if kind & 0xFF == MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS and value:
                r = MEM_ADDRESS_REQUIREMENTS.from_address(value)
                lowest, highest = (
                    int(r.LowestStartingAddress or 0),
                    int(r.HighestEndingAddress or 0),
                )
                row = aborting_shape(self.wine_version, args[1], int(r.Alignment))
                if row is not None:
                    raise WineWouldAbort(f"not sent to Wine {self.wine_version}: {row.name}")
                entries.append(ALLOC2_ENTRY.pack(kind, 0, lowest, highest, int(r.Alignment), 1))
            else:
                entries.append(ALLOC2_ENTRY.pack(kind, value, 0, 0, 0, 0))
        payload = ALLOC2_HEAD.pack(handle, n, 1 if array else 0) + b"".join(entries)
        value, error, _ = self.server.request(OP_VIRTUAL_ALLOC2, args, payload)
        if value == 0 and error == NO_VIRTUAL_ALLOC2:
            raise AttributeError("this Wine's KernelBase exports no VirtualAlloc2")
        self.server.last_error = error
        return value or None

    # ---------------------------------------------------------------- memory

    def read(self, addr: int, n: int) -> bytes:
        """``n`` bytes of the Wine process's memory at ``addr`` (committed and readable)."""
        _check_range(addr, n)
        out = bytearray()
        while len(out) < n:
            part = min(MAX_CHUNK, n - len(out))
            value, _, data = self.server.request(OP_READ, (addr + len(out), part))
            if value == 0:
                raise _refused("read", addr + len(out), part, data)
            if value != part or len(data) != part:
                raise WineServerError(f"read of {part} bytes answered {value} and {len(data)}")
            out += data
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr`` in the Wine process (committed read-write memory)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"write takes bytes, not {type(data).__name__}")
        payload = bytes(data)
        _check_range(addr, len(payload))
        for start in range(0, len(payload), MAX_CHUNK):
            part = payload[start : start + MAX_CHUNK]
            value, _, why = self.server.request(OP_WRITE, (addr + start, len(part)), part)
            if value != len(part):
                raise _refused("write", addr + start, len(part), why)


def _fill(structure: Any, data: bytes) -> None:
    if len(data) != ctypes.sizeof(structure):
        raise WineServerError(f"expected {ctypes.sizeof(structure)} bytes back, got {len(data)}")
    ctypes.memmove(ctypes.addressof(structure), data, len(data))


def _check_range(addr: int, n: int) -> None:
    if type(addr) is not int or type(n) is not int:
        raise TypeError("address and length must be int")
    if addr < 0 or n < 0 or addr + n > 1 << 64:
        raise ValueError(f"{n} bytes at {addr:#x} is not a range of the address space")


def _refused(what: str, addr: int, n: int, data: bytes) -> InaccessibleMemory:
    page, state, protect = REFUSAL.unpack(data)
    return InaccessibleMemory(
        f"{what} of {n} bytes at {addr:#x} refused by the Wine server: the page at "
        f"{page:#x} has State {state:#x}, Protect {protect:#x}"
    )


class WineBackend(WindowsBackend):
    """The unchanged Windows backend over Wine's kernel32; memory access over the pipe."""

    name = WIN32_WINE

    def __init__(self, kernel32: WineKernel32 | None = None) -> None:
        self.wine = kernel32 if kernel32 is not None else WineKernel32()
        super().__init__(self.wine, name=WIN32_WINE)

    def read(self, addr: int, n: int) -> bytes:
        return self.wine.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self.wine.write(addr, data)

    def reserve_aligned(self, size: int, align: int) -> int | None:
        """VirtualAlloc2 in the server, except for shapes that abort Wine's process.

        The probe of ``arenacheck.impl.wine_alloc2_probe`` runs Windows Python's own
        kernel32 in a child and cannot stand in for this server; the shapes Wine is known to
        die of are the rows of ``wine_allowances.ABORTING_SHAPES``, and those fall back to
        reserve, release and re-reserve.
        """
        if aborting_shape(self.wine_version, size, align) is not None:
            return None
        return self.call_aligned_reserve(size, align)

    def hidden_mappings(self, lo: int, hi: int) -> list[str]:
        """What Wine holds in ``[lo, hi)`` of its server process while its VirtualQuery says
        free (see WineServer)."""
        return self.wine.server.host_mappings(lo, hi)
