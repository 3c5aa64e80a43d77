"""Plugins that each break exactly one obligation of the plugin contract.

Each is a subclass of ``impl.arena.Arena`` or ``impl.pool.ArenaPool`` changing one
behaviour, with a one-line docstring naming the obligation it breaks. The contract table
(``faults.contract``) names the check that must catch each; the zoo and the broken arenas
and pools cover the obligations not listed here.
"""

from __future__ import annotations

import struct
from typing import cast

from arenacheck.impl.arena import FOOTER_MAGIC, Arena
from arenacheck.impl.errors import (
    ArenaFull,
    InvalidArgumentType,
    InvalidLayout,
    OSCallFailed,
    OutOfBounds,
    PoolClosed,
    PoolCreationFailed,
    PoolEmpty,
    PoolMisuse,
    ReleaseRefused,
)
from arenacheck.impl.pool import ArenaPool, Owner, PoolArena, Release

_FOOTER = struct.Struct("<QQ")

# ------------------------------------------------------------------ creation, accessors


class CommitsPastReservation(Arena):
    """Creation makes an OS call outside its own reservation (a page past its end)."""

    def _commit_first(self) -> None:
        super()._commit_first()
        self._backend.commit(self._reservation + self._reserved_size, self._geometry.page)


class ReportsWrongReservation(Arena):
    """``reservation`` is not the base the OS returned."""

    @property
    def reservation(self) -> int:
        return self._reservation + self._geometry.granularity


class ReportsWrongContainer(Arena):
    """``container`` is not C."""

    @property
    def container(self) -> int:
        return self._container + self._geometry.page


class ReportsWrongStart(Arena):
    """``start`` is not S."""

    @property
    def start(self) -> int:
        return super().start + self._geometry.page


class ReportsWrongCursor(Arena):
    """``cursor`` is not P."""

    @property
    def cursor(self) -> int:
        return super().cursor - 1


class ReportsWrongFooter(Arena):
    """``footer`` is not F."""

    @property
    def footer(self) -> int:
        return self._footer - self._geometry.footer_size


class ReportsWrongCommittedBytes(Arena):
    """``committed_bytes`` is not the size of ``[S, C + CONTAINER_SIZE)``."""

    @property
    def committed_bytes(self) -> int:
        return super().committed_bytes + self._geometry.page


class StaysAliveAfterFree(Arena):
    """``alive`` stays True after ``free``."""

    @property
    def alive(self) -> bool:
        return True


class FooterReportedWrong(Arena):
    """``footer_bytes()`` reports one footer while creation writes another at F."""

    def _write_footer(self) -> None:
        self._backend.write(self._footer, _FOOTER.pack(FOOTER_MAGIC, self._container_end))


class ResetOverwritesFooter(Arena):
    """The footer's bytes change after creation (``reset`` clears them)."""

    def reset(self) -> None:
        super().reset()
        self._backend.write(self._footer, bytes(self._geometry.footer_size))


# ---------------------------------------------------------------------- allocation


class TryAllocRaisesFull(Arena):
    """``try_alloc`` on a full arena raises ArenaFull instead of returning None."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        addr = super().try_alloc(size, align)
        if addr is None:
            raise ArenaFull(f"no room for {size} bytes aligned on {align}")
        return addr


class AllocReturnsNone(Arena):
    """``alloc`` on a full arena returns None instead of raising ArenaFull."""

    def alloc(self, size: object, align: object = 1) -> int:
        # The broken obligation is the return type itself.
        return cast(int, self.try_alloc(size, align))


class AcceptsNonPowerOfTwoAlign(Arena):
    """An alignment that is not a power of two is rounded up instead of refused (InvalidLayout)."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        if type(align) is int and align > 0 and align & (align - 1):
            align = 1 << align.bit_length()
        return super().try_alloc(size, align)


class MistypedRefusedAsLayout(Arena):
    """A non-int size or align raises InvalidLayout instead of InvalidArgumentType."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        try:
            return super().try_alloc(size, align)
        except InvalidArgumentType as error:
            raise InvalidLayout(str(error)) from error


class AcceptsBool(Arena):
    """A bool size or align is taken as an int instead of refused (InvalidArgumentType)."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        if type(size) is bool:
            size = int(size)
        if type(align) is bool:
            align = int(align)
        return super().try_alloc(size, align)


class RefusalMovesCursor(Arena):
    """A refused layout moves the cursor: a refusal must leave the arena unchanged."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        try:
            return super().try_alloc(size, align)
        except InvalidLayout:
            self._cursor -= 1
            raise


# ------------------------------------------------------------------ reset, free


class ResetKeepsCursor(Arena):
    """``reset`` does not move P back to F."""

    def reset(self) -> None:
        self._live()


class DoubleFreeIgnored(Arena):
    """A second ``free`` returns quietly instead of raising DoubleFree."""

    def free(self) -> None:
        if self._alive:
            super().free()


class ResetAfterFreeAllowed(Arena):
    """``reset`` on a freed arena returns quietly instead of raising UseAfterFree."""

    def reset(self) -> None:
        if self._alive:
            super().reset()


class CursorAfterFreeAllowed(Arena):
    """``cursor`` on a freed arena answers instead of raising UseAfterFree."""

    @property
    def cursor(self) -> int:
        return self._cursor


class SecondFreeReleasesAgain(Arena):
    """A second ``free`` releases the reservation again before raising DoubleFree."""

    def free(self) -> None:
        if not self._alive:
            self._backend.release(self._reservation, self._reserved_size)
        super().free()


class UseAfterFreeCallsOS(Arena):
    """``try_alloc`` on a freed arena commits before refusing: UseAfterFree must call no OS."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        if not self._alive:
            self._backend.commit(self._start - self._geometry.page, self._geometry.page)
        return super().try_alloc(size, align)


# ---------------------------------------------------------------------- memory I/O


class ReadBelowCursor(Arena):
    """``read`` accepts ``[S, P)``, below the allocated bytes, instead of OutOfBounds."""

    def read(self, addr: object, n: object) -> bytes:
        self._live()
        cursor, self._cursor = self._cursor, self._start
        try:
            return super().read(addr, n)
        finally:
            self._cursor = cursor


class WriteIntoFooter(Arena):
    """``write`` accepts the footer's bytes ``[F, F + FOOTER_SIZE)`` instead of OutOfBounds."""

    def write(self, addr: object, data: object) -> None:
        self._live()
        footer, self._footer = self._footer, self._footer + self._geometry.footer_size
        try:
            super().write(addr, data)
        finally:
            self._footer = footer


class MistypedAddressOutOfBounds(Arena):
    """A non-int address raises OutOfBounds instead of InvalidArgumentType."""

    def _check_span(self, addr: object, n: object) -> tuple[int, int]:
        if type(addr) is not int:
            raise OutOfBounds(f"address {addr!r} is not in the arena")
        return super()._check_span(addr, n)


class ReadReturnsZeros(Arena):
    """``read`` returns zeros instead of the bytes in memory."""

    def read(self, addr: object, n: object) -> bytes:
        return bytes(len(super().read(addr, n)))


class WriteDropped(Arena):
    """``write`` checks its arguments but stores nothing."""

    def write(self, addr: object, data: object) -> None:
        self._live()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgumentType(f"data must be bytes-like, not {type(data).__name__}")
        self._check_span(addr, len(data))


# -------------------------------------------------------------------------- pools


class SpareArenaKept(ArenaPool):
    """A Windows pool keeps all ``thread_count + 1`` arenas instead of giving the last back."""

    def _create(self) -> list[PoolArena]:
        if self._behaviour == "posix":
            return super()._create()
        created: list[PoolArena] = []
        for i in range(self._thread_count + 1):
            try:
                created.append(self._create_one(i))
            except OSCallFailed:
                break
        if not created:
            raise PoolCreationFailed("insufficient memory to create the pool")
        return created


class PartialPoolLeaked(ArenaPool):
    """A POSIX pool whose creation fails keeps the arenas it had created: nothing may stay."""

    def _create(self) -> list[PoolArena]:
        if self._behaviour != "posix":
            return super()._create()
        created: list[PoolArena] = []
        for i in range(self._thread_count):
            try:
                created.append(self._create_one(i))
            except OSCallFailed as e:
                raise PoolCreationFailed(f"could not create arena {i}: {e}") from e
        return created


class WrongIdWritten(ArenaPool):
    """The ``u32`` id in an arena's metadata is not its id."""

    def _create_one(self, arena_id: int) -> PoolArena:
        pool_arena = super()._create_one(arena_id)
        self._backend.write(pool_arena.id_address, (arena_id + 1).to_bytes(4, "little"))
        return pool_arena


class GetTakesOldest(ArenaPool):
    """``get`` takes the bottom of the stack instead of the arena added last."""

    def _take(self) -> PoolArena:
        arena = self._stack.pop(0)
        self._out.add(arena.id)
        return arena


class EmptyGetHandsOutHeld(ArenaPool):
    """A POSIX ``get`` on an empty pool hands out an arena a thread holds instead of PoolEmpty."""

    def get(self) -> PoolArena:
        with self._cond:
            if self._behaviour == "posix" and not self._stack and self._out:
                return self._arenas[min(self._out)]
        return super().get()


class EmptyGetDoesNotWait(ArenaPool):
    """A Windows ``get`` on an empty pool raises PoolEmpty instead of waiting for an ``add``."""

    def get(self) -> PoolArena:
        with self._cond:
            if self._behaviour == "windows" and not self._stack and not self._closed:
                raise PoolEmpty("get on an empty pool")
        return super().get()


class ClosedGetRaisesEmpty(ArenaPool):
    """A ``get`` woken by ``close`` raises PoolEmpty instead of PoolClosed."""

    def get(self) -> PoolArena:
        try:
            return super().get()
        except PoolClosed as error:
            raise PoolEmpty("the pool is gone") from error


class SecondAddAccepted(ArenaPool):
    """``add`` of an arena already in the pool pushes it again instead of raising PoolMisuse."""

    def add(self, arena: PoolArena) -> None:
        with self._cond:
            if arena in self._stack:
                self._push(arena)
                return
        super().add(arena)


class CloseBottomFirst(ArenaPool):
    """``close`` lets go of the pool's arenas bottom first instead of top first."""

    def close(self) -> list[tuple[int, Release]]:
        with self._cond:
            self._stack.reverse()
        return super().close()


class _SharesTwice(PoolArena):
    def share(self) -> None:
        with self._lock:
            if Owner.ENGINE in self._owners:
                self._write_transfer()
                self._write_flag(True)
                return
        super().share()


class ShareTwiceAccepted(ArenaPool):
    """``share`` of an arena the engine already owns succeeds instead of raising PoolMisuse."""

    def _create_one(self, arena_id: int) -> PoolArena:
        made = super()._create_one(arena_id)
        made.__class__ = _SharesTwice
        return made


class _SkipsTransfer(PoolArena):
    def share(self) -> None:
        with self._lock:
            if Owner.ENGINE in self._owners:
                raise PoolMisuse(f"arena {self.id} is already shared")
            self._write_flag(True)
            self._owners.add(Owner.ENGINE)


class ShareSkipsTransfer(ArenaPool):
    """``share`` sets the flag without writing the transfer metadata (where the data begins)."""

    def _create_one(self, arena_id: int) -> PoolArena:
        made = super()._create_one(arena_id)
        made.__class__ = _SkipsTransfer
        return made


class _EngineUnchecked(PoolArena):
    def release_by_engine(self) -> Release:
        with self._lock:
            if not self.arena.alive:
                raise ReleaseRefused(f"arena {self.id}'s memory was already released")
            self._owners.add(Owner.ENGINE)
        return super().release_by_engine()


class EngineReleaseUnchecked(ArenaPool):
    """The engine's release is not refused when the engine does not own the memory."""

    def _create_one(self, arena_id: int) -> PoolArena:
        made = super()._create_one(arena_id)
        made.__class__ = _EngineUnchecked
        return made


class SecondRetireKept(ArenaPool):
    """A second ``retire`` of the same arena answers KEPT instead of raising ReleaseRefused."""

    def retire(self, arena: PoolArena) -> Release:
        with self._cond:
            if arena.id in self._retired:
                return Release.KEPT
        return super().retire(arena)
