"""Where the C sources shipped with arenacheck live: ``native/`` beside this package.

In a checkout that is the repository's ``native/``; in an installed wheel it is the
``arenacheck/native`` package data. Either way it sits next to ``impl``.
"""

from __future__ import annotations

from pathlib import Path

NATIVE_DIR = Path(__file__).resolve().parent.parent / "native"


def native_source(name: str) -> Path:
    """The path of one shipped source file (``c_arena.c``, ``wine_vmserver.c``, ...)."""
    return NATIVE_DIR / name
