"""Every error the arena raises. Each leaves the arena exactly as it was."""

from __future__ import annotations


class ArenaError(Exception):
    """Base of every error the arena raises on purpose."""


class InvalidLayout(ArenaError, ValueError):
    """Size or alignment do not form a valid layout (Rust's ``Layout`` rule)."""


class InvalidArgumentType(ArenaError, TypeError):
    """An argument of the wrong type (``bool`` is not an ``int`` here)."""


class ArenaFull(ArenaError, MemoryError):
    """The allocation does not fit, even with the whole container committed."""


class DoubleFree(ArenaError):
    """``free`` on an arena already freed; no OS call was made."""


class UseAfterFree(ArenaError):
    """An operation on a freed arena; no OS call was made."""


class OutOfBounds(ArenaError, ValueError):
    """A read or write outside the arena's allocated bytes; no memory was touched."""


class OSCallFailed(ArenaError, OSError):
    """An OS call failed; ``code`` is its errno (POSIX) or last error (Windows)."""

    def __init__(self, call: str, code: int, detail: str = "") -> None:
        self.call = call
        self.code = code
        self.detail = detail
        text = f"{call} failed with code {code}"
        super().__init__(f"{text}: {detail}" if detail else text)

    def __reduce__(self) -> tuple[type[OSCallFailed], tuple[str, int, str]]:
        # Exceptions cross process boundaries (crash isolation) by pickling.
        return (OSCallFailed, (self.call, self.code, self.detail))


class PoolError(ArenaError):
    """Base of every error the arena pool raises on purpose; each leaves the pool unchanged."""


class PoolCreationFailed(PoolError, MemoryError):
    """The pool could not create the arenas its behaviour needs; nothing stays reserved."""


class PoolEmpty(PoolError):
    """``get`` on an empty pool in the POSIX behaviour, which never waits."""


class PoolClosed(PoolError):
    """The pool was closed: ``get`` and ``add`` are refused and waiting threads are woken."""


class PoolMisuse(PoolError, ValueError):
    """An arena the pool did not hand out, a second share, or a bad pool parameter."""


class ReleaseRefused(PoolError, DoubleFree):
    """A release by an owner that no longer owns the memory; no OS call, no memory touched."""
