"""The allowance table: every row sourced, matched exactly, and only where Wine answers.

A difference between the Windows model and a backend that no row covers must fail, whatever
the backend; a row must excuse exactly the answer it names and nothing near it; and rows
apply where the kernel32 is Wine's, whatever the backend is called, and nowhere else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from arenacheck.backends import wine_allowances
from arenacheck.backends.registry import (
    BACKEND_NAMES,
    WIN32_EMULATED,
    WIN32_NATIVE,
    WIN32_WINE,
    open_backend,
    standin_installed,
)
from arenacheck.backends.wine_allowances import (
    ALLOWANCES,
    IN_ALLOCATION,
    IN_FREE_MEMORY,
    INSIDE_ONE_ALLOCATION,
    NOT_INSIDE_ONE_ALLOCATION,
    RESERVED_PROTECTIONS_DIFFER,
    SAME_PROTECTION_RUN,
    Allowance,
    Answer,
    AsWindowsWith,
    Call,
    Fails,
    RegionCutAtProtection,
    rows_for,
)
from arenacheck.backends.wine_kernel32 import WINE64
from arenacheck.harness.pytest_plugin import selected_backends, skip_unless_available
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.machines import labels
from arenacheck.machines.oracle import Divergence
from arenacheck.machines.registry import vm_machine_for
from arenacheck.machines.vm_shapes import Length, Offset, Region
from arenacheck.machines.vm_windows import WindowsVMMachine, judge
from arenacheck.model.win_constants import (
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    PAGE_EXECUTE_READ,
    PAGE_NOACCESS,
    PAGE_READWRITE,
    SIZEOF_MEMORY_BASIC_INFORMATION,
)
from arenacheck.model.win_vm import MemoryBasicInformation, WindowsVM

BASE = 0x7F0000000000
# The Wine version a kernel32 reports in these tests (any version applies the rows).
WINE = "8.0"


def release_twice() -> Call:
    return Call("VirtualFree", IN_FREE_MEMORY, (("size", 0), ("free_type", MEM_RELEASE)))


def reserved(region_size: int) -> MemoryBasicInformation:
    return MemoryBasicInformation(
        BASE, BASE, PAGE_READWRITE, region_size, MEM_RESERVE, 0, MEM_PRIVATE
    )


def query_answer(info: MemoryBasicInformation) -> Answer:
    return Answer(SIZEOF_MEMORY_BASIC_INFORMATION, None, info)


def a_model_with_one_reservation() -> tuple[WindowsVM, int]:
    model = WindowsVM()
    result = model.virtual_alloc(0, 0x10000, MEM_RESERVE, PAGE_NOACCESS, chosen_base=BASE)
    assert result.ok
    return model, result.value


def counterfactual_on(
    model: WindowsVM, addr: int, size: int, kind: int, protect: int
) -> wine_allowances.Counterfactual:
    def evaluate(argument: str, value: int) -> Answer:
        args = {"address": addr, "size": size, "alloc_type": kind, "protect": protect}
        args[argument] = value
        result = model.virtual_alloc(
            args["address"], args["size"], args["alloc_type"], args["protect"]
        )
        return Answer(result.value, result.error)

    return evaluate


# ------------------------------------------------------------------------- the rows


def test_every_row_names_its_source_in_the_vm_semantics() -> None:
    assert ALLOWANCES, "the table is empty"
    for row in ALLOWANCES:
        assert "docs/VM_SEMANTICS.md" in row.source, row.name
        assert re.search(r"\bA\.\d+\b", row.source), f"{row.name}: no section named"
        assert "[T]" in row.source, f"{row.name}: no Windows-verified fact behind it"
        assert row.windows_does.strip() and row.backend_does.strip(), row.name


def test_rows_name_the_wine_they_were_measured_on_and_apply_to_wine_only() -> None:
    for row in ALLOWANCES:
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", row.measured_on), row.name
        assert f"Wine {row.measured_on}" in row.source, f"{row.name}: source names no Wine"
    # The model predicts real Windows and its own stand-in exactly: nothing to excuse.
    assert rows_for(None) == ()
    assert rows_for(WINE) == ALLOWANCES


def test_row_names_are_unique() -> None:
    names = [row.name for row in ALLOWANCES]
    assert len(names) == len(set(names))


def test_the_a8_row_is_in_the_table() -> None:
    row = next(r for r in rows_for(WINE) if r.function == "VirtualFree")
    assert row.windows == Answer(0, ERROR_INVALID_ADDRESS)
    assert row.instead == Fails(ERROR_INVALID_PARAMETER)
    assert "A.8" in row.source


@pytest.mark.parametrize(
    "change, message",
    [
        ({"source": "  "}, "source is empty"),
        ({"measured_on": ""}, "source is empty"),
        ({"windows": Answer(BASE, None)}, "must refuse"),
        ({"windows": Answer(0, None)}, "must refuse"),
        ({"instead": Fails(ERROR_INVALID_ADDRESS)}, "allows nothing"),
        ({"situations": frozenset({"somewhere"})}, "situations"),
        ({"situations": frozenset()}, "situations"),
        ({"instead": RegionCutAtProtection()}, "VirtualQuery only"),
        ({"windows": None}, "says nothing"),
    ],
)
def test_a_row_that_could_excuse_too_much_cannot_be_written(
    change: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "measured_on": WINE,
        "name": "example",
        "function": "VirtualFree",
        "situations": frozenset({IN_FREE_MEMORY}),
        "arguments": (("free_type", frozenset({MEM_RELEASE})),),
        "windows": Answer(0, ERROR_INVALID_ADDRESS),
        "instead": Fails(ERROR_INVALID_PARAMETER),
        "windows_does": "fails with 487",
        "backend_does": "fails with 87",
        "source": "docs/VM_SEMANTICS.md A.8 [T]",
    }
    Allowance(**fields)  # type: ignore[arg-type]
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        Allowance(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------- the matching


def test_agreement_needs_no_row() -> None:
    got = Answer(0, ERROR_INVALID_ADDRESS)
    assert judge(WIN32_WINE, WINE, release_twice(), "release twice", got, got) is None


def test_a_divergence_outside_the_table_fails() -> None:
    predicted = Answer(0, ERROR_INVALID_PARAMETER)
    for backend in BACKEND_NAMES:
        for wine_version in (None, WINE):
            with pytest.raises(Divergence, match="no allowance"):
                judge(
                    backend,
                    wine_version,
                    release_twice(),
                    "release twice",
                    Answer(0, 5),
                    predicted,
                )


def test_the_a8_row_excuses_87_for_487_where_the_kernel32_is_wines_only() -> None:
    """The backend's name decides nothing: Wine's kernel32 under any name gets the row,
    Windows' kernel32 under any name (``win32-wine`` included) does not."""
    predicted, answered = Answer(0, ERROR_INVALID_ADDRESS), Answer(0, ERROR_INVALID_PARAMETER)
    for backend in BACKEND_NAMES:
        row = judge(backend, WINE, release_twice(), "release twice", answered, predicted)
        assert row is not None and row.function == "VirtualFree"
        with pytest.raises(Divergence, match="kernel32 of Windows"):
            judge(backend, None, release_twice(), "release twice", answered, predicted)


@pytest.mark.parametrize(
    "call, predicted, answered",
    [
        # Another free type, situation, function, prediction or answer: not the row.
        (
            Call("VirtualFree", IN_FREE_MEMORY, (("size", 0), ("free_type", MEM_FREE))),
            Answer(0, ERROR_INVALID_ADDRESS),
            Answer(0, ERROR_INVALID_PARAMETER),
        ),
        (
            Call("VirtualFree", IN_ALLOCATION, (("size", 0), ("free_type", MEM_RELEASE))),
            Answer(0, ERROR_INVALID_ADDRESS),
            Answer(0, ERROR_INVALID_PARAMETER),
        ),
        (
            Call("VirtualFree", IN_FREE_MEMORY, (("size", 0),)),
            Answer(0, ERROR_INVALID_ADDRESS),
            Answer(0, ERROR_INVALID_PARAMETER),
        ),
        (
            Call(
                "VirtualAlloc",
                IN_FREE_MEMORY,
                (("size", 0x1000), ("alloc_type", MEM_COMMIT), ("protect", PAGE_READWRITE)),
            ),
            Answer(0, ERROR_INVALID_ADDRESS),
            Answer(0, ERROR_INVALID_PARAMETER),
        ),
        (release_twice(), Answer(0, ERROR_INVALID_PARAMETER), Answer(0, ERROR_INVALID_ADDRESS)),
        (release_twice(), Answer(0, ERROR_INVALID_ADDRESS), Answer(0, 8)),
        (release_twice(), Answer(0, ERROR_INVALID_ADDRESS), Answer(1, None)),
        (release_twice(), Answer(1, None), Answer(0, ERROR_INVALID_PARAMETER)),
    ],
)
def test_near_misses_of_a_row_fail(call: Call, predicted: Answer, answered: Answer) -> None:
    with pytest.raises(Divergence):
        judge(WIN32_WINE, WINE, call, "near miss", answered, predicted)


def test_reset_with_a_bad_protection_is_excused_only_as_a_valid_reset() -> None:
    model, base = a_model_with_one_reservation()
    addr, size = base + 0x1001, 0x2000
    args = (("size", size), ("alloc_type", MEM_RESET), ("protect", 0))
    call = Call("VirtualAlloc", INSIDE_ONE_ALLOCATION, args)
    want = model.virtual_alloc(addr, size, MEM_RESET, 0)
    predicted = Answer(want.value, want.error)
    assert predicted == Answer(0, ERROR_INVALID_PARAMETER)
    counterfactual = counterfactual_on(model, addr, size, MEM_RESET, 0)
    # Wine resets the pages: the page-rounded address, the last error left alone.
    answered = Answer(base + 0x1000, 0xDEADBEEF)
    row = judge(WIN32_WINE, WINE, call, "reset", answered, predicted, counterfactual)
    assert row is not None and row.instead == AsWindowsWith("protect", PAGE_NOACCESS)
    for wrong in (Answer(base, 0xDEADBEEF), Answer(0, ERROR_INVALID_ADDRESS)):
        with pytest.raises(Divergence):
            judge(WIN32_WINE, WINE, call, "reset", wrong, predicted, counterfactual)
    with pytest.raises(Divergence):
        judge(WIN32_WINE, WINE, call, "reset", answered, predicted, None)
    with pytest.raises(Divergence):
        judge(WIN32_EMULATED, None, call, "reset", answered, predicted, counterfactual)


def test_commit_with_a_bad_protection_past_the_end_is_excused_as_487_only() -> None:
    model, base = a_model_with_one_reservation()
    addr, size = base + 0xF000, 0x2000
    args = (("size", size), ("alloc_type", MEM_COMMIT), ("protect", 0))
    call = Call("VirtualAlloc", NOT_INSIDE_ONE_ALLOCATION, args)
    predicted = Answer(0, ERROR_INVALID_PARAMETER)
    counterfactual = counterfactual_on(model, addr, size, MEM_COMMIT, 0)
    assert judge(WIN32_WINE, WINE, call, "commit", Answer(0, 487), predicted, counterfactual)
    with pytest.raises(Divergence):
        judge(WIN32_WINE, WINE, call, "commit", Answer(0, 8), predicted, counterfactual)
    valid = (("size", size), ("alloc_type", MEM_COMMIT), ("protect", PAGE_READWRITE))
    with pytest.raises(Divergence):
        judge(
            WIN32_WINE,
            WINE,
            Call("VirtualAlloc", NOT_INSIDE_ONE_ALLOCATION, valid),
            "commit",
            Answer(0, 487),
            predicted,
            counterfactual,
        )


def test_a_reserved_region_cut_where_the_given_protection_changes() -> None:
    facts = ((SAME_PROTECTION_RUN, 0x3000),)
    call = Call("VirtualQuery", RESERVED_PROTECTIONS_DIFFER, (), facts)
    predicted = query_answer(reserved(0x10000))
    row = judge(WIN32_WINE, WINE, call, "query", query_answer(reserved(0x3000)), predicted)
    assert row is not None and row.instead == RegionCutAtProtection()
    for size in (0x2000, 0x4000, 0x10000 - 0x1000):
        with pytest.raises(Divergence):
            judge(WIN32_WINE, WINE, call, "query", query_answer(reserved(size)), predicted)
    with pytest.raises(Divergence):
        judge(WIN32_EMULATED, None, call, "query", query_answer(reserved(0x3000)), predicted)
    # The same cut where the model sees no change of protection is no allowance.
    plain = Call("VirtualQuery", IN_ALLOCATION, ())
    with pytest.raises(Divergence):
        judge(WIN32_WINE, WINE, plain, "query", query_answer(reserved(0x3000)), predicted)


def test_a_committed_region_is_never_cut() -> None:
    facts = ((SAME_PROTECTION_RUN, 0x1000),)
    call = Call("VirtualQuery", RESERVED_PROTECTIONS_DIFFER, (), facts)

    def committed(size: int) -> MemoryBasicInformation:
        return MemoryBasicInformation(
            BASE, BASE, PAGE_READWRITE, size, MEM_COMMIT, PAGE_EXECUTE_READ, MEM_PRIVATE
        )

    with pytest.raises(Divergence):
        judge(
            WIN32_WINE,
            WINE,
            call,
            "query",
            query_answer(committed(0x1000)),
            query_answer(committed(0x2000)),
        )


# ---------------------------------------------------------------- through the machine


@pytest.fixture
def emulated_machine() -> Iterator[WindowsVMMachine]:
    with standin_installed():
        machine_class = vm_machine_for(WIN32_EMULATED, "small")
        machine = machine_class()
        assert isinstance(machine, WindowsVMMachine)
        yield machine
        machine.teardown()


def test_the_machine_fails_a_fabricated_mismatch(emulated_machine: WindowsVMMachine) -> None:
    from arenacheck.model.win_vm import WinResult

    with pytest.raises(Divergence, match="no allowance"):
        emulated_machine.compare(
            release_twice(), "fabricated", (0, ERROR_INVALID_PARAMETER), WinResult(0, 487)
        )


def answering_like_wine(machine: WindowsVMMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's kernel32 answers a release of free memory with 87, as Wine's does."""
    real = machine.k32.VirtualFree

    def virtual_free(address: int | None, size: int, free_type: int) -> object:
        ok = real(address, size, free_type)
        if not ok and machine.k32.get_last_error() == ERROR_INVALID_ADDRESS:
            machine.k32.set_last_error(ERROR_INVALID_PARAMETER)
        return ok

    monkeypatch.setattr(machine.k32, "VirtualFree", virtual_free)


def released_granule(machine: WindowsVMMachine) -> Region:
    region = machine.reserve(size="granule", kind=MEM_RESERVE, protect=PAGE_NOACCESS)
    assert isinstance(region, Region)
    machine.release(region=region, offset=0)
    assert machine.range_is_available(region.base, region.base + region.size)
    return region


@pytest.mark.parametrize("wine_version", [WINE, None])
def test_win32_native_gets_the_rows_exactly_when_its_kernel32_is_wines(
    emulated_machine: WindowsVMMachine, monkeypatch: pytest.MonkeyPatch, wine_version: str | None
) -> None:
    """A backend named ``win32-native`` whose kernel32 answers a second release as Wine
    does: excused by the row when that kernel32 says it is Wine's, a divergence when it
    says it is Windows'."""
    machine = emulated_machine
    region = released_granule(machine)
    monkeypatch.setattr(machine.backend, "name", WIN32_NATIVE)
    monkeypatch.setattr(machine.backend, "wine_version", wine_version)
    answering_like_wine(machine, monkeypatch)
    row = next(r for r in ALLOWANCES if r.function == "VirtualFree")
    name = wine_allowances.allowance_label(WINE, row)
    before = labels.COUNTS[name]
    if wine_version is None:
        with pytest.raises(Divergence, match=f"{WIN32_NATIVE} answered .*kernel32 of Windows"):
            machine.free_released(region=region, kind=MEM_RELEASE)
        assert labels.COUNTS[name] == before
    else:
        machine.free_released(region=region, kind=MEM_RELEASE)
        assert labels.COUNTS[name] == before + 1


@pytest.fixture(params=[WIN32_WINE, WIN32_NATIVE])
def real_kernel32(request: pytest.FixtureRequest) -> str:
    """A backend whose kernel32 is a real one: Wine's on Linux, the system's on Windows."""
    name: str = request.param
    if name not in selected_backends(request.config):
        pytest.skip(f"{name} is not among the selected backends")
    skip_unless_available(name)
    return name


def test_the_kernel32_says_whether_it_is_wines(real_kernel32: str) -> None:
    """``wine_version`` against a witness of its own: the version ``wine64`` prints on
    Linux, the registry key every Wine prefix has on Windows."""
    backend = open_backend(real_kernel32)
    assert isinstance(backend, WindowsBackend)
    if sys.platform == "win32":
        import winreg

        try:
            winreg.CloseKey(winreg.OpenKey(winreg.HKEY_CURRENT_USER, r"Software\Wine"))
            in_a_wine_prefix = True
        except OSError:
            in_a_wine_prefix = False
        assert (backend.wine_version is not None) == in_a_wine_prefix
    else:
        printed = subprocess.run(
            [str(WINE64), "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert backend.wine_version is not None
        assert printed.startswith(f"wine-{backend.wine_version}"), printed


def test_a_reset_with_no_protection_uses_the_rows_exactly_where_the_kernel32_is_wines(
    real_kernel32: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the machine's own rules, on a real kernel32, inside an allocation of ours:
    ``MEM_RESET`` with flProtect 0 is refused with 87 on Windows, and under Wine it resets
    the pages; that passes by its row alone, labelled with the Wine that answered, and
    fails without the table. On Windows no row is consulted."""
    machine = vm_machine_for(real_kernel32, "small")()
    assert isinstance(machine, WindowsVMMachine) and isinstance(machine.backend, WindowsBackend)
    try:
        region = machine.reserve(
            size="granule", kind=MEM_RESERVE | MEM_COMMIT, protect=PAGE_READWRITE
        )
        assert isinstance(region, Region)
        wine_version = machine.backend.wine_version
        row = next(r for r in ALLOWANCES if r.instead == AsWindowsWith("protect", PAGE_NOACCESS))
        name = wine_allowances.allowance_label(wine_version, row)
        before = labels.COUNTS[name]
        reset = {"offset": Offset(False, 0x1000), "length": Length(False, 0x2000)}
        machine.alloc_at(region=region, kind=MEM_RESET, protect=0, **reset)
        if wine_version is None:
            assert labels.COUNTS[name] == before
            return
        assert labels.COUNTS[name] == before + 1
        monkeypatch.setattr(wine_allowances, "ALLOWANCES", ())
        with pytest.raises(Divergence, match="no allowance"):
            machine.alloc_at(region=region, kind=MEM_RESET, protect=0, **reset)
    finally:
        machine.teardown()


def test_a_second_release_under_wine_passes_by_its_row_alone(
    wine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """win32-wine, through the machine's own rules: a second release answers 87, not 487.

    (Its server is a process of its own, so freed memory there is called on; in this
    process the interpreter could take it between check and call, and the machine does not.)
    """
    machine = vm_machine_for(wine, "small")()
    assert isinstance(machine, WindowsVMMachine) and isinstance(machine.backend, WindowsBackend)
    try:
        region = released_granule(machine)
        wine_version = machine.backend.wine_version
        got = machine.backend.call(machine.k32.VirtualFree, region.base, 0, MEM_RELEASE)
        assert got == (0, ERROR_INVALID_PARAMETER), "Wine answers a second release with 87"
        row = next(r for r in ALLOWANCES if r.function == "VirtualFree")
        name = wine_allowances.allowance_label(wine_version, row)
        before = labels.COUNTS[name]
        machine.free_released(region=region, kind=MEM_RELEASE)
        machine.free_released(region=region, kind=MEM_DECOMMIT)
        assert labels.COUNTS[name] == before + 2
        monkeypatch.setattr(wine_allowances, "ALLOWANCES", ())
        with pytest.raises(Divergence, match="no allowance"):
            machine.free_released(region=region, kind=MEM_RELEASE)
    finally:
        machine.teardown()


def test_freed_memory_is_not_called_on_where_the_backend_acts_in_this_process(
    emulated_machine: WindowsVMMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the interpreter could take a range between check and call, no call that changes
    memory lands entirely outside the machine's own allocations; one reaching into them
    (refused unless inside one allocation) still is made."""
    machine = emulated_machine
    region = released_granule(machine)
    live = machine.reserve(size="granule", kind=MEM_RESERVE, protect=PAGE_NOACCESS)
    assert isinstance(live, Region)
    made: list[str] = []
    for name in ("VirtualAlloc", "VirtualFree"):
        real = getattr(machine.k32, name)

        def counted(*args: object, _real: Any = real, _name: str = name) -> object:
            made.append(_name)
            return _real(*args)

        monkeypatch.setattr(machine.k32, name, counted)
    monkeypatch.setattr(machine.backend, "acts_in_this_process", True)
    machine.free_released(region=region, kind=MEM_DECOMMIT)
    past_end = {"offset": Offset(True, 0), "length": Length(False, 0x1000)}
    machine.decommit(region=live, **past_end)
    machine.alloc_at(region=live, kind=MEM_COMMIT, protect=PAGE_READWRITE, **past_end)
    assert made == [], "no call entirely outside ours"
    machine.decommit(region=live, offset=Offset(True, 0x1000), length=Length(False, 0x2000))
    assert made == ["VirtualFree"], "a call reaching into ours is made"
