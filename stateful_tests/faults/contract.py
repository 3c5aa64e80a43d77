"""The plugin contract as a table: every obligation, the check that enforces it, and a
plugin that breaks exactly that obligation.

``check`` is the name a failure records: ``Divergence.check`` (the function that raised
it), or ``fence`` for the recording backend's ``FenceViolation``. Every row's plugin must
be caught by one of its checks (``tests/test_contract.py``): an obligation whose plugin
goes uncaught has no check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Subject = Literal["arena", "pool"]
FENCE = "fence"

_BREAKERS = "arenacheck.faults.contract_breakers"
_ZOO = "arenacheck.faults.zoo"
_BROKEN = "arenacheck.faults.broken_arenas"
_POOLS = "arenacheck.faults.broken_pools"
# Room for exactly one full container, as in the zoo: a second arena's first commit fails.
_LIMIT = 1 << 20


@dataclass(frozen=True)
class Obligation:
    """One row: ``plugin`` (``MODULE:ATTRIBUTE``) breaks ``duty`` and nothing else, and
    one of ``checks`` catches it with a message matching ``message``. A row names two
    checks where the breach shows first in either, depending on the step that meets it."""

    id: str
    subject: Subject
    duty: str
    checks: tuple[str, ...]
    plugin: str
    message: str = ""
    behaviour: str = "posix"  # pools only
    commit_limit: int | None = None  # arenas only: the emulated kernel's commit limit


def _arena(
    id: str,
    duty: str,
    check: str | tuple[str, ...],
    plugin: str,
    message: str = "",
    commit_limit: int | None = None,
) -> Obligation:
    checks = (check,) if isinstance(check, str) else check
    return Obligation(id, "arena", duty, checks, plugin, message, commit_limit=commit_limit)


def _pool(
    id: str, duty: str, check: str | tuple[str, ...], plugin: str, message: str, behaviour: str
) -> Obligation:
    checks = (check,) if isinstance(check, str) else check
    return Obligation(id, "pool", duty, checks, plugin, message, behaviour)


CONTRACT: tuple[Obligation, ...] = (
    # ----------------------------------------------------------------- creation
    _arena(
        "create-calls",
        "`new` reserves RESERVED_SIZE and commits exactly the top FIRST_COMMIT bytes of the "
        "container, nothing else.",
        "expect_calls",
        f"{_ZOO}:ReservationCharged",
        r"^new: OS calls",
    ),
    _arena(
        "create-failure-releases",
        "A creation whose first commit the OS refuses releases its reservation and raises "
        "`OSCallFailed`.",
        "creation_failed",
        f"{_ZOO}:LeakAfterFailedCommit",
        r"after a refused commit: OS calls",
        commit_limit=_LIMIT,
    ),
    _arena(
        "alive",
        "`alive` is False once `free` returned.",
        "free",
        f"{_BREAKERS}:StaysAliveAfterFree",
        r"free returned but the arena says it is alive",
    ),
    # ---------------------------------------------------------------- accessors
    _arena(
        "reservation",
        "`reservation` is R, the base the OS returned.",
        "expect_calls",
        f"{_BREAKERS}:ReportsWrongReservation",
        r"^new: OS calls .* model predicts",
    ),
    _arena(
        "container",
        "`container` is C, R rounded up to CONTAINER_ALIGN.",
        "check_arena",
        f"{_BREAKERS}:ReportsWrongContainer",
        r": C is 0x",
    ),
    _arena(
        "start",
        "`start` is S, the bottom of the committed region.",
        "check_arena",
        f"{_BREAKERS}:ReportsWrongStart",
        r": S is 0x",
    ),
    _arena(
        "cursor",
        "`cursor` is P, where the next allocation ends.",
        "check_arena",
        f"{_BREAKERS}:ReportsWrongCursor",
        r": P is 0x",
    ),
    _arena(
        "footer",
        "`footer` is F = C + BLOCK_SIZE - FOOTER_SIZE.",
        "check_arena",
        f"{_BREAKERS}:ReportsWrongFooter",
        r": F is 0x",
    ),
    _arena(
        "committed-bytes",
        "`committed_bytes` is the size of [S, C + CONTAINER_SIZE).",
        "check_arena",
        f"{_BREAKERS}:ReportsWrongCommittedBytes",
        r": committed \d+, model says",
    ),
    # ------------------------------------------------------------------ footer
    _arena(
        "footer-reported",
        "What `footer_bytes()` reports (the implementation's choice of footer) is what "
        "creation wrote at F.",
        "check_footer_bytes",
        f"{_BREAKERS}:FooterReportedWrong",
        r"^new: arena\d+ reports the footer [0-9a-f]+, memory at F holds",
    ),
    _arena(
        "footer-stable",
        "The footer's bytes never change after creation.",
        "check_arena",
        f"{_BREAKERS}:ResetOverwritesFooter",
        r"the footer at F was overwritten",
    ),
    # -------------------------------------------------------------- allocation
    _arena(
        "alloc-address",
        "`alloc` returns the new P = (P - size) rounded down to max(align, MIN_ALIGN).",
        "alloc",
        f"{_ZOO}:ReturnsOldCursor",
        r"returned 0x[0-9a-f]+, model predicts",
    ),
    _arena(
        "alloc-subtract-then-align",
        "The size is subtracted before the cursor is aligned.",
        ("alloc", "expect_calls"),
        f"{_ZOO}:AlignBeforeSubtract",
        r"model predicts",
    ),
    _arena(
        "alloc-min-align",
        "Every allocation is aligned on at least MIN_ALIGN.",
        ("alloc", "expect_calls"),
        f"{_ZOO}:MinAlignIgnored",
        r"model predicts",
    ),
    _arena(
        "alloc-fits-to-c",
        "An allocation that ends exactly at C still fits.",
        ("alloc", "expect_calls"),
        f"{_ZOO}:MaxAllocOffByOne",
        r"returned None, model predicts|OS calls \[\], model predicts \['commit",
    ),
    _arena(
        "alloc-no-wrap",
        "An allocation whose P - size wraps around zero is full, not handed out.",
        "alloc",
        f"{_ZOO}:WrapAroundIgnored",
        r"must fail as full",
    ),
    _arena(
        "alloc-grow-doubles",
        "A grow commits down to max(S - committed, C), further down to the allocation's page "
        "if needed: the committed region doubles.",
        "expect_calls",
        f"{_ZOO}:DoublingFromWrongBase",
        r"OS calls .* model predicts",
    ),
    _arena(
        "os-calls-page-granular",
        "Every commit starts on a page boundary and spans whole pages.",
        "expect_calls",
        f"{_BROKEN}:UnalignedGrowCommit",
        r"OS calls .* model predicts",
    ),
    _arena(
        "alloc-full-unchanged",
        "An allocation that fails (the OS refused the grow's commit) leaves S and P unchanged.",
        "check_unchanged",
        f"{_ZOO}:StartBeforeCommit",
        r"a failed alloc changed S/P",
        commit_limit=_LIMIT,
    ),
    _arena(
        "alloc-full-raises",
        "`alloc` on a full arena raises `ArenaFull`.",
        "check_full_signal",
        f"{_BREAKERS}:AllocReturnsNone",
        r"^alloc\(\d+, \d+\) returned None; a full arena's alloc raises ArenaFull$",
    ),
    _arena(
        "try-alloc-full-none",
        "`try_alloc` on a full arena returns None, and does not raise.",
        "check_full_signal",
        f"{_BREAKERS}:TryAllocRaisesFull",
        r"^try_alloc\(\d+, \d+\) raised ArenaFull; a full arena's try_alloc returns None$",
    ),
    _arena(
        "invalid-layout",
        "A size or alignment Rust's `Layout` refuses raises `InvalidLayout`.",
        "bad_layout",
        f"{_BREAKERS}:AcceptsNonPowerOfTwoAlign",
        r"alloc\(8, 3\) was not refused",
    ),
    _arena(
        "invalid-argument-type",
        "A non-`int` size or alignment raises `InvalidArgumentType`, not `InvalidLayout`.",
        "bad_layout",
        f"{_BREAKERS}:MistypedRefusedAsLayout",
        r"alloc\(.*\) raised InvalidLayout, not InvalidArgumentType",
    ),
    _arena(
        "invalid-argument-bool",
        "A `bool` size or alignment is not an `int`: it raises `InvalidArgumentType`.",
        "bad_layout",
        f"{_BREAKERS}:AcceptsBool",
        r"alloc\((True, 1|8, True)\) was not refused",
    ),
    _arena(
        "refusal-unchanged",
        "A refused layout leaves S and P unchanged.",
        "check_unchanged",
        f"{_BREAKERS}:RefusalMovesCursor",
        r"changed S/P",
    ),
    # ------------------------------------------------------------------- reset
    _arena(
        "reset-cursor",
        "`reset` moves P back to F.",
        "check_arena",
        f"{_BREAKERS}:ResetKeepsCursor",
        r": P is 0x",
    ),
    _arena(
        "reset-keeps-commit",
        "`reset` keeps S and the committed region (it makes no OS call).",
        "expect_calls",
        f"{_ZOO}:ResetDecommitsKeepsS",
        r"^reset: OS calls",
    ),
    _arena(
        "reset-keeps-start",
        "`reset` does not move S.",
        "check_arena",
        f"{_ZOO}:ResetForgetsGrowth",
        r": S is 0x",
    ),
    # -------------------------------------------------------------------- free
    _arena(
        "free-releases-reservation",
        "`free` releases exactly the reservation [R, R + RESERVED_SIZE).",
        "expect_calls",
        f"{_ZOO}:UnmapContainerSize",
        r"^free: OS calls",
    ),
    _arena(
        "double-free-raises",
        "A second `free` raises `DoubleFree`.",
        "double_free",
        f"{_BREAKERS}:DoubleFreeIgnored",
        r"a second free was not refused",
    ),
    _arena(
        "double-free-no-os-call",
        "A second `free` makes no OS call.",
        # The OS may hand the freed range to another live arena at once: then the fence
        # lets the call through and the comparison with the model's "no call" catches it.
        (FENCE, "expect_calls"),
        f"{_BREAKERS}:SecondFreeReleasesAgain",
        r"^release\(.*\) reaches outside the live reservations|model predicts \[\]",
    ),
    _arena(
        "use-after-free-raises",
        "Every method but `free` raises `UseAfterFree` on a freed arena.",
        "use_after_free",
        f"{_BREAKERS}:ResetAfterFreeAllowed",
        r"reset after free was not refused",
    ),
    _arena(
        "use-after-free-accessors",
        "`start`, `cursor` and `committed_bytes` raise `UseAfterFree` on a freed arena.",
        "use_after_free",
        f"{_BREAKERS}:CursorAfterFreeAllowed",
        r"cursor after free was not refused",
    ),
    _arena(
        "use-after-free-no-os-call",
        "A refused use after free makes no OS call.",
        # The OS may hand the freed range to another live arena at once: then the fence
        # lets the call through and the comparison with the model's "no call" catches it.
        (FENCE, "expect_calls"),
        f"{_BREAKERS}:UseAfterFreeCallsOS",
        r"^commit\(.*\) reaches outside the live reservations|model predicts \[\]",
    ),
    # -------------------------------------------------------------- memory I/O
    _arena(
        "read",
        "`read` returns the bytes in memory.",
        "read_back",
        f"{_BREAKERS}:ReadReturnsZeros",
        r"read at \+\d+ returned other bytes",
    ),
    _arena(
        "write",
        "`write` stores the bytes in memory.",
        "check_allocations",
        f"{_BREAKERS}:WriteDropped",
        r"bytes at \+\d+ were overwritten",
    ),
    _arena(
        "read-out-of-bounds",
        "A read outside [P, F) raises `OutOfBounds`.",
        "bad_access",
        f"{_BREAKERS}:ReadBelowCursor",
        r"^read below P was not refused$",
    ),
    _arena(
        "write-out-of-bounds",
        "A write outside [P, F) (the footer included) raises `OutOfBounds`.",
        "bad_access",
        f"{_BREAKERS}:WriteIntoFooter",
        r"^write (at|across) F was not refused$",
    ),
    _arena(
        "io-argument-type",
        "A non-`int` address or length, or non-bytes data, raises `InvalidArgumentType`.",
        "bad_access",
        f"{_BREAKERS}:MistypedAddressOutOfBounds",
        r"str addr raised OutOfBounds, not InvalidArgumentType",
    ),
    _arena(
        "io-write-committed",
        "Writes through the backend stay inside memory the arena committed.",
        FENCE,
        f"{_BROKEN}:WritesUncommittedThroughBackend",
        r"^write\(0x[0-9a-f]+, 0x1\) reaches outside",
    ),
    _arena(
        "io-read-committed",
        "Reads through the backend stay inside memory the arena committed.",
        FENCE,
        f"{_BROKEN}:ReadsUncommittedThroughBackend",
        r"^read\(0x[0-9a-f]+, 0x1\) reaches outside",
    ),
    _arena(
        "os-calls-own-reservation",
        "Every commit, decommit and release lies inside the arena's own live reservation.",
        FENCE,
        f"{_BREAKERS}:CommitsPastReservation",
        r"^commit\(.*\) reaches outside the live reservations",
    ),
    # -------------------------------------------------------------------- pool
    _pool(
        "pool-windows-size",
        "A Windows pool creates up to thread_count + 1 arenas and gives the last back when it "
        "has two or more.",
        "check_creation",
        f"{_BREAKERS}:SpareArenaKept",
        r"model predicts \d+ arenas, got \d+ arenas",
        "windows",
    ),
    _pool(
        "pool-posix-failure",
        "A POSIX pool whose creation fails raises `PoolCreationFailed` and releases every "
        "arena it created.",
        "expect_calls",
        f"{_BREAKERS}:PartialPoolLeaked",
        r"with creation \d+ failing: OS calls .* model predicts",
        "posix",
    ),
    _pool(
        "pool-metadata",
        "Each arena's metadata at C + ACTIVE_SIZE holds the transfer metadata, its `u32` id "
        "and `is_double_owned`.",
        "check_metadata",
        f"{_BREAKERS}:WrongIdWritten",
        r"the metadata at C \+ ACTIVE_SIZE is",
        "posix",
    ),
    _pool(
        "pool-get-lifo",
        "`get` takes the arena added last (the pool is a stack).",
        "check_get",
        f"{_BREAKERS}:GetTakesOldest",
        r"model predicts arena\d+",
        "posix",
    ),
    _pool(
        "pool-empty-posix",
        "A POSIX `get` on an empty pool raises `PoolEmpty`.",
        "check_get",
        f"{_BREAKERS}:EmptyGetHandsOutHeld",
        r"on an empty pool: .*PoolEmpty expected",
        "posix",
    ),
    _pool(
        "pool-empty-windows-waits",
        "A Windows `get` on an empty pool waits until another thread's `add`.",
        "get_for",
        f"{_BREAKERS}:EmptyGetDoesNotWait",
        r"on an empty pool returned .* instead of waiting",
        "windows",
    ),
    _pool(
        "pool-wakeup",
        "`add` wakes one waiter, which takes the arena just added.",
        "await_service",
        f"{_POOLS}:LostWakeup",
        r"lost wake-up",
        "windows",
    ),
    _pool(
        "pool-closed",
        "A `get` waiting when the pool is closed raises `PoolClosed`.",
        "teardown",
        f"{_BREAKERS}:ClosedGetRaisesEmpty",
        r"get ended with PoolEmpty.*PoolClosed expected",
        "windows",
    ),
    _pool(
        "pool-add-resets",
        "`add` resets the cursor to C + ACTIVE_SIZE, below the metadata (not to F).",
        "add",
        f"{_POOLS}:ResetToFooter",
        r"would overwrite the metadata",
        "posix",
    ),
    _pool(
        "pool-add-twice",
        "`add` of an arena the pool did not hand out raises `PoolMisuse`.",
        "add",
        f"{_BREAKERS}:SecondAddAccepted",
        r"a second add of arena\d+ was not refused",
        "posix",
    ),
    _pool(
        "pool-close-order",
        "`close` lets go of the pool's arenas top first.",
        "creation_failure",
        f"{_BREAKERS}:CloseBottomFirst",
        r"close let go of .*top first expected",
        "posix",
    ),
    _pool(
        "pool-share-once",
        "`share` of an arena already shared raises `PoolMisuse`.",
        "share",
        f"{_BREAKERS}:ShareTwiceAccepted",
        r"share\(t\d+\): shared, model says already",
        "posix",
    ),
    _pool(
        "pool-share-transfer",
        "`share` writes the transfer metadata (where the data begins) before setting the flag.",
        "check_metadata",
        f"{_BREAKERS}:ShareSkipsTransfer",
        r"the metadata at C \+ ACTIVE_SIZE is",
        "posix",
    ),
    _pool(
        "pool-release-shared-once",
        "A shared arena's memory goes back to the OS once, after both owners let go "
        "(`add` keeps `is_double_owned`).",
        ("check_metadata", "check_release"),
        f"{_POOLS}:ResetClearsOwnership",
        r"is_double_owned|released although the other owner",
        "posix",
    ),
    _pool(
        "pool-engine-release-refused",
        "The engine's release of memory it does not own raises `ReleaseRefused`.",
        "check_release",
        f"{_BREAKERS}:EngineReleaseUnchecked",
        r"released although the other owner",
        "posix",
    ),
    _pool(
        "pool-retire-twice",
        "A second `retire` of the same arena raises `ReleaseRefused` with no OS call.",
        "check_release",
        f"{_BREAKERS}:SecondRetireKept",
        r"again: kept, model says refused",
        "posix",
    ),
)
