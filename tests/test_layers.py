"""The folders are the layers: a test reads every import (function-local ones included) and fails on an arrow
against the plan, or on any import circle between modules."""

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top, by folder: a module may import its own layer and the layers below it, never one above. A module's layer
# is that of the longest folder (or file) of the plan that holds it; every module of the house must be held.
PLAN = [
    ("core", ["nasdun/core", "nasdun/__init__.py"]),  # the package's face is light: __version__, and the API loaded lazily
    ("design space", ["search_spaces"]),
    ("problems", ["trainers/problems"]),
    ("trainers", ["trainers"]),
    ("runs", ["nasdun/runs"]),
    ("search", ["nasdun/orchestration"]),
    ("analysis: readers", ["analysis/readers", "analysis/__init__.py"]),
    ("analysis: studies that train", ["analysis/studies"]),
    ("interfaces", ["nasdun/interfaces", "nasdun/__main__.py"]),
    ("benchmarks", ["benchmarks"]),
]


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for top in ("nasdun", "search_spaces", "trainers", "analysis", "benchmarks"):
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def layer(module: str) -> int:
    """The plan's layer of ``module``: the longest folder or file of the plan that holds its file."""
    where = modules()[module].relative_to(ROOT).as_posix()
    best = (-1, -1)
    for i, (_, places) in enumerate(PLAN):
        for p in places:
            if where == p or where.startswith(p + "/"):
                best = max(best, (len(p), i))
    assert best[1] >= 0, f"{module} ({where}) is in no folder of the plan: add its folder to PLAN"
    return best[1]


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project's modules it imports (anywhere in its file)."""
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in mods and t != name}
        out[name] = found
    return out


def test_no_import_points_up_the_plan():
    mods = modules()
    against = [
        f"{m} ({PLAN[layer(m)][0]}) imports {t} ({PLAN[layer(t)][0]})"
        for m, targets in sorted(imports(mods).items())
        for t in sorted(targets)
        if layer(t) > layer(m)
    ]
    assert not against, "\n".join(against)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle found by a depth-first walk, each as the modules around it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                found.append([*path[path.index(t) :], m, t] if t in path else [m, t])
            elif t not in state:
                visit(t, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return found


def test_no_import_circles():
    graph = imports(modules())
    for m in list(graph):  # a package's __init__ re-exporting its own modules is not a circle
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]  # the walk itself finds one
    found = circles(graph)
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_plan_holds_every_module_by_its_folder():
    for m in modules():
        layer(m)
    places = [p for _, ps in PLAN for p in ps]
    assert all((ROOT / p).exists() for p in places), [p for p in places if not (ROOT / p).exists()]
    assert not [p for p in places if p.endswith(".py") and not p.endswith(("__init__.py", "__main__.py"))]  # folders, not a module list


def test_the_search_ledger_and_asker_keep_to_their_parts():
    """The ledger (table and study) never asks the sampler; the asker never writes the table or tells a trial by hand
    (it tells cached proposals through the ledger); the experiment's constructor reads nothing (``Experiment.open`` does)."""

    def calls(module: str) -> set[str]:
        tree = ast.parse((ROOT / "nasdun" / "orchestration" / f"{module}.py").read_text())
        return {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}

    assert not {"ask", "enqueue_trial", "suggest_categorical"} & calls("ledger")
    assert not {"write_table", "fold_in"} & calls("asker") and "tell" in calls("asker")  # ledger.tell, not study.tell
    asker = ast.parse((ROOT / "nasdun" / "orchestration" / "asker.py").read_text())
    assert not [n for n in ast.walk(asker) if isinstance(n, ast.Attribute) and n.attr == "tell" and getattr(n.value, "attr", "") == "study"]
    init = next(
        n
        for n in ast.walk(ast.parse((ROOT / "nasdun" / "orchestration" / "experiment.py").read_text()))
        if isinstance(n, ast.FunctionDef) and n.name == "__init__"
    )
    assert not [n for n in ast.walk(init) if isinstance(n, ast.Call)]  # assignments only
