"""Where Wine's kernel32 may answer differently from the Windows model, and on what authority.

The Windows model predicts real Windows and stays that way: it is never loosened to fit an
emulation. Wine differs from it in known ways; each is one row below, naming the call and
situation, what Windows does (the model's prediction), what Wine does instead, the Wine
version it was measured on, and the source of both. Wine is a property of the kernel32
answering, not of a backend's name: the rows apply wherever that kernel32 says it is Wine's
(ntdll exports ``wine_get_version``), which is ``win32-wine`` and ``win32-native`` run by
Windows Python under Wine alike, and nowhere else. The VM machine consults this table only
after a comparison has failed, and accepts the difference only when a row covers the call,
the prediction and the answer exactly; anything else fails.

"Exactly" means the row says precisely what the backend answers in place of the model:

* ``Fails(error)``: the same failure with another error code;
* ``AsWindowsWith(argument, value)``: what the model answers for the same call with one
  argument changed (the machine evaluates that on a copy of the model, and adopts the copy
  when the row applies, so the model goes on holding what the backend did);
* ``RegionCutAtProtection()``: a VirtualQuery of reserved pages whose RegionSize ends where
  the protection the pages were last given changes (the machine tracks that protection).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from arenacheck.model.win_constants import (
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    PAGE_EXECUTE,
    PAGE_EXECUTE_WRITECOPY,
    PAGE_GUARD,
    PAGE_NOACCESS,
    PAGE_NOCACHE,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PAGE_WRITECOMBINE,
    PAGE_WRITECOPY,
)
from arenacheck.model.win_vm import MemoryBasicInformation

# Situations: what the model says about the call's range, just before the call. The VM
# machine calls on memory outside its own allocations only once the OS, too, says it is free.
IN_FREE_MEMORY = "the page at the address is in no allocation"
IN_ALLOCATION = "the page at the address is in an allocation"
INSIDE_ONE_ALLOCATION = "the range lies inside one allocation"
NOT_INSIDE_ONE_ALLOCATION = "the range does not lie inside one allocation"
# VirtualProtect's calls tell this part of "inside one allocation" apart.
NOT_ALL_COMMITTED = "the range lies inside one allocation, not all of it committed"
NO_ADDRESS = "NULL address"
RESERVED_PROTECTIONS_DIFFER = (
    "reserved pages from the address on were last given different protections"
)
SITUATIONS = (
    IN_FREE_MEMORY,
    IN_ALLOCATION,
    INSIDE_ONE_ALLOCATION,
    NOT_INSIDE_ONE_ALLOCATION,
    NOT_ALL_COMMITTED,
    NO_ADDRESS,
    RESERVED_PROTECTIONS_DIFFER,
)
# The name of the fact a VirtualQuery call carries for RegionCutAtProtection: bytes from the
# page-rounded address to the first page last given another protection.
SAME_PROTECTION_RUN = "same_protection_run"


@dataclass(frozen=True)
class Answer:
    """A call's return value, last error (``None``: success, not looked at), and any fields."""

    value: int
    error: int | None
    info: MemoryBasicInformation | None = None

    def matches(self, expected: Answer) -> bool:
        """This answer is ``expected``; the last error counts only where a failure is expected."""
        return (
            self.value == expected.value
            and (expected.error is None or self.error == expected.error)
            and self.info == expected.info
        )

    def __str__(self) -> str:
        text = f"{self.value:#x}" + ("" if self.error is None else f" with error {self.error}")
        return text if self.info is None else f"{text}, {self.info}"


@dataclass(frozen=True)
class Call:
    """One call as the VM machine made it: the terms a row is matched on."""

    function: str
    situation: str
    arguments: tuple[tuple[str, int], ...]
    facts: tuple[tuple[str, int], ...] = ()

    def argument(self, name: str) -> int | None:
        return dict(self.arguments).get(name)

    def fact(self, name: str) -> int | None:
        return dict(self.facts).get(name)


@dataclass(frozen=True)
class Fails:
    """The backend fails the call with ``error`` instead."""

    error: int


@dataclass(frozen=True)
class AsWindowsWith:
    """The backend answers as Windows does for the same call with ``argument`` = ``value``."""

    argument: str
    value: int


@dataclass(frozen=True)
class RegionCutAtProtection:
    """VirtualQuery's RegionSize ends at the first page last given another protection."""


Rule = Fails | AsWindowsWith | RegionCutAtProtection
# Evaluates the model on a copy for a call with one argument changed (AsWindowsWith).
Counterfactual = Callable[[str, int], Answer]


@dataclass(frozen=True)
class Allowance:
    """One way in which Wine answers differently from Windows, and its source."""

    # The Wine version the row was measured on; it applies to whichever Wine is answering,
    # and the step's label names that one, so a newer Wine that needs no row shows as such.
    measured_on: str
    name: str
    function: str
    situations: frozenset[str]
    # Each named argument must take one of the listed values; arguments not named are free.
    arguments: tuple[tuple[str, frozenset[int]], ...]
    # What the model predicts in the rows' situations; None for VirtualQuery's fields, which
    # the situation pins down, and for an AsWindowsWith row whatever Windows answers.
    windows: Answer | None
    instead: Rule
    windows_does: str
    backend_does: str
    source: str

    def __post_init__(self) -> None:
        unknown = self.situations - set(SITUATIONS)
        if not self.situations or unknown:
            raise ValueError(f"{self.name}: situations {sorted(unknown) or 'missing'}")
        if isinstance(self.instead, RegionCutAtProtection) != (self.function == "VirtualQuery"):
            raise ValueError(f"{self.name}: RegionCutAtProtection is for VirtualQuery only")
        if self.windows is None and isinstance(self.instead, Fails):
            raise ValueError(f"{self.name}: says nothing of what Windows does")
        if self.windows is not None and (self.windows.value != 0 or self.windows.error is None):
            # A row excusing another error code stands on a refusal: only a refused call
            # leaves the address space alone on the Windows side. A row saying what Windows
            # does for a changed call (AsWindowsWith) may leave Windows' own answer open
            # (None): the model adopts the changed call's outcome, and so stays in step.
            raise ValueError(f"{self.name}: Windows must refuse the call with an error")
        if isinstance(self.instead, Fails) and self.windows == Answer(0, self.instead.error):
            raise ValueError(f"{self.name}: allows nothing")
        for text in (self.measured_on, self.windows_does, self.backend_does, self.source):
            if not text.strip():
                raise ValueError(f"{self.name}: a description or the source is empty")

    def covers(
        self,
        wine_version: str | None,
        call: Call,
        predicted: Answer,
        answered: Answer,
        counterfactual: Counterfactual | None = None,
    ) -> bool:
        """Whether this row excuses ``answered`` from a kernel32 of ``wine_version``
        (None: not Wine's) where the model predicted ``predicted``."""
        if wine_version is None or call.function != self.function:
            return False
        if call.situation not in self.situations:
            return False
        for name, allowed in self.arguments:
            value = call.argument(name)
            if value is None or value not in allowed:
                return False
        if self.windows is not None and predicted != self.windows:
            return False
        instead = expected_instead(self.instead, call, predicted, counterfactual)
        return instead is not None and answered.matches(instead)


def expected_instead(
    rule: Rule, call: Call, predicted: Answer, counterfactual: Counterfactual | None
) -> Answer | None:
    """What a row's rule says the backend answers; None when the rule cannot say."""
    if isinstance(rule, Fails):
        return Answer(0, rule.error)
    if isinstance(rule, AsWindowsWith):
        return None if counterfactual is None else counterfactual(rule.argument, rule.value)
    run = call.fact(SAME_PROTECTION_RUN)
    info = predicted.info
    if info is None or info.state != MEM_RESERVE or run is None:
        return None
    if not 0 < run < info.region_size or run % PAGE_SIZE:
        return None
    return dataclasses.replace(predicted, info=dataclasses.replace(info, region_size=run))


# The protections the VM machine passes that Windows refuses (docs/VM_SEMANTICS.md A.1 rows 2-3).
INVALID_PROTECTIONS = frozenset(
    {0, PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY, PAGE_READONLY | PAGE_EXECUTE}
)
WINE_MEASURED = "8.0"
_NOT_IN_A8 = (
    "Wine 8.0 (Debian's wine64): observed by this harness and not yet recorded in "
    "docs/VM_SEMANTICS.md A.8"
)

# The modifier combinations Memory Protection Constants forbids [D] that the VM machine
# passes to VirtualProtect: GUARD with NOACCESS, NOCACHE with GUARD, NOCACHE with
# WRITECOMBINE.
FORBIDDEN_MODIFIER_COMBINATIONS = frozenset(
    {
        PAGE_NOACCESS | PAGE_GUARD,
        PAGE_READWRITE | PAGE_GUARD | PAGE_NOCACHE,
        PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE,
    }
)
# The name a VirtualProtect counterfactual knows for "the new protection is not checked".
PROTECTION_CHECK = "protection_check"
# VirtualAlloc2's Call carries whether a LowestStartingAddress was given: the address
# itself is the machine's, and no row could list it.
LOWEST_GIVEN = "lowest_given"

ALLOWANCES: tuple[Allowance, ...] = (
    Allowance(
        measured_on=WINE_MEASURED,
        name="VirtualFree of free memory: 87, not 487",
        function="VirtualFree",
        situations=frozenset({IN_FREE_MEMORY}),
        arguments=(("free_type", frozenset({MEM_RELEASE, MEM_DECOMMIT})),),
        windows=Answer(0, ERROR_INVALID_ADDRESS),
        instead=Fails(ERROR_INVALID_PARAMETER),
        windows_does=(
            "VirtualFree with MEM_RELEASE or MEM_DECOMMIT at an address no allocation holds "
            "fails with 487 (STATUS_MEMORY_NOT_ALLOCATED)"
        ),
        backend_does=(
            "fails with 87: Wine finds no view there and answers STATUS_INVALID_PARAMETER, "
            "for memory already released and for the unused rest of a 64 KiB block alike"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.8: release or decommit of memory that was already released: "
            "87 under Wine, 487 on Windows [T]; A.2: MEM_RELEASE twice or on free memory, "
            "and MEM_DECOMMIT on free memory: 487 [T]. Measured by this harness under Wine 8.0"
        ),
    ),
    Allowance(
        measured_on=WINE_MEASURED,
        name="VirtualAlloc at an address checks flProtect after the range",
        function="VirtualAlloc",
        situations=frozenset({INSIDE_ONE_ALLOCATION, NOT_INSIDE_ONE_ALLOCATION}),
        arguments=(
            ("alloc_type", frozenset({MEM_COMMIT, MEM_RESET})),
            ("protect", INVALID_PROTECTIONS),
        ),
        windows=Answer(0, ERROR_INVALID_PARAMETER),
        instead=AsWindowsWith("protect", PAGE_NOACCESS),
        windows_does=(
            "VirtualAlloc with MEM_COMMIT or MEM_RESET at an address and an invalid flProtect "
            "fails with 87 before the range is looked at"
        ),
        backend_does=(
            "answers as Windows does for a valid flProtect: 487 when the range is not inside "
            "one allocation, and a MEM_RESET inside one allocation succeeds (Wine ignores "
            "flProtect for MEM_RESET; a MEM_COMMIT inside one allocation fails with 87, as "
            "on Windows)"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.1 rows 2-3: flProtect 0, PAGE_WRITECOPY, "
            "PAGE_EXECUTE_WRITECOPY and PAGE_READONLY|PAGE_EXECUTE -> 87 [T]; parameter rows "
            "1-5 come before the address rows 6-14 [R]; row 9: commit not inside one "
            "allocation -> 487 [D]; rows "
            "12-13: MEM_RESET inside one allocation succeeds [T], past its end 487 [T]. "
            + _NOT_IN_A8
        ),
    ),
    Allowance(
        measured_on=WINE_MEASURED,
        name="VirtualQuery splits reserved pages by their earlier protection",
        function="VirtualQuery",
        situations=frozenset({RESERVED_PROTECTIONS_DIFFER}),
        arguments=(),
        windows=None,
        instead=RegionCutAtProtection(),
        windows_does=(
            "VirtualQuery of reserved pages reports one region over every following reserved "
            "page of the allocation (State MEM_RESERVE, Protect 0)"
        ),
        backend_does=(
            "ends the region at the first page last committed (or reserved) with another "
            "protection: Wine keeps that protection in its page table after a decommit and "
            "compares it when it measures the region"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.3: RegionSize is the run of pages sharing State and Protect "
            "[T], Protect is 0 for reserved pages [T]; the coalescing rule: for reserved pages "
            "only State matters [D]. " + _NOT_IN_A8
        ),
    ),
    Allowance(
        measured_on=WINE_MEASURED,
        name="VirtualProtect outside one allocation: 87, not 487",
        function="VirtualProtect",
        situations=frozenset({NOT_INSIDE_ONE_ALLOCATION}),
        arguments=(("old_out", frozenset({1})),),
        windows=Answer(0, ERROR_INVALID_ADDRESS),
        instead=Fails(ERROR_INVALID_PARAMETER),
        windows_does=(
            "VirtualProtect of a range with a free page, or running past the end of its "
            "allocation, fails with 487: those pages are not committed pages of one allocation"
        ),
        backend_does=(
            "fails with 87: Wine finds no single view holding the range and answers "
            "STATUS_INVALID_PARAMETER before it looks at the pages"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.1 notes: VirtualProtect fails with 487 if any page in the "
            "range is not committed [T]; A.7 3 and 5 [T]; VirtualProtect: all pages must lie "
            "in one reserved region [D]. A.8: measured under Wine 8.0"
        ),
    ),
    Allowance(
        measured_on=WINE_MEASURED,
        name="VirtualProtect checks the new protection after the pages",
        function="VirtualProtect",
        situations=frozenset({NOT_ALL_COMMITTED}),
        arguments=(("protect", INVALID_PROTECTIONS), ("old_out", frozenset({1}))),
        windows=Answer(0, ERROR_INVALID_PARAMETER),
        instead=AsWindowsWith("protect", PAGE_NOACCESS),
        windows_does=(
            "VirtualProtect with an invalid new protection fails with 87 before the pages "
            "are looked at"
        ),
        backend_does=(
            "answers as Windows does for a valid protection where pages of the range are not "
            "committed (487); on committed pages it fails with 87, as on Windows"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.1 notes: invalid protection -> 87, not committed -> 487 "
            "[T]; A.7 12 and 19 [T]. A.8: measured under Wine 8.0"
        ),
    ),
    Allowance(
        measured_on=WINE_MEASURED,
        name="VirtualProtect takes modifier combinations the documentation forbids",
        function="VirtualProtect",
        situations=frozenset({INSIDE_ONE_ALLOCATION, NOT_ALL_COMMITTED}),
        arguments=(("protect", FORBIDDEN_MODIFIER_COMBINATIONS), ("old_out", frozenset({1}))),
        windows=Answer(0, ERROR_INVALID_PARAMETER),
        instead=AsWindowsWith(PROTECTION_CHECK, 0),
        windows_does=(
            "VirtualProtect with PAGE_GUARD and PAGE_NOACCESS, PAGE_NOCACHE with PAGE_GUARD, "
            "or PAGE_NOCACHE with PAGE_WRITECOMBINE fails with 87"
        ),
        backend_does=(
            "carries the call out as Windows does for a valid protection: 487 where pages "
            "are not committed, else the pages take the protection with the allocation's "
            "cache attribute in place of the argument's (0x101 stays 0x101, 0x304 becomes "
            "0x104, 0x604 becomes 0x4) and the old protection is written"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.1 notes: the modifier rules [D Memory Protection "
            "Constants]; the cache attribute follows the allocation [T]. A.8: measured under "
            "Wine 8.0 on committed and reserved pages of PAGE_NOACCESS, PAGE_READWRITE and "
            "PAGE_READWRITE|PAGE_NOCACHE allocations"
        ),
    ),
    Allowance(
        measured_on=WINE_MEASURED,
        name="VirtualAlloc2 ignores LowestStartingAddress",
        function="VirtualAlloc2",
        situations=frozenset({NO_ADDRESS}),
        arguments=((LOWEST_GIVEN, frozenset({1})),),
        windows=None,
        instead=AsWindowsWith("lowest", 0),
        windows_does=(
            "VirtualAlloc2(NULL, ...) with MEM_ADDRESS_REQUIREMENTS places the reservation at "
            "or above LowestStartingAddress, and refuses with 87 a LowestStartingAddress that "
            "is not 64 KiB aligned or lies above HighestEndingAddress"
        ),
        backend_does=(
            "answers as Windows does for LowestStartingAddress NULL: the base may lie below "
            "it, and an unaligned one or one above HighestEndingAddress is accepted; "
            "HighestEndingAddress and Alignment are honoured"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.6: the window and its 87s [T] (Wine's "
            "test_NtAllocateVirtualMemoryEx_address_requirements) [D MEM_ADDRESS_REQUIREMENTS]; "
            "A.8: Wine 8.0 ignores LowestStartingAddress (measured: 64 KiB asked for in a "
            "released window at 0x7fffffcb0000 came back at 0x10a0000)"
        ),
    ),
)


@dataclass(frozen=True)
class AbortingShape:
    """A call shape that aborts Wine's whole process: never made where Wine answers.

    Unlike an Allowance, no answer is excused: the call is not made, so nothing of it is
    compared. Windows' behaviour for the shape stays the model's, checked on Windows and by
    the stand-in; under Wine the VM machine labels the step with the row and the Wine
    backend refuses to send it (``arenacheck.backends.wine_kernel32.WineWouldAbort``).
    """

    measured_on: str
    name: str
    function: str
    # The shape: at least this many bytes, on at least this alignment.
    min_size: int
    min_alignment: int
    windows_does: str
    backend_does: str
    source: str

    def __post_init__(self) -> None:
        if self.min_size <= 0 or self.min_alignment <= 0:
            raise ValueError(f"{self.name}: the shape must be bounded below")
        for text in (self.measured_on, self.windows_does, self.backend_does, self.source):
            if not text.strip():
                raise ValueError(f"{self.name}: a description or the source is empty")

    def covers(self, wine_version: str | None, size: int, alignment: int) -> bool:
        # The size as reserved: rounded up to pages.
        reserved = -(-size // PAGE_SIZE) * PAGE_SIZE
        return (
            wine_version is not None
            and reserved >= self.min_size
            and alignment >= self.min_alignment
        )


ABORTING_SHAPES: tuple[AbortingShape, ...] = (
    AbortingShape(
        measured_on=WINE_MEASURED,
        name="VirtualAlloc2 of a large reservation on a 4 GiB alignment aborts Wine",
        function="VirtualAlloc2",
        # Measured, one throwaway server per shape: on 4 GiB, 0x68400000 to 2 GiB abort,
        # 0x68000000, 1.5 GiB and 1 GiB are reserved as on Windows; on 8 GiB 0x6a000000
        # and 2 GiB abort; on 2 GiB, 2 GiB and 3 GiB are reserved. The bound keeps 68 MiB
        # below the smallest abort, since where Wine's reserved areas lie may shift it.
        min_size=0x64000000,
        min_alignment=1 << 32,
        windows_does=(
            "VirtualAlloc2(NULL, NULL, size, MEM_RESERVE, PAGE_NOACCESS, {AddressRequirements, "
            "Alignment}) with a power-of-two Alignment of at least 64 KiB reserves size bytes "
            "on an Alignment boundary"
        ),
        backend_does=(
            "ntdll aborts the whole process (create_view: Assertion 'view->protect & "
            "VPROT_SYSTEM' failed): the aligned view lands on one Wine keeps in its reserved "
            "areas"
        ),
        source=(
            "docs/VM_SEMANTICS.md A.6: Alignment must be a power of two of at least 64 KiB, "
            "and any such passes validation [T]; the 2 GiB-on-4 GiB reservation [U]; A.8: "
            "VirtualAlloc2 of about 1.6 GiB or more on a 4 GiB Alignment aborts the Wine "
            "process. Measured in throwaway server processes under Wine 8.0 (stateful_tests/"
            "tests/test_wine_alloc2_protect.py holds the shapes either side)"
        ),
    ),
)


def aborting_shape(wine_version: str | None, size: int, alignment: int) -> AbortingShape | None:
    """The row saying a VirtualAlloc2 of ``size`` on ``alignment`` aborts this Wine, if any."""
    for row in ABORTING_SHAPES:
        if row.covers(wine_version, size, alignment):
            return row
    return None


def rows_for(wine_version: str | None) -> tuple[Allowance, ...]:
    """The rows that apply to a kernel32 of ``wine_version``: all of them under Wine, none
    on Windows."""
    return ALLOWANCES if wine_version is not None else ()


def allowance_for(
    wine_version: str | None,
    call: Call,
    predicted: Answer,
    answered: Answer,
    counterfactual: Counterfactual | None = None,
) -> Allowance | None:
    """The row excusing ``answered`` where the model predicted ``predicted``, if any."""
    for row in ALLOWANCES:
        if row.covers(wine_version, call, predicted, answered, counterfactual):
            return row
    return None


def kernel_name(wine_version: str | None) -> str:
    """How a step's label and a divergence name the kernel32 that answered."""
    return "Windows" if wine_version is None else f"Wine {wine_version}"


def allowance_label(wine_version: str | None, row: Allowance) -> str:
    """The label a step excused by ``row`` carries: the Wine that answered, and the row."""
    return f"{kernel_name(wine_version)} allowance: {row.name}"


def aborting_label(wine_version: str | None, row: AbortingShape) -> str:
    """How a step the machine did not make, for ``row``, is labelled."""
    return f"{kernel_name(wine_version)} allowance: {row.name}: call not made"
