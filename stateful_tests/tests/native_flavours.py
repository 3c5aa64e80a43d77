"""The native arenas the C ABI tests run against: the bundled C arena and the Rust arena.

Each flavour says how its library is had, why it cannot be had here, which variable turns
its absence from a skip into a failure, and the implementation names the machines use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from arenacheck.impl import c_load, rust_arena, rust_build
from arenacheck.impl.c_abi import CArenaLibrary

REQUIRE_CC_ENV = "ARENACHECK_REQUIRE_CC"
REQUIRE_RUST_ENV = rust_build.REQUIRE_ENV


def required(variable: str) -> bool:
    return os.environ.get(variable, "").strip() not in ("", "0")


@dataclass(frozen=True)
class Flavour:
    name: str
    # The implementation names: OS calls through the backend's table, and the library's own.
    impl: str
    direct_impl: str
    require_env: str
    unavailable: Callable[[], str | None]
    load: Callable[[], CArenaLibrary]

    def library_or_skip(self) -> CArenaLibrary:
        """The library; where it cannot be had, skip with the reason, or fail when the
        flavour's variable asks for it."""
        reason = self.unavailable()
        if reason is not None:
            if required(self.require_env):
                pytest.fail(f"{self.require_env} is set, but the {self.name} arena: {reason}")
            pytest.skip(f"the {self.name} arena: {reason}")
        return self.load()


C = Flavour(
    "C",
    "arenacheck.impl.c_arena:CArena",
    "arenacheck.impl.c_arena:CArenaDirect",
    REQUIRE_CC_ENV,
    c_load.unavailable_reason,
    c_load.load_library,
)
RUST = Flavour(
    "Rust",
    "arenacheck.impl.rust_arena:RustArena",
    "arenacheck.impl.rust_arena:RustArenaDirect",
    REQUIRE_RUST_ENV,
    rust_arena.unavailable_reason,
    rust_arena.load_rust_library,
)
FLAVOURS = (C, RUST)
FLAVOUR_PARAMS = [pytest.param(f, id=f.name.lower()) for f in FLAVOURS]
