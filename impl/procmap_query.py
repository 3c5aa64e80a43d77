"""The Linux kernel's view of a range through the PROCMAP_QUERY ioctl (Linux 6.11 and later).

The ioctl on an open ``/proc/self/maps`` returns one VMA at a time, in binary: the same
VMAs the text lists (docs/VM_SEMANTICS.md B.3), without reading and parsing the whole file. A
query of one arena then costs a few system calls whatever the rest of the process maps.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import weakref
from collections.abc import Iterator

from arenacheck.impl.backend import spans_of
from arenacheck.model.spans import OsSpan, prot_letters

# _IOWR('f', 17, struct procmap_query) from <linux/fs.h>; the struct is 104 bytes.
PROCMAP_QUERY = 0xC0686611
COVERING_OR_NEXT_VMA = 0x10

# size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset,
# inode, dev_major, dev_minor, vma_name_size, build_id_size, vma_name_addr, build_id_addr
_QUERY = struct.Struct("=9Q4I2Q")
_OUT = struct.Struct("=QQQ")  # vma_start, vma_end, vma_flags
_OUT_OFFSET = 24
_ADDR = struct.Struct("=Q")  # query_addr
_ADDR_OFFSET = 16
_PATH = "/proc/self/maps"


class ProcmapUnavailable(OSError):
    """The kernel has no PROCMAP_QUERY (before 6.11, or /proc is not mounted)."""


class ProcmapQuery:
    """Spans of this process's address space, one ioctl per VMA.

    The descriptor names the process that opened it, so a forked child (which inherits
    it) would be shown its parent's mappings: a child reopens it on its first query.
    """

    def __init__(self) -> None:
        self._fd = -1
        self._closer: weakref.finalize[[int], ProcmapQuery] | None = None
        self._forked = False
        self._reopening = threading.Lock()
        # Told by the fork itself rather than by asking getpid() on every query: a query
        # is a few system calls, and getpid() would be one more each time.
        # A weak reference, so that the hook does not keep a reader (and its descriptor) alive.
        reader = weakref.ref(self)

        def forked() -> None:
            alive = reader()
            if alive is not None:
                alive._forked = True

        os.register_at_fork(after_in_child=forked)
        self._template = _QUERY.pack(_QUERY.size, COVERING_OR_NEXT_VMA, *([0] * 13))
        self._open()
        self.vma_at(0)  # ENOTTY here means the kernel lacks the ioctl

    def _open(self) -> None:
        try:
            self._fd = os.open(_PATH, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ProcmapUnavailable(e.errno, f"{_PATH}: {e.strerror}") from None
        # Closed when the reader is collected, or at exit while ``os`` still works.
        self._closer = weakref.finalize(self, os.close, self._fd)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None
        self._fd = -1

    def vma_at(self, addr: int) -> tuple[int, int, int] | None:
        """(start, end, flags) of the VMA covering ``addr`` or the next one above; None if none."""
        if self._forked:
            with self._reopening:
                if self._forked:
                    self.close()
                    self._open()
                    self._forked = False
        # A buffer per call: threads of the process may query at the same time.
        buf = bytearray(self._template)
        _ADDR.pack_into(buf, _ADDR_OFFSET, addr)
        try:
            fcntl.ioctl(self._fd, PROCMAP_QUERY, buf, True)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            if e.errno in (errno.ENOTTY, errno.EINVAL):
                raise ProcmapUnavailable(e.errno, f"PROCMAP_QUERY: {e.strerror}") from None
            raise
        start, end, flags = _OUT.unpack_from(buf, _OUT_OFFSET)
        return start, end, flags

    def mappings(self, lo: int) -> Iterator[tuple[int, int, str]]:
        """(start, end, perms) of each VMA from the one covering ``lo`` up, one ioctl each."""
        addr = lo
        while (vma := self.vma_at(addr)) is not None:
            start, end, flags = vma
            # PROCMAP_QUERY_VMA_READABLE, _WRITABLE, _EXECUTABLE are 1, 2, 4, as PROT_*.
            yield start, end, prot_letters(flags)
            addr = end

    def spans_in(self, lo: int, hi: int) -> list[OsSpan]:
        """``[lo, hi)`` as spans, as the text of /proc/self/maps gives them."""
        return spans_of(self.mappings(lo), lo, hi)
