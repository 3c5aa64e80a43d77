"""One name per module: everything is imported as ``arenacheck.*``, nothing as ``model``,
``impl`` or ``stateful_tests.*`` (the tests excepted), and no file runs as two modules.

The one file that does is ``stateful_tests/__init__.py``: pytest imports the test package
as ``stateful_tests.tests``, which runs the folder's ``__init__`` as ``stateful_tests`` while
the package itself is ``arenacheck``. It holds a docstring and nothing else, so the second
module has no state to disagree about; the last test keeps it that way.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import sys
from pathlib import Path

import arenacheck

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_INIT = ROOT / "stateful_tests" / "__init__.py"
OURS = ("arenacheck", "stateful_tests", "model", "impl", "native")


def import_everything() -> list[str]:
    """Import every module of the package, as the widest run of the suite would."""
    names = []
    for info in pkgutil.walk_packages(arenacheck.__path__, "arenacheck."):
        if info.name.endswith("__main__"):
            continue
        # A module built on another OS's standard library (fcntl on Windows) imports only
        # there; a missing module of ours is a failure wherever it happens.
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as e:
            if e.name is None or e.name.split(".")[0] in OURS:
                raise
            continue
        names.append(info.name)
    return names


def our_modules() -> dict[tuple[int, int], list[str]]:
    """Every loaded module of ours, by the identity of its file (device and inode), so a
    file reached through a link or a hard link counts once."""
    found: dict[tuple[int, int], list[str]] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or name.split(".")[0] not in OURS:
            continue
        info = os.stat(file)
        found.setdefault((info.st_dev, info.st_ino), []).append(name)
    return found


def identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return (info.st_dev, info.st_ino)


def test_the_package_is_imported_as_arenacheck_from_the_checkout() -> None:
    assert os.path.samefile(arenacheck.__file__, PACKAGE_INIT)
    imported = import_everything()
    assert "arenacheck.model.arena" in imported
    assert "arenacheck.impl.arena" in imported
    assert "arenacheck.machines.arena" in imported


def test_no_module_is_imported_under_a_bare_name() -> None:
    import_everything()
    bare = sorted(
        name
        for names in our_modules().values()
        for name in names
        if name.split(".")[0] in ("model", "impl", "native")
        or (name.startswith("stateful_tests.") and not name.startswith("stateful_tests.tests"))
    )
    assert bare == []


def test_no_file_runs_as_two_modules_but_the_package_docstring() -> None:
    import_everything()
    twice = {key: sorted(names) for key, names in our_modules().items() if len(names) > 1}
    init = identity(PACKAGE_INIT)
    assert set(twice) <= {init}, twice
    assert twice.get(init, ["arenacheck", "stateful_tests"]) == [
        "arenacheck",
        "stateful_tests",
    ]


def test_the_package_init_holds_only_a_docstring() -> None:
    body = ast.parse(PACKAGE_INIT.read_text(encoding="utf-8")).body
    assert len(body) == 1
    assert isinstance(body[0], ast.Expr)
    assert isinstance(body[0].value, ast.Constant)
    assert isinstance(body[0].value.value, str)
