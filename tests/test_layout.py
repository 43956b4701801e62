"""The package layout, held: no import circles, no stage importing a later one, Ray only in search.

The imports are read from the source with `ast`, not by importing: a module-level import
and one inside a function are both edges (a deferred import hides a circle, it does not
break it). An import under ``if TYPE_CHECKING:`` never runs, so the layer rules ignore it,
but the circle check counts it: a type-only import is still a dependency a reader follows
and a type checker resolves, and the ``arch -> space -> cost -> space`` circle hid behind
two of them. A package's ``__init__.py`` is the exception: its ``TYPE_CHECKING`` block
restates its lazily loaded public names for type checkers, and at run time it imports
none of them. The layer table below is the README's "Layout" map; a new package or a new
edge between packages is a change of that map, made here and there together.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vitnas._moved import MOVED_MODULES

REPO = Path(__file__).resolve().parent.parent

# Layer of a module -> the layers it may import. A layer is a subpackage of vitnas, or a
# top-level module; "base" is errors.py and the import plumbing (_lazy.py, _moved.py).
_BELOW_NN = {"base", "util", "data", "space"}
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "util": {"base"},
    "data": {"base", "util"},
    # the bottom: a reducer's token and cost arithmetic is the space's (space/reducer_rules.py), its forward nn's
    "space": {"base", "util"},
    "nn": _BELOW_NN,
    "supernet": _BELOW_NN | {"nn"},
    "evaluate": _BELOW_NN | {"nn", "supernet"},
    "train": _BELOW_NN | {"nn", "supernet", "evaluate"},
    "latency": _BELOW_NN | {"nn"},
    "search": _BELOW_NN | {"nn", "supernet", "evaluate", "train", "latency"},
    "export": _BELOW_NN | {"nn", "supernet", "evaluate", "train", "latency"},
    "finetune": _BELOW_NN | {"nn", "supernet", "evaluate", "train", "latency", "export"},
    # rank/ reaches Ray only through the search's one helper for it (a cluster's connect and check)
    "rank": _BELOW_NN | {"nn", "supernet", "evaluate", "train", "latency", "search.ray_cluster"},
    "pipeline": _BELOW_NN | {"nn", "supernet", "evaluate", "train", "latency", "search", "export"},
    "cli": {"base", "__init__"},  # the root parser: verbs are found by name (VERB_MODULES), not imported
    "__main__": {"cli"},
    "__init__": {"base"},  # vitnas/__init__.py: every public name is loaded on first use
}
_BASE = {"errors", "_lazy", "_moved"}


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package rooted at `package`."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str], type_checking: bool = False) -> dict[str, int]:
    """The modules of `known` that module `name` imports -> the line of the first such import.

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``.
    With `type_checking`, imports under ``if TYPE_CHECKING:`` count too, except in an
    ``__init__.py`` (see the module docstring).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = not type_checking or path.name == "__init__.py"
    skipped = {id(node) for branch in ast.walk(tree) if skip and isinstance(branch, ast.If)
               and _is_type_checking(branch.test) for statement in branch.body for node in ast.walk(statement)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rpartition(".")[0]  # import a.b.c where only a.b is ours
            if target in known and target != name:
                edges.setdefault(target, node.lineno)
    return edges


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(package: Path, type_checking: bool = False) -> dict[str, dict[str, int]]:
    found = modules(package)
    return {name: imports(name, path, set(found), type_checking) for name, path in found.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules, as the modules in import order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle(graph, set(group)) for group in groups]


def _circle(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """A shortest circle inside one strongly connected group, starting at its first module by name."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    return paths[node]
                if target in group and target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    raise AssertionError("not a strongly connected group")


def layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    if parts[0] in _BASE:
        return "base"
    return parts[0]


def _allowed(source: str, target: str) -> bool:
    mine, theirs = layer(source), layer(target)
    if mine == theirs or target == "vitnas":  # the top package is lazy: importing it costs nothing (__version__)
        return True
    if source.endswith(".cli") and theirs != "pipeline":
        return True  # a verb's shell parses and prints; it may reach any stage (e.g. latency measures an export)
    inside = target.partition(".")[2]  # e.g. nn.reducers.base
    return any(theirs == rule or inside == rule or inside.startswith(rule + ".") for rule in ALLOWED[mine])


def _describe(graph: dict[str, dict[str, int]], circle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(circle, circle[1:] + circle[:1])]
    return " -> ".join(steps) + f" -> {circle[0]}"


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph(REPO / "vitnas")


def test_no_import_circles():
    """Counting type-only imports (outside ``__init__.py``): a circle through one is still a circle to read."""
    graph = import_graph(REPO / "vitnas", type_checking=True)
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(_describe(graph, circle) for circle in found)


def test_no_module_imports_a_later_stage(graph):
    unknown = sorted({layer(name) for name in graph} - set(ALLOWED))
    assert not unknown, f"modules outside the layer table: {unknown}: add them to ALLOWED and the README's layout"
    wrong = [f"{source}:{line} imports {target} ({layer(source)} may import {', '.join(sorted(ALLOWED[layer(source)]))})"
             for source, targets in sorted(graph.items()) for target, line in sorted(targets.items())
             if not _allowed(source, target)]
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_pipeline(graph):
    wrong = [f"{source}:{line} imports {target}" for source, targets in sorted(graph.items())
             for target, line in targets.items() if layer(target) == "pipeline" and layer(source) != "pipeline"]
    assert not wrong, "\n".join(wrong)


def test_only_the_search_imports_ray():
    wrong = []
    for name, path in modules(REPO / "vitnas").items():
        if layer(name) == "search":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{name}:{node.lineno} imports {found}" for found in names if found.split(".")[0] == "ray"]
    assert not wrong, "\n".join(wrong)


def test_code_tests_and_benchmarks_use_the_new_module_paths():
    """The old paths of vitnas/_moved.py are for users' code, for one release; ours uses the new ones."""
    wrong = []
    for folder in ("vitnas", "tests", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                wrong += [f"{path.relative_to(REPO)}:{node.lineno} imports {found} (now {MOVED_MODULES[found]})"
                          for found in names if found in MOVED_MODULES]
    assert not wrong, "\n".join(wrong)


def test_files_stay_under_the_size_guide():
    over = [f"{path.relative_to(REPO)}: {lines} lines" for path in sorted((REPO / "vitnas").rglob("*.py"))
            if (lines := len(path.read_text().splitlines())) > 600]
    assert not over, "split by concern (STYLE.md, small units):\n" + "\n".join(over)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_walker_names_a_circle_through_a_deferred_import_and_one_through_type_checking(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "def f():\n    from pkg import c\n",  # deferred: still an edge
        "pkg/c.py": "import pkg.a\n",
        "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.e import E\n",
        "pkg/e.py": "from pkg.d import *\n",
        "pkg/sub/__init__.py": "from . import x\n",
        "pkg/sub/x.py": "from ..sub import y\n",
        "pkg/sub/y.py": "from .x import *\n",
        "pkg/lazy/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.lazy.z import Z\n",
        "pkg/lazy/z.py": "import pkg.lazy\n",
    })
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.c": 2}
    assert graph["pkg.d"] == {}  # TYPE_CHECKING only: no run-time edge
    assert graph["pkg.sub.x"] == {"pkg.sub.y": 1}  # relative imports resolved
    found = sorted(cycles(graph))
    assert found == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.sub.x", "pkg.sub.y"]]
    assert _describe(graph, found[0]) == "pkg.a (line 1) -> pkg.b (line 2) -> pkg.c (line 1) -> pkg.a"
    typed = import_graph(package, type_checking=True)
    assert typed["pkg.d"] == {"pkg.e": 3} and typed["pkg.lazy"] == {}  # a package's lazy face stays out
    assert sorted(cycles(typed)) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.e"], ["pkg.sub.x", "pkg.sub.y"]]


def test_old_module_paths_import_the_new_modules_for_one_release_with_a_warning():
    """vitnas 0.1's paths (vitnas/_moved.py): the very module under its old name, a DeprecationWarning at the import."""
    code = textwrap.dedent('''
        import importlib, json, sys, warnings
        import vitnas
        from vitnas._moved import MOVED_INTO_PACKAGE, MOVED_MODULES, MOVED_NAMES

        def deprecations(caught):
            return [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import vitnas.arch
        assert [(w.filename, w.lineno) for w in caught] == [("<string>", 11)], caught  # the importing line
        for old, new in MOVED_MODULES.items():
            fresh = old not in sys.modules  # else imported already, as the parent of an earlier old path
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = importlib.import_module(old)
            assert module is importlib.import_module(new) and module.__spec__.name == new == module.__name__, old
            assert deprecations(caught) == [f"{old} moved to {new}; the old path works until the next release"] * fresh
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from vitnas.cli import read_arch
            from vitnas.space.arch import read_archs
            from vitnas.export.elastic import write_bundle
            from vitnas.latency import Budget
            from vitnas.layers.reducers.evit import EViT
            from vitnas.train import SupernetTrainee, train
        assert EViT is importlib.import_module("vitnas.nn.reducers.evit").EViT
        assert SupernetTrainee is importlib.import_module("vitnas.train.supernet").SupernetTrainee
        assert train is importlib.import_module("vitnas.train.supernet").train_supernet  # renamed: its own warning
        import vitnas.train.recipe as recipe, vitnas.finetune.tune as tune  # the packages, not the verbs
        assert vitnas.train.recipe is recipe and recipe.load_recipe and tune.finetune_model
        assert Budget is importlib.import_module("vitnas.search.budget").Budget
        assert write_bundle is importlib.import_module("vitnas.export.bundle").write_bundle
        assert read_arch is importlib.import_module("vitnas.space.arch_files").read_arch
        assert read_archs is importlib.import_module("vitnas.space.arch_files").read_archs
        for (package, name), module in MOVED_NAMES.items():
            assert getattr(importlib.import_module(package), name) is getattr(importlib.import_module(module), name)
        for package, module in MOVED_INTO_PACKAGE.items():
            public = [name for name in importlib.import_module(module).__all__]
            assert all(getattr(importlib.import_module(package), name) is not None for name in public), package
        try:
            vitnas.train_nothing_of_that_name
        except AttributeError:
            pass
        else:
            raise AssertionError("an unknown name resolved")
        print(json.dumps(deprecations(caught)))
    ''')
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == [
        "vitnas.cli.read_arch moved to vitnas.space.arch_files.read_arch; the old path works until the next release",
        "vitnas.space.arch.read_archs moved to vitnas.space.arch_files.read_archs; the old path works until the next "
        "release",
        "vitnas.export.elastic.write_bundle moved to vitnas.export.bundle.write_bundle; the old path works until the "
        "next release",
        "vitnas.latency.Budget moved to vitnas.search.budget.Budget; the old path works until the next release",
        "vitnas.train.SupernetTrainee moved to vitnas.train.supernet.SupernetTrainee; the old path works until the "
        "next release",
        "vitnas.train.train was renamed vitnas.train.supernet.train_supernet (vitnas.train_supernet); the old name "
        "works until the next release",
    ]


def test_renamed_names_give_the_new_object_for_one_release_with_a_warning():
    """`count_flops` counted multiply-accumulates all along: it is `count_macs` now, and the old name still works."""
    import vitnas
    import vitnas.space
    import vitnas.space.cost
    from vitnas._moved import RENAMED

    for (where, old), (module, new) in RENAMED.items():
        if old != "count_flops":
            continue  # the verbs' renames: the next test
        holder = importlib.import_module(where)
        holder.__dict__.pop(old, None)  # a lazy package keeps what it served once
        message = rf"^{where}\.{old} was renamed {module}\.{new} \(vitnas\.{new}\); the old name"
        with pytest.warns(DeprecationWarning, match=message):
            value = getattr(holder, old)
        assert value is getattr(importlib.import_module(module), new)
        holder.__dict__.pop(old, None)
    assert vitnas.count_macs is vitnas.space.count_macs is vitnas.space.cost.count_macs


def test_each_verb_is_a_function_and_the_old_forms_still_run_it_for_one_release_with_a_warning(monkeypatch):
    """No verb's function shares its name with a package (vitnas/__init__.py's docstring): vitnas.train is the
    package, vitnas.train_supernet the verb; 0.1's callable packages and old names still reach the new function."""
    import importlib
    import types
    import warnings

    import vitnas
    from vitnas._moved import CALLED_PACKAGES, RENAMED, moved_attribute

    verbs = {"train_supernet": "vitnas.train.supernet", "search_supernet": "vitnas.search.driver",
             "export_model": "vitnas.export.writer", "finetune_model": "vitnas.finetune.tune",
             "rank_check": "vitnas.rank.check", "run_pipeline": "vitnas.pipeline.stages"}
    for name, module in verbs.items():
        assert name in vitnas.__all__ and getattr(vitnas, name) is getattr(importlib.import_module(module), name)
        assert isinstance(getattr(vitnas, name), types.FunctionType), name
    for package in ("train", "search", "export", "finetune"):
        assert getattr(vitnas, package) is importlib.import_module(f"vitnas.{package}")
        assert package not in vitnas.__all__
    for (place, old), (module, name) in RENAMED.items():
        message = rf"^{place}\.{old} was renamed {module}\.{name} \(vitnas\.{name}\)"
        with pytest.warns(DeprecationWarning, match=message):
            assert moved_attribute(place, old) is getattr(importlib.import_module(module), name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # warned once above (a package keeps what it served)
            assert getattr(importlib.import_module(place), old) is getattr(importlib.import_module(module), name)
    for package, (module, name) in CALLED_PACKAGES.items():
        monkeypatch.setattr(importlib.import_module(module), name, lambda *a, name=name, **k: (name, a, k))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert importlib.import_module(package)("a", out="b") == (name, ("a",), {"out": "b"})
        assert [(w.category, w.filename) for w in caught] == [(DeprecationWarning, __file__)], package  # the caller
        assert str(caught[0].message) == (f"calling {package}(...) is deprecated: call vitnas.{name}(...) "
                                          f"({module}.{name}); the old call works until the next release")
