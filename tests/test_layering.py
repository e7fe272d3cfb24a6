"""The layers of ``vision/``: no module imports a floor above its own, and no import cycle.

Every ``import`` statement counts, including those inside functions (they run too); only
``if TYPE_CHECKING:`` blocks are skipped. Floors (README "Development"):

    0  vision (the package), vision.utils        the ground floor: imports nothing above it
    1  vision.nn, vision.transforms, vision.datasets
    2  vision.ssd                                  nets, priors, weights, predictor
    3  vision.evaluation, vision.training
    4  vision.cli                                  the scripts' shared pieces; nothing in vision imports it
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOORS = {
    "vision": 0, "vision.utils": 0,
    "vision.nn": 1, "vision.transforms": 1, "vision.datasets": 1,
    "vision.ssd": 2,
    "vision.evaluation": 3, "vision.training": 3,
    "vision.cli": 4,
}

Graph = dict[str, set[str]]


def module_names(root: Path) -> dict[str, Path]:
    """``{"vision.ssd.ssd": path, "vision.ssd": path/__init__.py, ...}`` for every module under ``root/vision``."""
    out = {}
    for path in sorted((root / "vision").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The ``known`` modules that ``module`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:  # "vision.ssd.ssd.SSD" -> "vision.ssd.ssd"
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph(root: Path = REPO) -> Graph:
    modules = module_names(root)
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def floor_of(module: str, floors: dict[str, int] = FLOORS) -> int:
    """The floor of the longest package prefix of ``module`` in ``floors``."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in floors:
            return floors[key]
    raise KeyError(f"{module} is in no layer; give its package a floor in FLOORS")


def upward_imports(graph: Graph, floors: dict[str, int] = FLOORS) -> list[str]:
    return sorted(f"{a} (floor {floor_of(a, floors)}) imports {b} (floor {floor_of(b, floors)})"
                  for a, targets in graph.items() for b in targets if floor_of(b, floors) > floor_of(a, floors))


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# ------------------------------------------------------------------ the checker itself
def test_checker_finds_an_upward_import_and_a_cycle():
    fake = {"vision.utils.a": {"vision.ssd.b"}, "vision.ssd.b": {"vision.ssd.c"}, "vision.ssd.c": {"vision.ssd.b"},
            "vision.cli.d": {"vision.utils.a"}}
    assert upward_imports(fake) == ["vision.utils.a (floor 0) imports vision.ssd.b (floor 2)"]
    assert cycles(fake) == [["vision.ssd.b", "vision.ssd.c"]]
    assert upward_imports({"vision.cli.d": {"vision.utils.a"}}) == [] and cycles({"x": {"y"}, "y": set()}) == []


def test_checker_reads_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "vision"
    (pkg / "utils").mkdir(parents=True)
    (pkg / "ssd").mkdir()
    for f in ("__init__.py", "utils/__init__.py", "ssd/__init__.py", "ssd/net.py"):
        (pkg / f).write_text("")
    (pkg / "utils" / "helper.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vision.cli import x\n"
        "def f():\n    from ..ssd import net\n    return net\n")
    graph = import_graph(tmp_path)
    assert graph["vision.utils.helper"] == {"vision.ssd.net"}
    assert upward_imports(graph) == ["vision.utils.helper (floor 0) imports vision.ssd.net (floor 2)"]


# ------------------------------------------------------------------ the real tree
def test_every_module_has_a_floor():
    for module in import_graph():
        floor_of(module)


def test_no_module_imports_a_floor_above_its_own():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_library_never_imports_a_script():
    scripts = {p.stem for p in REPO.glob("*.py")} | {"bench", "tests"}
    for module, path in module_names(REPO).items():
        for node in _import_nodes(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in scripts for n in names if n and not node.__dict__.get("level")), module


def test_upstream_import_paths_still_work():
    from vision.ssd.matching import MatchPrior as ours
    from vision.ssd.ssd import MatchPrior  # upstream's train_ssd.py imports it from here
    from vision.utils import box_utils, measurements, misc  # noqa: F401

    assert MatchPrior is ours


def image_extension_lists(root: Path) -> list[str]:
    """``file:line`` of every set/tuple/list literal that names both ".jpg" and ".png" (an image extension
    list) in the scripts, ``vision/`` and ``bench/``."""
    found = []
    for path in sorted([*root.glob("*.py"), *(root / "vision").rglob("*.py"), *(root / "bench").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if {".jpg", ".png"} <= names:
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_one_list_of_image_extensions(tmp_path):
    """Which files count as images is decided in one place (``vision.utils.paths.IMAGE_EXTENSIONS``): five
    copies had drifted apart (.ppm read by one script, not by the dataset that fed it)."""
    assert image_extension_lists(REPO) == ["vision/utils/paths.py:34", "vision/utils/paths.py:37"]
    (tmp_path / "vision").mkdir()
    (tmp_path / "a.py").write_text('EXT = (".jpg", ".jpeg", ".png")\n')
    assert image_extension_lists(tmp_path) == ["a.py:1"]  # the checker finds a copy
