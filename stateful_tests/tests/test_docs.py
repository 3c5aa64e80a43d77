"""The docs name only what exists: every file path and every ``arenacheck.*`` module that
docs/ARCHITECTURE.md or the README mentions is there, and every module the architecture's
package table lists is importable."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "ARCHITECTURE.md", ROOT / "README.md"]
PATH = re.compile(r"`((?:stateful_tests|model|impl|native|docs|examples)/[\w/.-]+\.(?:py|c|h|md))")
MODULE = re.compile(r"`(arenacheck(?:\.\w+)+)")
TABLE_ROW = re.compile(r"^\| `(arenacheck\.\w+)` \| (.+) \|$", re.M)


def mentioned(pattern: re.Pattern[str], doc: Path) -> list[str]:
    return sorted(set(pattern.findall(doc.read_text(encoding="utf-8"))))


def is_module(name: str) -> bool:
    """A module, or an attribute of one (``arenacheck.impl.backend.Backend``)."""
    while name.count("."):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ModuleNotFoundError:
            pass
        name = name.rpartition(".")[0]
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_path_named_exists(doc: Path) -> None:
    paths = mentioned(PATH, doc)
    assert paths, f"{doc.name} names no file: the pattern is wrong"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_module_named_exists(doc: Path) -> None:
    names = mentioned(MODULE, doc)
    missing = [n for n in names if not is_module(n)]
    assert missing == []


def test_the_package_table_lists_importable_modules() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = TABLE_ROW.findall(text)
    assert len(rows) >= 8
    missing = []
    for package, cell in rows:
        for module in re.findall(r"`(\w+)`", cell):
            if importlib.util.find_spec(f"{package}.{module}") is None:
                missing.append(f"{package}.{module}")
    assert missing == []


def test_the_package_table_covers_every_module() -> None:
    """A module added to a subpackage appears in the table too."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed = {
        f"{package}.{module}"
        for package, cell in TABLE_ROW.findall(text)
        for module in re.findall(r"`(\w+)`", cell)
    }
    folders = {
        f"arenacheck.{sub.name}": sub
        for sub in (ROOT / "stateful_tests").iterdir()
        if sub.is_dir() and (sub / "__init__.py").exists() and sub.name != "tests"
    }
    folders |= {"arenacheck.model": ROOT / "model", "arenacheck.impl": ROOT / "impl"}
    on_disk = {
        f"{package}.{f.stem}"
        for package, folder in folders.items()
        for f in folder.glob("*.py")
        if f.stem != "__init__"
    }
    assert sorted(on_disk - listed) == []


def test_the_readme_carries_the_contract_table() -> None:
    """Every row of ``faults.contract`` appears in the README as its table prints it."""
    from arenacheck.faults.contract import CONTRACT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []
    for o in CONTRACT:
        plugin = o.plugin.removeprefix("arenacheck.faults.")
        checks = " or ".join(f"`{c}`" for c in o.checks)
        row = f"| `{o.id}` | {o.subject} | {o.duty} | {checks} | `{plugin}` |"
        if row not in readme:
            missing.append(o.id)
    assert missing == []
    assert f"the same {len(CONTRACT)} rows" in readme
