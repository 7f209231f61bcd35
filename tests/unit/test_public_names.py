"""Each lazily exporting package names its public API in three places that must agree.

``_EXPORTS`` (name -> module) is what runs; ``__all__`` is a literal list
because type checkers read it to know what a package re-exports (a service
repo under ``mypy --strict`` would otherwise be told ``infra_lib.Stack`` is
not exported); the ``TYPE_CHECKING`` imports give those names their types.
This test derives the other two from ``_EXPORTS`` and fails on any drift.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import infra_lib

PACKAGES = [
    "infra_lib",
    "infra_lib.backup",
    "infra_lib.chaos",
    "infra_lib.livekit",
    "infra_lib.redis",
    "infra_lib.storage",
]
#: Defined in the package itself, not re-exported.
OWN = {"infra_lib": {"__version__"}}


def _type_checking_imports(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for child in node.body:
                assert isinstance(child, ast.ImportFrom) and child.module, ast.unparse(child)
                for alias in child.names:
                    found[alias.asname or alias.name] = child.module
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_all_and_type_imports_match_the_export_table(name: str) -> None:
    package = importlib.import_module(name)
    exports: dict[str, str] = package._EXPORTS
    assert sorted(package.__all__) == sorted({*exports, *OWN.get(name, set())})
    assert len(package.__all__) == len(set(package.__all__)), "a name listed twice"
    assert _type_checking_imports(Path(package.__file__)) == exports


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves_from_its_module(name: str) -> None:
    package = importlib.import_module(name)
    for public, module in package._EXPORTS.items():
        assert getattr(importlib.import_module(module), public) is getattr(package, public)


def test_dir_lists_the_public_names() -> None:
    assert dir(infra_lib) == sorted(infra_lib.__all__)
