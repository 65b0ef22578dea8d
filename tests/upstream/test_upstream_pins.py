"""The dependency declaration is honest: panoramisk/pyst2 are test-only, pinned, and nothing shipped imports them."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_MODULES = ("panoramisk", "asterisk")  # pyst2 installs the package `asterisk`


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_upstream_packages_are_not_runtime_dependencies() -> None:
    project = _project()
    runtime = " ".join(project["dependencies"]).lower()
    assert "panoramisk" not in runtime and "pyst2" not in runtime, project["dependencies"]
    assert sorted(project["optional-dependencies"]["upstream"]) == ["panoramisk==1.4", "pyst2==0.5.1"], \
        "the upstream extra pins the exact releases this suite is about (bump both together with the README)"


def test_no_shipped_package_imports_them() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [p.rstrip("*") for p in data["tool"]["setuptools"]["packages"]["find"]["include"]]
    offenders = []
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                for name in names:
                    if name.split(".")[0] in UPSTREAM_MODULES:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not offenders, ("panoramisk/pyst2 are test-only (the 'upstream' extra); a shipped module imports "
                           f"them, so declare them as runtime dependencies again or drop the import: {offenders}")
