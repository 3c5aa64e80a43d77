"""The Wine rows for VirtualAlloc2's window and VirtualProtect, and Wine's aborting shape.

Each row excuses exactly the answer it names and nothing near it; where a row says Wine
does what Windows does for a changed call, the VM machine's model holds that call's outcome
afterwards. The shape that aborts Wine is never sent to it, and only where Wine answers.
The tests against a real Wine pin each measured fact a row stands on, naming the row.
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
from collections.abc import Iterator

import pytest
from arenacheck.backends import wine_allowances
from arenacheck.backends.registry import WIN32_EMULATED, open_backend, standin_installed
from arenacheck.backends.wine_allowances import (
    ABORTING_SHAPES,
    ALLOWANCES,
    FORBIDDEN_MODIFIER_COMBINATIONS,
    INSIDE_ONE_ALLOCATION,
    INVALID_PROTECTIONS,
    LOWEST_GIVEN,
    NO_ADDRESS,
    NOT_ALL_COMMITTED,
    NOT_INSIDE_ONE_ALLOCATION,
    PROTECTION_CHECK,
    AbortingShape,
    Allowance,
    Answer,
    AsWindowsWith,
    Call,
    Counterfactual,
    Fails,
    aborting_label,
    aborting_shape,
    allowance_label,
)
from arenacheck.backends.wine_kernel32 import (
    OP_GET_SYSTEM_INFO,
    OP_VIRTUAL_ALLOC2,
    OP_WINE_VERSION,
    REQUEST_TIMEOUT,
    WineBackend,
    WineKernel32,
    WineServer,
    WineWouldAbort,
)
from arenacheck.impl.win_kernel32 import (
    DWORD,
    SYSTEM_INFO,
    AddressRequirementsParameter,
)
from arenacheck.machines import labels
from arenacheck.machines.oracle import Divergence
from arenacheck.machines.registry import vm_machine_for
from arenacheck.machines.vm_shapes import Length, Offset, Region
from arenacheck.machines.vm_windows import (
    PROTECT_CHOICES,
    WindowsVMMachine,
    alloc2_call,
    judge,
    protect_situation,
)
from arenacheck.machines.vm_windows import predict_alloc2 as machine_prediction
from arenacheck.model.win_constants import (
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER,
    MEM_COMMIT,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_TOP_DOWN,
    PAGE_GUARD,
    PAGE_NOACCESS,
    PAGE_NOCACHE,
    PAGE_READWRITE,
    PAGE_WRITECOMBINE,
)
from arenacheck.model.win_vm import (
    AddressRequirements,
    ExtendedParameter,
    WindowsVM,
    WinResult,
    valid_protection,
)

# The Wine version a kernel32 reports in the tests without Wine (any version applies rows).
WINE = "8.0"
GIB = 1 << 30
GRANULE = 0x10000
SENTINEL = 0xA5A5A5A5
# A window high in user space, for the tests without Wine.
WINDOW = 0x7FFF_0000_0000
BELOW = 0x10A_0000

IGNORED_LOWEST = "VirtualAlloc2 ignores LowestStartingAddress"
PROTECT_OUTSIDE = "VirtualProtect outside one allocation: 87, not 487"
PROTECTION_AFTER_PAGES = "VirtualProtect checks the new protection after the pages"
FORBIDDEN_TAKEN = "VirtualProtect takes modifier combinations the documentation forbids"
ABORTING = "VirtualAlloc2 of a large reservation on a 4 GiB alignment aborts Wine"

# The forbidden combinations by name, and the page protection Wine gives each on a
# PAGE_READWRITE and on a PAGE_READWRITE | PAGE_NOCACHE allocation (measured, Wine 8.0).
GUARD_NOACCESS = PAGE_NOACCESS | PAGE_GUARD
GUARD_NOCACHE = PAGE_READWRITE | PAGE_GUARD | PAGE_NOCACHE
NOCACHE_WRITECOMBINE = PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE
RW_NOCACHE = PAGE_READWRITE | PAGE_NOCACHE
WINE_APPLIES = [
    (PAGE_READWRITE, GUARD_NOACCESS, 0x101),
    (PAGE_READWRITE, GUARD_NOCACHE, 0x104),
    (PAGE_READWRITE, NOCACHE_WRITECOMBINE, 0x4),
    (RW_NOCACHE, GUARD_NOACCESS, 0x301),
    (RW_NOCACHE, NOCACHE_WRITECOMBINE, 0x204),
]


def row_named(name: str) -> Allowance:
    rows = [row for row in ALLOWANCES if row.name == name]
    assert len(rows) == 1, f"{name!r}: {len(rows)} rows"
    return rows[0]


def shape_named(name: str) -> AbortingShape:
    rows = [row for row in ABORTING_SHAPES if row.name == name]
    assert len(rows) == 1, f"{name!r}: {len(rows)} shapes"
    return rows[0]


# ------------------------------------------------------------- the model, as the machine


def null_alloc2_call(size: int, kind: int, r: AddressRequirements) -> Call:
    """VirtualAlloc2(NULL, ...) as the machine describes it."""
    return alloc2_call(NO_ADDRESS, size, kind, r)


def predict_alloc2(model: WindowsVM, size: int, kind: int, r: AddressRequirements) -> Answer:
    params = ExtendedParameter.requiring(r)
    result = model.virtual_alloc2(0, size, kind, PAGE_READWRITE, params, 1)
    return Answer(result.value, result.error)


def alloc2_counterfactual(
    model: WindowsVM, size: int, kind: int, r: AddressRequirements, placed: int
) -> Counterfactual:
    """The model's VirtualAlloc2 with one requirement changed, granting ``placed`` where it
    fits the changed requirements (the machine's ``alloc2_counterfactual``)."""

    def evaluate(argument: str, value: int) -> Answer:
        changed = dataclasses.replace(r, **{argument: value})
        result = machine_prediction(copy.deepcopy(model), 0, size, kind, changed, placed)
        return Answer(result.value, result.error)

    return evaluate


def protect_call(model: WindowsVM, addr: int, size: int, protect: int, old_out: bool) -> Call:
    """VirtualProtect as the machine describes it."""
    args = (("size", size), ("protect", protect), ("old_out", int(old_out)))
    return Call("VirtualProtect", protect_situation(model, addr, size), args)


def protect_counterfactual(
    model: WindowsVM, addr: int, size: int, protect: int, adopted: list[WindowsVM]
) -> Counterfactual:
    """The model's VirtualProtect with the protection or its check changed, on a copy;
    each copy is appended to ``adopted`` (the machine's ``protect_counterfactual``)."""

    def evaluate(argument: str, value: int) -> Answer:
        scratch = copy.deepcopy(model)
        if argument == "protect":
            result = scratch.virtual_protect(addr, size, value, True)
        else:
            assert argument == PROTECTION_CHECK, argument
            result = scratch.virtual_protect(addr, size, protect, True, bool(value))
        adopted.append(scratch)
        return Answer(result.value, result.error)

    return evaluate


def model_with(kind: int, protect: int, base: int = WINDOW) -> WindowsVM:
    model = WindowsVM()
    assert model.virtual_alloc(0, GRANULE, kind, protect, chosen_base=base) == WinResult(base)
    return model


def predict_protect(model: WindowsVM, addr: int, size: int, protect: int) -> Answer:
    result = copy.deepcopy(model).virtual_protect(addr, size, protect, True)
    return Answer(result.value, result.error)


# ----------------------------------------------------------------------- the rows


def test_the_new_rows_say_what_they_excuse() -> None:
    """Each new row is in the table once, for its function and situation, with its rule."""
    lowest = row_named(IGNORED_LOWEST)
    assert (lowest.function, lowest.situations) == ("VirtualAlloc2", frozenset({NO_ADDRESS}))
    assert lowest.arguments == ((LOWEST_GIVEN, frozenset({1})),)
    assert lowest.windows is None and lowest.instead == AsWindowsWith("lowest", 0)
    outside = row_named(PROTECT_OUTSIDE)
    assert outside.situations == {NOT_INSIDE_ONE_ALLOCATION}
    assert outside.windows == Answer(0, ERROR_INVALID_ADDRESS)
    assert outside.instead == Fails(ERROR_INVALID_PARAMETER)
    after = row_named(PROTECTION_AFTER_PAGES)
    assert dict(after.arguments)["protect"] == INVALID_PROTECTIONS
    assert after.instead == AsWindowsWith("protect", PAGE_NOACCESS)
    taken = row_named(FORBIDDEN_TAKEN)
    assert dict(taken.arguments)["protect"] == FORBIDDEN_MODIFIER_COMBINATIONS
    assert taken.instead == AsWindowsWith(PROTECTION_CHECK, 0)
    for row in (outside, after, taken):
        assert row.function == "VirtualProtect" and dict(row.arguments)["old_out"] == {1}
    assert after.situations == {NOT_ALL_COMMITTED}
    assert taken.situations == {INSIDE_ONE_ALLOCATION, NOT_ALL_COMMITTED}


def test_the_forbidden_combinations_are_ones_the_machine_draws_and_windows_refuses() -> None:
    """Every listed combination is one the protect rule passes, and one the model refuses;
    none is also an invalid protection, so no call meets two VirtualProtect rows."""
    drawn = {GUARD_NOACCESS, GUARD_NOCACHE, NOCACHE_WRITECOMBINE}
    assert drawn == FORBIDDEN_MODIFIER_COMBINATIONS
    for protect in FORBIDDEN_MODIFIER_COMBINATIONS | INVALID_PROTECTIONS:
        assert protect in PROTECT_CHOICES, f"{protect:#x} is never drawn"
        assert not valid_protection(protect), f"{protect:#x} is valid on Windows"
    assert not FORBIDDEN_MODIFIER_COMBINATIONS & INVALID_PROTECTIONS


def as_windows_with_row(**change: object) -> Allowance:
    fields: dict[str, object] = {
        "measured_on": WINE,
        "name": "example",
        "function": "VirtualAlloc2",
        "situations": frozenset({NO_ADDRESS}),
        "arguments": ((LOWEST_GIVEN, frozenset({1})),),
        "windows": None,
        "instead": AsWindowsWith("lowest", 0),
        "windows_does": "places at or above Lowest",
        "backend_does": "ignores Lowest",
        "source": "docs/VM_SEMANTICS.md A.6 [T]",
    }
    fields.update(change)
    return Allowance(**fields)  # type: ignore[arg-type]


def test_windows_may_be_left_open_only_by_a_row_that_names_the_changed_call() -> None:
    """``windows=None``: allowed where the rule is AsWindowsWith (the model adopts the
    changed call), refused where it is Fails (another error code stands on a refusal)."""
    assert as_windows_with_row().windows is None
    with pytest.raises(ValueError, match="says nothing"):
        as_windows_with_row(instead=Fails(ERROR_INVALID_PARAMETER))
    with pytest.raises(ValueError, match="must refuse"):
        as_windows_with_row(windows=Answer(WINDOW, None))


# ------------------------------------------------------------------ ignored Lowest


def a_window() -> AddressRequirements:
    return AddressRequirements(WINDOW, WINDOW + 0xFFFFF, 0)


def test_a_base_below_lowest_is_excused_as_the_call_without_lowest() -> None:
    """Wine's base below LowestStartingAddress: what the model answers with Lowest NULL."""
    model, r = WindowsVM(), a_window()
    predicted = predict_alloc2(model, GRANULE, MEM_RESERVE, r)
    assert predicted == Answer(WINDOW, None), "Windows: the window's lowest fit"
    counterfactual = alloc2_counterfactual(model, GRANULE, MEM_RESERVE, r, BELOW)
    answered = Answer(BELOW, SENTINEL)
    call = null_alloc2_call(GRANULE, MEM_RESERVE, r)
    row = judge(WIN32_EMULATED, WINE, call, "window", answered, predicted, counterfactual)
    assert row is row_named(IGNORED_LOWEST)
    with pytest.raises(Divergence, match="kernel32 of Windows"):
        judge(WIN32_EMULATED, None, call, "window", answered, predicted, counterfactual)
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, call, "window", answered, predicted, None)


@pytest.mark.parametrize(
    "placed, held",
    [
        (BELOW + 0x1000, None),  # not on a 64 KiB boundary
        (WINDOW + 0x100000, None),  # above HighestEndingAddress
        (BELOW, BELOW),  # on memory the model holds
    ],
)
def test_a_base_the_call_without_lowest_could_not_give_is_no_allowance(
    placed: int, held: int | None
) -> None:
    """Only Lowest is ignored: a base Alignment, Highest or the model's allocations forbid
    still fails."""
    model, r = WindowsVM(), a_window()
    if held is not None:
        model.virtual_alloc(0, GRANULE, MEM_RESERVE, PAGE_NOACCESS, chosen_base=held)
    predicted = predict_alloc2(model, GRANULE, MEM_RESERVE, r)
    counterfactual = alloc2_counterfactual(model, GRANULE, MEM_RESERVE, r, placed)
    call = null_alloc2_call(GRANULE, MEM_RESERVE, r)
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, call, "window", Answer(placed, 0), predicted, counterfactual)


def test_without_a_lowest_the_row_does_not_apply() -> None:
    """The row covers calls that give a Lowest: the same answer to a call without one fails."""
    model = WindowsVM()
    r = dataclasses.replace(a_window(), lowest=0)
    predicted = Answer(WINDOW, None)
    counterfactual = alloc2_counterfactual(model, GRANULE, MEM_RESERVE, r, BELOW)
    assert counterfactual("lowest", 0) == Answer(BELOW, None)
    call = null_alloc2_call(GRANULE, MEM_RESERVE, r)
    assert call.argument(LOWEST_GIVEN) == 0
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, call, "window", Answer(BELOW, 0), predicted, counterfactual)


def test_with_a_base_address_the_row_does_not_apply() -> None:
    """The row covers VirtualAlloc2(NULL, ...): with a base address (87 on Windows) the
    same placement is no allowance."""
    model, r = WindowsVM(), a_window()
    call = dataclasses.replace(
        null_alloc2_call(GRANULE, MEM_RESERVE, r), situation=NOT_INSIDE_ONE_ALLOCATION
    )
    counterfactual = alloc2_counterfactual(model, GRANULE, MEM_RESERVE, r, BELOW)
    assert counterfactual("lowest", 0) == Answer(BELOW, None)
    predicted = Answer(0, ERROR_INVALID_PARAMETER)
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, call, "window", Answer(BELOW, 0), predicted, counterfactual)


@pytest.mark.parametrize(
    "lowest", [WINDOW + 0x1000, WINDOW + 0x100000], ids=["unaligned", "above highest"]
)
def test_a_lowest_windows_refuses_is_excused_only_as_the_call_without_it(lowest: int) -> None:
    """Windows refuses an unaligned Lowest, or one above Highest, with 87; Wine's success is
    the call without Lowest, and another error is no allowance."""
    model = WindowsVM()
    r = AddressRequirements(lowest, WINDOW + 0xFFFFF, 0)
    predicted = predict_alloc2(model, GRANULE, MEM_RESERVE, r)
    assert predicted == Answer(0, ERROR_INVALID_PARAMETER)
    counterfactual = alloc2_counterfactual(model, GRANULE, MEM_RESERVE, r, BELOW)
    call = null_alloc2_call(GRANULE, MEM_RESERVE, r)
    row = judge(WIN32_EMULATED, WINE, call, "w", Answer(BELOW, 0), predicted, counterfactual)
    assert row is row_named(IGNORED_LOWEST)
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, call, "w", Answer(0, 8), predicted, counterfactual)


# ------------------------------------------------------------------ VirtualProtect


def test_protect_outside_one_allocation_is_excused_as_87_for_487_only() -> None:
    """87 for the 487 the model predicts where the range leaves its allocation; nothing for
    another error, another prediction, a NULL lpflOldProtect, a range inside one, or Windows."""
    model = model_with(MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    addr, size = WINDOW + 0xF000, 0x2000
    call = protect_call(model, addr, size, PAGE_READWRITE, True)
    assert call.situation == NOT_INSIDE_ONE_ALLOCATION
    predicted = predict_protect(model, addr, size, PAGE_READWRITE)
    assert predicted == Answer(0, ERROR_INVALID_ADDRESS)
    got = Answer(0, ERROR_INVALID_PARAMETER)
    assert judge(WIN32_EMULATED, WINE, call, "vp", got, predicted) is row_named(PROTECT_OUTSIDE)
    no_old = protect_call(model, addr, size, PAGE_READWRITE, False)
    inside = dataclasses.replace(call, situation=INSIDE_ONE_ALLOCATION)
    for c, p, a, version in [
        (call, predicted, Answer(0, 5), WINE),
        (call, Answer(0, ERROR_INVALID_PARAMETER), Answer(0, ERROR_INVALID_ADDRESS), WINE),
        (no_old, predicted, got, WINE),
        (inside, predicted, got, WINE),
        (call, predicted, got, None),
    ]:
        with pytest.raises(Divergence):
            judge(WIN32_EMULATED, version, c, "vp", a, p)


@pytest.mark.parametrize("protect", sorted(INVALID_PROTECTIONS))
def test_an_invalid_protection_on_reserved_pages_is_excused_as_487_only(protect: int) -> None:
    """On reserved pages Wine answers 487 (the pages first) where Windows says 87; on
    committed pages a 487 is no allowance."""
    reserved = model_with(MEM_RESERVE, PAGE_NOACCESS)
    predicted = predict_protect(reserved, WINDOW, 0x1000, protect)
    assert predicted == Answer(0, ERROR_INVALID_PARAMETER)
    adopted: list[WindowsVM] = []
    counterfactual = protect_counterfactual(reserved, WINDOW, 0x1000, protect, adopted)
    call = protect_call(reserved, WINDOW, 0x1000, protect, True)
    got = Answer(0, ERROR_INVALID_ADDRESS)
    row = judge(WIN32_EMULATED, WINE, call, "vp", got, predicted, counterfactual)
    assert row is row_named(PROTECTION_AFTER_PAGES)
    committed = model_with(MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    counterfactual = protect_counterfactual(committed, WINDOW, 0x1000, protect, adopted)
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, call, "vp", got, predicted, counterfactual)
    # Nor is a success on committed pages, which the changed call would give there.
    on_committed = protect_call(committed, WINDOW, 0x1000, protect, True)
    assert on_committed.situation == INSIDE_ONE_ALLOCATION
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, on_committed, "vp", Answer(1, None), predicted, counterfactual)


@pytest.mark.parametrize("alloc_protect, protect, applied", WINE_APPLIES)
def test_a_forbidden_combination_is_excused_as_the_unchecked_call(
    alloc_protect: int, protect: int, applied: int
) -> None:
    """Success where Windows says 87 is what Windows does without the check: the changed
    call's model holds the protection with the allocation's cache attribute."""
    model = model_with(MEM_RESERVE | MEM_COMMIT, alloc_protect)
    predicted = predict_protect(model, WINDOW, 0x1000, protect)
    assert predicted == Answer(0, ERROR_INVALID_PARAMETER)
    adopted: list[WindowsVM] = []
    counterfactual = protect_counterfactual(model, WINDOW, 0x1000, protect, adopted)
    call = protect_call(model, WINDOW, 0x1000, protect, True)
    row = judge(WIN32_EMULATED, WINE, call, "vp", Answer(1, SENTINEL), predicted, counterfactual)
    assert row is row_named(FORBIDDEN_TAKEN)
    page = adopted[-1].state_of(WINDOW)
    assert page is not None and page.protect == applied
    for answered, version in [
        (Answer(0, ERROR_INVALID_ADDRESS), WINE),  # committed pages: Wine takes it
        (Answer(1, SENTINEL), None),
    ]:
        with pytest.raises(Divergence):
            judge(WIN32_EMULATED, version, call, "vp", answered, predicted, counterfactual)


def test_a_combination_the_table_does_not_list_is_no_allowance() -> None:
    """GUARD with WRITECOMBINE is refused by the model too, but no row lists it."""
    protect = PAGE_READWRITE | PAGE_GUARD | PAGE_WRITECOMBINE
    assert protect not in FORBIDDEN_MODIFIER_COMBINATIONS | INVALID_PROTECTIONS
    model = model_with(MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    predicted = predict_protect(model, WINDOW, 0x1000, protect)
    assert predicted == Answer(0, ERROR_INVALID_PARAMETER)
    adopted: list[WindowsVM] = []
    counterfactual = protect_counterfactual(model, WINDOW, 0x1000, protect, adopted)
    call = protect_call(model, WINDOW, 0x1000, protect, True)
    with pytest.raises(Divergence, match="no allowance"):
        judge(WIN32_EMULATED, WINE, call, "vp", Answer(1, 0), predicted, counterfactual)
    assert adopted == [], "no row evaluated a counterfactual"


# ----------------------------------------------------------------- aborting shapes


@pytest.mark.parametrize(
    "wine_version, size, alignment, covered",
    [
        (WINE, 2 * GIB, 4 * GIB, True),
        (WINE, 6 * GIB, 4 * GIB, True),
        (WINE, 2 * GIB, 8 * GIB, True),
        (WINE, GIB + GIB // 2, 4 * GIB, False),  # measured: reserved as on Windows
        (WINE, 2 * GIB, 2 * GIB, False),
        (WINE, 3 * GIB, 2 * GIB, False),
        (WINE, GRANULE, 4 * GIB, False),
        (None, 2 * GIB, 4 * GIB, False),
        (None, 6 * GIB, 8 * GIB, False),
    ],
)
def test_the_aborting_shape_covers_its_measured_cases_and_only_under_wine(
    wine_version: str | None, size: int, alignment: int, covered: bool
) -> None:
    """At least 2 GiB on at least 4 GiB, where the kernel32 is Wine's."""
    row = aborting_shape(wine_version, size, alignment)
    assert (row is shape_named(ABORTING)) if covered else (row is None)


def test_the_measured_aborts_below_2_gib_are_covered_too() -> None:
    """Wine 8.0 aborts from 0x68400000 bytes on a 4 GiB alignment (0x68400000, 0x6c000000,
    0x70000000 and 2 GiB - 64 KiB measured; 0x68000000 and 0x60000000 survive), and the
    size counts as reserved, rounded up to pages."""
    for size in (0x68400000, 0x6C000000, 0x70000000, 2 * GIB - GRANULE, 2 * GIB - 1):
        assert aborting_shape(WINE, size, 4 * GIB) is not None, hex(size)
    assert aborting_shape(WINE, 0x6A000000, 8 * GIB) is not None
    assert aborting_shape(WINE, 0x60000000, 4 * GIB) is None


def test_an_aborting_shape_must_be_bounded_and_sourced() -> None:
    row = shape_named(ABORTING)
    assert row.function == "VirtualAlloc2" and "A.8" in row.source
    with pytest.raises(ValueError, match="bounded below"):
        dataclasses.replace(row, min_size=0)
    with pytest.raises(ValueError, match="bounded below"):
        dataclasses.replace(row, min_alignment=0)
    with pytest.raises(ValueError, match="source is empty"):
        dataclasses.replace(row, source=" ")


def test_a_call_not_made_is_labelled_apart_from_an_excused_one() -> None:
    row = shape_named(ABORTING)
    assert aborting_label(WINE, row) == f"Wine {WINE} allowance: {row.name}: call not made"
    assert {aborting_label(WINE, row)} & {allowance_label(WINE, r) for r in ALLOWANCES} == set()


class RecordingServer(WineServer):
    """A Wine server that is no process: it answers what WineKernel32 asks on construction
    and a VirtualAlloc2, and records every request."""

    def __init__(self, wine_version: str | None) -> None:  # no process: no super().__init__
        self.last_error = 0
        self.wine_version = wine_version
        self.requests: list[tuple[int, tuple[int, ...]]] = []

    def request(
        self,
        op: int,
        args: tuple[int, ...] = (),
        payload: bytes = b"",
        timeout: float = REQUEST_TIMEOUT,
    ) -> tuple[int, int, bytes]:
        self.requests.append((op, args))
        if op == OP_WINE_VERSION:
            if self.wine_version is None:
                return 0, 0, b""
            return 1, 0, self.wine_version.encode()
        if op == OP_GET_SYSTEM_INFO:
            si = SYSTEM_INFO()
            si.dwPageSize, si.dwAllocationGranularity = 0x1000, GRANULE
            si.lpMinimumApplicationAddress = 0x10000
            si.lpMaximumApplicationAddress = 0x7FFFFFFEFFFF
            return 0, 0, bytes(si)
        assert op == OP_VIRTUAL_ALLOC2, op
        return 8 * GIB, 0, b""

    def sent_alloc2(self) -> list[tuple[int, ...]]:
        return [args for op, args in self.requests if op == OP_VIRTUAL_ALLOC2]


def call_alloc2(k32: WineKernel32, size: int, alignment: int) -> int | None:
    param = AddressRequirementsParameter(alignment=alignment)
    return k32.VirtualAlloc2(None, None, size, MEM_RESERVE, PAGE_NOACCESS, ctypes.byref(param), 1)


def test_wine_kernel32_refuses_an_aborting_shape_without_sending_it() -> None:
    """The aborting shape raises WineWouldAbort and reaches no server; the shape below it,
    and the same shape to a kernel32 that is not Wine's, are sent."""
    server = RecordingServer(WINE)
    k32 = WineKernel32(server)
    assert k32.wine_version == WINE
    with pytest.raises(WineWouldAbort, match=ABORTING):
        call_alloc2(k32, 2 * GIB, 4 * GIB)
    assert server.sent_alloc2() == []
    assert call_alloc2(k32, 2 * GIB, 2 * GIB) == 8 * GIB
    assert server.sent_alloc2() == [(0, 2 * GIB, MEM_RESERVE, PAGE_NOACCESS)]
    not_wine = RecordingServer(None)
    assert WineKernel32(not_wine).wine_version is None
    assert call_alloc2(WineKernel32(not_wine), 2 * GIB, 4 * GIB) == 8 * GIB
    assert len(not_wine.sent_alloc2()) == 1


def test_the_wine_backend_falls_back_for_an_aborting_shape_without_sending_it() -> None:
    """reserve_aligned answers None for the shape (the arena then reserves and re-reserves)
    and sends VirtualAlloc2 for the shapes outside it."""
    server = RecordingServer(WINE)
    backend = WineBackend(WineKernel32(server))
    assert backend.reserve_aligned(2 * GIB, 4 * GIB) is None
    assert server.sent_alloc2() == []
    assert backend.reserve_aligned(2 * GIB, 2 * GIB) == 8 * GIB
    assert backend.reserve_aligned(GIB, 4 * GIB) == 8 * GIB
    assert [args[1] for args in server.sent_alloc2()] == [2 * GIB, GIB]


# ------------------------------------------------------------- through the machine


@pytest.fixture
def emulated_machine() -> Iterator[WindowsVMMachine]:
    with standin_installed():
        machine = vm_machine_for(WIN32_EMULATED, "small")()
        assert isinstance(machine, WindowsVMMachine)
        yield machine
        machine.teardown()


class CallMade(Exception):
    """The machine called VirtualAlloc2."""


def refuse_alloc2(*args: object) -> None:
    raise CallMade


@pytest.mark.parametrize("wine_version", [WINE, None])
def test_the_machine_does_not_make_an_aborting_call_where_wine_answers(
    emulated_machine: WindowsVMMachine, monkeypatch: pytest.MonkeyPatch, wine_version: str | None
) -> None:
    """reserve_aligned of 2 GiB on 4 GiB: under Wine no call and the step labelled with the
    shape; on Windows the call is made. 2 GiB on 2 GiB is made under Wine too."""
    machine = emulated_machine
    monkeypatch.setattr(machine.backend, "wine_version", wine_version)
    monkeypatch.setitem(machine.sizes, "reservation", 2 * GIB)
    monkeypatch.setattr(machine.k32, "VirtualAlloc2", refuse_alloc2)
    name = aborting_label(WINE, shape_named(ABORTING))
    before = labels.COUNTS[name]
    if wine_version is None:
        with pytest.raises(CallMade):
            machine.reserve_aligned(size="reservation", kind=MEM_RESERVE, alignment=4 * GIB)
        assert labels.COUNTS[name] == before
        return
    result = machine.reserve_aligned(size="reservation", kind=MEM_RESERVE, alignment=4 * GIB)
    assert tuple(result) == ()
    assert labels.COUNTS[name] == before + 1
    with pytest.raises(CallMade):
        machine.reserve_aligned(size="reservation", kind=MEM_RESERVE, alignment=2 * GIB)


def two_released_granules(machine: WindowsVMMachine) -> tuple[Region, Region]:
    """Two released granules, the lower first, both free in the OS."""
    regions = []
    for _ in range(2):
        region = machine.reserve(size="granule", kind=MEM_RESERVE, protect=PAGE_NOACCESS)
        assert isinstance(region, Region)
        regions.append(region)
    for region in regions:
        machine.release(region=region, offset=0)
        assert machine.range_is_available(region.base, region.end)
    lower, upper = sorted(regions, key=lambda r: r.base)
    return lower, upper


@pytest.mark.parametrize("wine_version", [WINE, None])
def test_the_machine_adopts_a_placement_below_lowest(
    emulated_machine: WindowsVMMachine, monkeypatch: pytest.MonkeyPatch, wine_version: str | None
) -> None:
    """A kernel32 answering a window over one released granule with a lower released one,
    as Wine does: under Wine the step passes by its row and the model holds the
    reservation at the base the kernel32 gave (handed back as such); on Windows it fails."""
    machine = emulated_machine
    lower, upper = two_released_granules(machine)
    monkeypatch.setattr(machine.backend, "wine_version", wine_version)
    real_alloc = machine.k32.VirtualAlloc

    def placed_below(
        process: object,
        address: object,
        size: int,
        kind: int,
        protect: int,
        params: object,
        count: object,
    ) -> int | None:
        base = real_alloc(lower.base, size, kind, protect)
        return None if base is None else int(base)

    monkeypatch.setattr(machine.k32, "VirtualAlloc2", placed_below)
    held: list[tuple[int, list[int]]] = []
    real_hand_back = machine.hand_back

    def hand_back(base: int) -> None:
        held.append((base, sorted(machine.model.allocations)))
        real_hand_back(base)

    monkeypatch.setattr(machine, "hand_back", hand_back)
    name = allowance_label(WINE, row_named(IGNORED_LOWEST))
    before = labels.COUNTS[name]
    window = {"lowest": "base", "highest": 1, "alignment": 0, "size": "page", "how": None}
    if wine_version is None:
        with pytest.raises(Divergence, match="kernel32 of Windows"):
            machine.reserve_in_window(region=upper, **window)
        assert labels.COUNTS[name] == before
        assert machine.backend.call(machine.k32.VirtualFree, lower.base, 0, MEM_RELEASE)[0]
        return
    machine.reserve_in_window(region=upper, **window)
    assert labels.COUNTS[name] == before + 1
    assert held == [(lower.base, [lower.base])]
    assert machine.model.allocations == {}
    assert all(machine.range_is_available(r.base, r.end) for r in (lower, upper))


def committed_granule(machine: WindowsVMMachine, kind: int = MEM_RESERVE | MEM_COMMIT) -> Region:
    region = machine.reserve(size="granule", kind=kind, protect=PAGE_READWRITE)
    assert isinstance(region, Region)
    return region


def protect_as_wine(machine: WindowsVMMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's kernel32 takes the forbidden combinations, as Wine's does: it carries
    the call out with the modifiers dropped (the old protection is what Wine writes)."""
    real = machine.k32.VirtualProtect

    def virtual_protect(address: int, size: int, protect: int, old: object) -> int:
        if protect in FORBIDDEN_MODIFIER_COMBINATIONS:
            protect &= ~(PAGE_GUARD | PAGE_NOCACHE | PAGE_WRITECOMBINE)
        return int(real(address, size, protect, old))

    monkeypatch.setattr(machine.k32, "VirtualProtect", virtual_protect)


@pytest.mark.parametrize("alloc_protect, protect, applied", WINE_APPLIES[:3])
def test_the_machine_adopts_a_forbidden_combination_as_wine_applies_it(
    emulated_machine: WindowsVMMachine,
    monkeypatch: pytest.MonkeyPatch,
    alloc_protect: int,
    protect: int,
    applied: int,
) -> None:
    """Under Wine the step passes by its row, and the model's page then holds the
    protection Wine gives it; on Windows the same answer fails."""
    machine = emulated_machine
    region = committed_granule(machine)
    assert alloc_protect == PAGE_READWRITE
    protect_as_wine(machine, monkeypatch)
    name = allowance_label(WINE, row_named(FORBIDDEN_TAKEN))
    before = labels.COUNTS[name]
    monkeypatch.setattr(machine.backend, "wine_version", WINE)
    page = {"length": Length(False, 0x1000), "old_out": True}
    machine.protect(region=region, protect=protect, offset=Offset(False, 0), **page)
    assert labels.COUNTS[name] == before + 1
    state = machine.model.state_of(region.base)
    assert state is not None and state.protect == applied
    assert machine.given_protect.get(region.base) == applied
    monkeypatch.setattr(machine.backend, "wine_version", None)
    with pytest.raises(Divergence, match="kernel32 of Windows"):
        machine.protect(region=region, protect=protect, offset=Offset(False, 0x1000), **page)
    assert labels.COUNTS[name] == before + 1


def test_the_machine_excuses_487_for_a_forbidden_combination_on_reserved_pages(
    emulated_machine: WindowsVMMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reserved pages: 487 for the model's 87, by the row, and the pages stay reserved."""
    machine = emulated_machine
    monkeypatch.setattr(machine.backend, "wine_version", WINE)
    region = committed_granule(machine, MEM_RESERVE)
    protect_as_wine(machine, monkeypatch)
    name = allowance_label(WINE, row_named(FORBIDDEN_TAKEN))
    before = labels.COUNTS[name]
    page = {"offset": Offset(False, 0), "length": Length(False, 0x1000), "old_out": True}
    machine.protect(region=region, protect=GUARD_NOACCESS, **page)
    assert labels.COUNTS[name] == before + 1
    state = machine.model.state_of(region.base)
    assert state is not None and (state.state, state.protect) == (MEM_RESERVE, 0)


# --------------------------------------------------------------------- real Wine


@pytest.fixture
def wine_backend(wine: str) -> WineBackend:
    backend = open_backend(wine)
    assert isinstance(backend, WineBackend)
    return backend


def model_of(backend: WineBackend) -> WindowsVM:
    return WindowsVM(
        page=backend.page,
        granularity=backend.granularity,
        min_address=backend.min_address,
        max_address=backend.max_address,
    )


def released_high_window(backend: WineBackend) -> int:
    """The base of 1 MiB reserved top-down and released: a free window high in user space."""
    k32 = backend.k32
    base, error = backend.call(k32.VirtualAlloc, None, 0x100000, MEM_RESERVE | MEM_TOP_DOWN, 1)
    assert base, error
    assert backend.call(k32.VirtualFree, base, 0, MEM_RELEASE)[0] == 1
    return base


def wine_alloc2(backend: WineBackend, size: int, kind: int, r: AddressRequirements) -> Answer:
    """VirtualAlloc2(NULL, NULL, size, kind, PAGE_READWRITE, {r}) in Wine; released again."""
    param = AddressRequirementsParameter(r.lowest, r.highest, r.alignment)
    k32 = backend.wine
    value, error = backend.call(
        k32.VirtualAlloc2, None, None, size, kind, PAGE_READWRITE, ctypes.byref(param), 1
    )
    if value:
        assert backend.call(k32.VirtualFree, value, 0, MEM_RELEASE)[0] == 1
    return Answer(value, error)


def test_wine_places_a_window_reservation_below_lowest(wine_backend: WineBackend) -> None:
    """Backs "VirtualAlloc2 ignores LowestStartingAddress": 64 KiB asked for in a free
    window high in user space comes back below it, where the same call without Lowest
    puts it; the row excuses exactly that."""
    base = released_high_window(wine_backend)
    r = AddressRequirements(base, base + 0xFFFFF, 0)
    got = wine_alloc2(wine_backend, GRANULE, MEM_RESERVE, r)
    assert wine_backend.min_address <= got.value < base and got.value % GRANULE == 0, got
    without = wine_alloc2(wine_backend, GRANULE, MEM_RESERVE, dataclasses.replace(r, lowest=0))
    assert without.value == got.value
    model = model_of(wine_backend)
    predicted = predict_alloc2(model, GRANULE, MEM_RESERVE, r)
    assert predicted == Answer(base, None)
    counterfactual = alloc2_counterfactual(model, GRANULE, MEM_RESERVE, r, got.value)
    call = null_alloc2_call(GRANULE, MEM_RESERVE, r)
    version = wine_backend.wine_version
    row = judge(wine_backend.name, version, call, "window", got, predicted, counterfactual)
    assert row is row_named(IGNORED_LOWEST)


def test_wine_honours_highest_top_down(wine_backend: WineBackend) -> None:
    """Backs "VirtualAlloc2 ignores LowestStartingAddress" (HighestEndingAddress is
    honoured): MEM_TOP_DOWN in the window gives its top granule, as the model predicts."""
    base = released_high_window(wine_backend)
    r = AddressRequirements(base, base + 0xFFFFF, 0)
    kind = MEM_RESERVE | MEM_TOP_DOWN
    got = wine_alloc2(wine_backend, GRANULE, kind, r)
    assert got.value == base + 0xF0000, got
    predicted = predict_alloc2(model_of(wine_backend), GRANULE, kind, r)
    call = null_alloc2_call(GRANULE, kind, r)
    assert judge(wine_backend.name, wine_backend.wine_version, call, "w", got, predicted) is None


@pytest.mark.parametrize("above", [0x1000, 0x100000], ids=["unaligned", "above highest"])
def test_wine_accepts_a_lowest_windows_refuses(wine_backend: WineBackend, above: int) -> None:
    """Backs "VirtualAlloc2 ignores LowestStartingAddress": an unaligned Lowest, and one
    above Highest, reserve (Windows: 87); the row excuses the success."""
    base = released_high_window(wine_backend)
    r = AddressRequirements(base + above, base + 0xFFFFF, 0)
    got = wine_alloc2(wine_backend, GRANULE, MEM_RESERVE, r)
    assert got.value and got.value % GRANULE == 0 and got.value + GRANULE <= r.highest + 1, got
    model = model_of(wine_backend)
    predicted = predict_alloc2(model, GRANULE, MEM_RESERVE, r)
    assert predicted == Answer(0, ERROR_INVALID_PARAMETER)
    counterfactual = alloc2_counterfactual(model, GRANULE, MEM_RESERVE, r, got.value)
    call = null_alloc2_call(GRANULE, MEM_RESERVE, r)
    version = wine_backend.wine_version
    row = judge(wine_backend.name, version, call, "window", got, predicted, counterfactual)
    assert row is row_named(IGNORED_LOWEST)


def test_wine_refuses_a_highest_that_ends_no_page(wine_backend: WineBackend) -> None:
    """Backs "VirtualAlloc2 ignores LowestStartingAddress" (only Lowest is ignored): a
    HighestEndingAddress not ending a page is 87, as on Windows."""
    base = released_high_window(wine_backend)
    r = AddressRequirements(base, base + 0xFFFFE, 0)
    got = wine_alloc2(wine_backend, GRANULE, MEM_RESERVE, r)
    assert got == Answer(0, ERROR_INVALID_PARAMETER)
    assert predict_alloc2(model_of(wine_backend), GRANULE, MEM_RESERVE, r) == got


def wine_protect(backend: WineBackend, addr: int, size: int, protect: int) -> tuple[Answer, int]:
    """VirtualProtect in Wine: its answer, and what it left in lpflOldProtect."""
    old = DWORD(SENTINEL)
    value, error = backend.call(backend.k32.VirtualProtect, addr, size, protect, ctypes.byref(old))
    return Answer(value, error), old.value


def wine_granule(backend: WineBackend, kind: int, protect: int) -> int:
    base, error = backend.call(backend.k32.VirtualAlloc, None, GRANULE, kind, protect)
    assert base, error
    return base


@pytest.mark.parametrize("alloc_protect, protect, applied", WINE_APPLIES)
def test_wine_takes_a_forbidden_combination_on_committed_pages(
    wine_backend: WineBackend, alloc_protect: int, protect: int, applied: int
) -> None:
    """Backs "VirtualProtect takes modifier combinations the documentation forbids": the
    page takes the protection with the allocation's cache attribute, the old protection is
    written, and the model's unchecked call predicts exactly that page."""
    base = wine_granule(wine_backend, MEM_RESERVE | MEM_COMMIT, alloc_protect)
    try:
        got, old = wine_protect(wine_backend, base, 0x1000, protect)
        ret, _, mbi = wine_backend.virtual_query(base)
        assert (got.value, old, ret, mbi.Protect) == (1, alloc_protect, 48, applied)
        model = model_with(MEM_RESERVE | MEM_COMMIT, alloc_protect, base)
        adopted: list[WindowsVM] = []
        counterfactual = protect_counterfactual(model, base, 0x1000, protect, adopted)
        call = protect_call(model, base, 0x1000, protect, True)
        predicted = predict_protect(model, base, 0x1000, protect)
        version = wine_backend.wine_version
        row = judge(wine_backend.name, version, call, "vp", got, predicted, counterfactual)
        assert row is row_named(FORBIDDEN_TAKEN)
        page = adopted[-1].state_of(base)
        assert page is not None and page.protect == applied
    finally:
        assert wine_backend.call(wine_backend.k32.VirtualFree, base, 0, MEM_RELEASE)[0] == 1


@pytest.mark.parametrize(
    "protect", [*sorted(FORBIDDEN_MODIFIER_COMBINATIONS), *sorted(INVALID_PROTECTIONS)]
)
def test_wine_answers_487_for_a_refused_protection_on_reserved_pages(
    wine_backend: WineBackend, protect: int
) -> None:
    """Backs "VirtualProtect takes modifier combinations the documentation forbids" and
    "VirtualProtect checks the new protection after the pages": reserved pages are 487
    (Windows: 87), the old protection untouched; on committed pages an invalid protection
    is 87, as on Windows."""
    base = wine_granule(wine_backend, MEM_RESERVE, PAGE_NOACCESS)
    try:
        got, old = wine_protect(wine_backend, base, 0x1000, protect)
        assert (got, old) == (Answer(0, ERROR_INVALID_ADDRESS), SENTINEL)
        model = model_with(MEM_RESERVE, PAGE_NOACCESS, base)
        counterfactual = protect_counterfactual(model, base, 0x1000, protect, [])
        call = protect_call(model, base, 0x1000, protect, True)
        predicted = predict_protect(model, base, 0x1000, protect)
        version = wine_backend.wine_version
        row = judge(wine_backend.name, version, call, "vp", got, predicted, counterfactual)
        invalid = protect in INVALID_PROTECTIONS
        assert row is row_named(PROTECTION_AFTER_PAGES if invalid else FORBIDDEN_TAKEN)
        if invalid:
            k32 = wine_backend.k32
            commit = wine_backend.call(k32.VirtualAlloc, base, 0x1000, MEM_COMMIT, PAGE_READWRITE)
            assert commit[0] == base, commit
            got, old = wine_protect(wine_backend, base, 0x1000, protect)
            assert (got, old) == (Answer(0, ERROR_INVALID_PARAMETER), SENTINEL)
    finally:
        assert wine_backend.call(wine_backend.k32.VirtualFree, base, 0, MEM_RELEASE)[0] == 1


def test_wine_answers_87_for_a_protect_outside_one_allocation(wine_backend: WineBackend) -> None:
    """Backs "VirtualProtect outside one allocation: 87, not 487": past the end of an
    allocation, and on memory released, Wine answers 87 where the model predicts 487."""
    k32 = wine_backend.k32
    base = wine_granule(wine_backend, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    model = model_with(MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, base)
    answers = [wine_protect(wine_backend, base + 0xF000, 0x2000, PAGE_READWRITE)]
    calls = [(model, base + 0xF000, 0x2000)]
    assert wine_backend.call(k32.VirtualFree, base, 0, MEM_RELEASE)[0] == 1
    answers.append(wine_protect(wine_backend, base, 0x1000, PAGE_READWRITE))
    calls.append((model_of(wine_backend), base, 0x1000))
    for (got, old), (m, addr, size) in zip(answers, calls, strict=True):
        assert (got, old) == (Answer(0, ERROR_INVALID_PARAMETER), SENTINEL)
        predicted = predict_protect(m, addr, size, PAGE_READWRITE)
        call = protect_call(m, addr, size, PAGE_READWRITE, True)
        row = judge(wine_backend.name, wine_backend.wine_version, call, "vp", got, predicted)
        assert row is row_named(PROTECT_OUTSIDE)


@pytest.mark.parametrize("size, alignment", [(GIB, 4 * GIB), (2 * GIB, 2 * GIB)])
def test_wine_reserves_the_shapes_outside_the_aborting_one(
    wine_backend: WineBackend, size: int, alignment: int
) -> None:
    """Backs "VirtualAlloc2 of a large reservation on a 4 GiB alignment aborts Wine" (its
    bounds): 1 GiB on 4 GiB and 2 GiB on 2 GiB are sent, reserved aligned, and Wine lives."""
    assert aborting_shape(wine_backend.wine_version, size, alignment) is None
    base = wine_backend.reserve_aligned(size, alignment)
    assert base is not None and base % alignment == 0
    ret, _, mbi = wine_backend.virtual_query(base)
    assert (ret, mbi.AllocationBase, mbi.State, mbi.RegionSize) == (48, base, MEM_RESERVE, size)
    wine_backend.release(base, size)
    assert wine_backend.wine.server.alive


def test_the_machine_passes_wines_ignored_lowest_and_forbidden_combinations_by_the_rows(
    wine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """win32-wine through the machine's own rules: a window over a released top-down
    granule is answered below it, and GUARD on NOACCESS is taken; both pass by their rows
    alone, the model's walk then matches Wine's, and without the table both fail."""
    machine = vm_machine_for(wine, "small")()
    assert isinstance(machine, WindowsVMMachine)
    try:
        version = machine.backend.wine_version
        top = machine.reserve(size="granule", kind=MEM_RESERVE | MEM_TOP_DOWN, protect=1)
        assert isinstance(top, Region)
        machine.release(region=top, offset=0)
        region = committed_granule(machine)
        lowest = allowance_label(version, row_named(IGNORED_LOWEST))
        taken = allowance_label(version, row_named(FORBIDDEN_TAKEN))
        before = labels.COUNTS[lowest], labels.COUNTS[taken]
        placed: list[int] = []
        real_alloc2 = machine.alloc2

        def alloc2(
            address: int, size: int, kind: int, protect: int, r: AddressRequirements
        ) -> tuple[int, int]:
            got = real_alloc2(address, size, kind, protect, r)
            placed.append(got[0])
            return got

        monkeypatch.setattr(machine, "alloc2", alloc2)
        window = {"lowest": "base", "highest": 1, "alignment": 0, "size": "page", "how": None}
        machine.reserve_in_window(region=top, **window)
        assert placed and 0 < placed[-1] < top.base, "Wine placed it below the window"
        page = {"offset": Offset(False, 0), "length": Length(False, 0x1000), "old_out": True}
        machine.protect(region=region, protect=GUARD_NOACCESS, **page)
        assert (labels.COUNTS[lowest], labels.COUNTS[taken]) == (before[0] + 1, before[1] + 1)
        state = machine.model.state_of(region.base)
        assert state is not None and state.protect == GUARD_NOACCESS
        machine.os_regions_match_model()
        monkeypatch.setattr(wine_allowances, "ALLOWANCES", ())
        with pytest.raises(Divergence, match="no allowance"):
            machine.reserve_in_window(region=top, **window)
        # The step failed before handing Wine's reservation back: hand it back here.
        freed = machine.backend.call(machine.k32.VirtualFree, placed[-1], 0, MEM_RELEASE)
        assert freed[0] == 1, freed
        with pytest.raises(Divergence, match="no allowance"):
            machine.protect(region=region, protect=GUARD_NOCACHE, **page)
    finally:
        machine.teardown()
