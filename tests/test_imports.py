"""The house has floors: kernels/ ← tinyeffnet/ modules, and the modules' imports form no cycle.

Every import is counted, including those inside functions (a function-level import hides a cycle, it
does not remove it). Read from the source with ``ast``, so nothing is imported to check it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE, KERNELS = "tinyeffnet", "tinyeffnet.kernels"


def modules():
    """{dotted module name: path} for tinyeffnet/*.py and kernels/*.py (installed as tinyeffnet.kernels)."""
    found = {f"{PACKAGE}.{p.stem}": p for p in (ROOT / "tinyeffnet").glob("*.py") if p.stem != "__init__"}
    found.update({f"{KERNELS}.{p.stem}": p for p in (ROOT / "kernels").glob("*.py") if p.stem != "__init__"})
    return found


def imported_names(path, module):
    """Every dotted name an ``import`` or ``from … import`` in ``module``'s file names, at any depth; a
    relative import (``from .x import y``) is resolved against the module's package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module
            if node.level:
                package = module.rsplit(".", node.level)[0]
                base = f"{package}.{node.module}" if node.module else package
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)   # from tinyeffnet import data
    return names


def import_graph():
    """{module: the tinyeffnet modules it imports}."""
    known = modules()
    return {name: {n for n in imported_names(path, name) if n in known and n != name} for name, path in known.items()}


def find_cycle(graph):
    """A list of modules that import each other in a ring, or None."""
    state = {}   # module → "open" while on the current path, "done" after

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from tinyeffnet.export import x\n    import tinyeffnet.model\n"
                      "from .files import atomic_write\n")
    assert {"tinyeffnet.export", "tinyeffnet.model", "tinyeffnet.files"} <= imported_names(source, "tinyeffnet.m")


def test_tinyeffnet_imports_form_no_cycle():
    graph = import_graph()
    assert len(graph) > 20 and graph["tinyeffnet.model"]         # the scan found the package
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_kernels_never_import_tinyeffnet():
    for name, path in modules().items():
        if name.startswith(KERNELS + "."):
            outside = {n for n in imported_names(path, name)
                       if (n == PACKAGE or n.startswith(PACKAGE + ".")) and not n.startswith(KERNELS)}
            assert not outside, f"{path} imports {sorted(outside)}"
