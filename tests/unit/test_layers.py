"""The shape of the house, checked: layers import only downwards, and no module imports itself in a circle.

Layers, bottom to top (README, "Layout"):

    model     typed config, routing vocabulary, wire names, hours, secrets, privacy — imports nothing of ours above
    wire      Asterisk wire adapters: FastAGI, AMI, .conf reader, channel names — imports model only
    routing   where a call goes, the dialplan it renders, transfers — model, wire
    ivr       the call flow and the caller's side — model, wire, routing
    ticketbridge  calls -> tickets — model, wire, routing
    live      the live model and its API (wallboard, screen pop, supervisors' actions) — model, wire, routing, ivr, ticketbridge
    admin     check, explain, apply — everything below
    hotline   the composition root: CLI and process wiring — everything; imported by nobody

Imports are read from the source (every `import`/`from` anywhere in a module, including
ones inside functions), so a lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["model", "wire", "routing", "ivr", "ticketbridge", "live", "admin", "hotline"]
#: packages a package may import besides itself
ALLOWED = {
    "model": set(),
    "wire": {"model"},
    "routing": {"model", "wire"},
    "ivr": {"model", "wire", "routing"},
    "ticketbridge": {"model", "wire", "routing"},
    "live": {"model", "wire", "routing", "ivr", "ticketbridge"},
    "admin": {"model", "wire", "routing", "ivr", "ticketbridge", "live"},
    "hotline": {"model", "wire", "routing", "ivr", "ticketbridge", "live", "admin"},
}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports (a `from pkg import mod` counts as pkg.mod when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import (from {'.' * node.level}{node.module or ''}): "
                                 "write the absolute module so the layers stay visible")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in LAYERS:
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                found.add(name)
    return found


MODULES = modules()
GRAPH = {m: imports_of(p, set(MODULES)) - {m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    pkg = module.split(".")[0]
    upward = sorted(t for t in GRAPH[module] if t.split(".")[0] not in ALLOWED[pkg] | {pkg})
    assert not upward, f"{module} ({pkg}) imports {upward}: above its layer"


def test_nothing_imports_the_composition_root() -> None:
    users = sorted(m for m, deps in GRAPH.items()
                   if not m.startswith("hotline") and any(d.startswith("hotline") for d in deps))
    assert not users, f"{users} import the composition root"


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    seen: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if seen.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    return cycles


def test_no_import_cycles_between_files() -> None:
    cycles = cycles_in(GRAPH)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {**GRAPH, "model.config": GRAPH["model.config"] | {"hotline.cli"}}
    assert any(c[0] == c[-1] and "model.config" in c and "hotline.cli" in c for c in cycles_in(planted))
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_modules_stay_small_or_say_why() -> None:
    """No module over ~500 lines without a reason stated in its docstring ("Why one module: …")."""
    big = []
    for m, p in MODULES.items():
        lines = p.read_text(encoding="utf-8").count("\n")
        doc = ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) or ""
        if lines > 500 and "Why one module" not in doc:
            big.append(f"{m} ({lines} lines)")
    assert not big, f"too large without a stated reason: {big}"


def test_the_reader_sees_lazy_and_upward_imports(tmp_path: Path) -> None:
    """The reader finds upward and lazy imports (so the tests above can fail), and refuses relative ones."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from hotline.cli import main\n    import routing.dialplan\n", encoding="utf-8")
    assert imports_of(f, set(MODULES)) == {"hotline.cli", "routing.dialplan"}
    rel = tmp_path / "r.py"
    rel.write_text("from . import x\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="relative import"):
        imports_of(rel, set(MODULES))


def test_wire_names_are_written_only_in_the_contract() -> None:
    """UserEvent names, channel variables and contexts appear as literals only in model/contract.py
    (the templates get them from there too: dialplans/templates has none of them either)."""
    from model.contract import CdrVar, Context, Event, Var

    names = {n.value for enum in (Var, Event, Context, CdrVar) for n in enum}
    found = []
    for m, p in MODULES.items():
        if m == "model.contract":
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    for t in sorted((ROOT / "dialplans" / "templates").glob("*.j2")):
        for i, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{t.relative_to(ROOT)}:{i}: {n!r}" for n in names
                      if n in line and not line.lstrip().startswith(";")]
    assert not found, "wire names written outside model/contract.py:\n" + "\n".join(found)


def test_test_file_names_are_unique_across_test_folders() -> None:
    """tests/ has no __init__.py (pytest's rootdir imports): two test files of one name in two folders
    stop the whole suite at collection, which a run of one folder alone never shows."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, list[str]] = {}
    for f in tests.rglob("test_*.py"):
        seen.setdefault(f.name, []).append(str(f.relative_to(tests)))
    assert {n: p for n, p in seen.items() if len(p) > 1} == {}
