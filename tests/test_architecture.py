"""The package's shape: no import cycle, and the lower layers import nothing from above.

The import graph is read from the source (``ast``), counting imports inside functions too, so a
cycle cannot hide behind a local import. An edge ``A → B`` is an import of B in A, plus B's
parent packages outside A's own package chain (importing ``lit_restore.priors.base`` from
outside runs ``lit_restore/priors/__init__.py`` first). A fresh interpreter then imports every
module in several orders, as a run-time confirmation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package_dir: Path) -> dict[str, Path]:
    mods = {}
    for f in sorted(package_dir.rglob("*.py")):
        parts = list(f.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _imports(path: Path, top: str, mods: dict[str, Path]) -> set[str]:
    """Every ``top…`` module ``path`` imports, anywhere in the file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == top}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != top:
                continue
            for alias in node.names:  # a submodule, or a name defined by the module itself
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in mods else node.module)
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    top = package_dir.name
    mods = _modules(package_dir)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        own_chain = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        edges = set()
        for target in _imports(path, top, mods):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                q = ".".join(parts[:i])
                if q in mods and (q == target or q not in own_chain):
                    edges.add(q)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_cycle_check_finds_a_cycle_behind_local_imports(tmp_path):
    """The checker itself: a cycle broken only by a function-level import is still a cycle, and
    a package importing its own submodules is not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.a import A\n")
    (pkg / "sub" / "a.py").write_text("from pkg.sub import b\nA = 1\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg.c import C\n    return C\n")
    (pkg / "c.py").write_text("C = 2\n")
    assert cycles(import_graph(pkg)) == []
    (pkg / "c.py").write_text("from pkg.sub.a import A\nC = A\n")
    assert cycles(import_graph(pkg)) == [["pkg.c", "pkg.sub", "pkg.sub.a", "pkg.sub.b"]]


def test_no_import_cycle_in_lit_restore():
    graph = import_graph(ROOT / "lit_restore")
    assert len(graph) > 50  # the whole package was read
    assert cycles(graph) == []


#: what each lower layer may import from lit_restore (besides itself)
ALLOWED = {
    "lit_restore.diffusion": set(),
    "lit_restore.checkpoints": set(),
    "lit_restore.weights": {"lit_restore.checkpoints"},
    "lit_restore.nn": {"lit_restore.checkpoints", "lit_restore.weights"},
}


def test_lower_layers_import_nothing_from_above():
    """``nn/`` knows nothing of priors, samplers, ResShift or modules (only the checkpoint reader
    and the weight resolver); ``diffusion/`` and ``checkpoints.py`` import nothing of ours."""
    graph = import_graph(ROOT / "lit_restore")
    for layer, allowed in ALLOWED.items():
        members = [m for m in graph if m == layer or m.startswith(layer + ".")]
        assert members, layer
        for m in members:
            outside = {t for t in graph[m] if t != layer and not t.startswith(layer + ".")}
            assert outside <= allowed | {"lit_restore"}, (m, sorted(outside - allowed))


IMPORT_IN_ORDERS = """
import importlib, json, sys
orders = json.loads(sys.argv[1])
for order in orders:
    for name in [m for m in sys.modules if m == "lit_restore" or m.startswith("lit_restore.")]:
        del sys.modules[name]  # third-party packages stay loaded: only our import order varies
    for name in order:
        importlib.import_module(name)
print(len(orders))
"""


def test_every_module_imports_in_a_fresh_interpreter_in_several_orders():
    """One fresh interpreter; before each order every ``lit_restore`` module is dropped from
    ``sys.modules``, so each order starts from nothing of ours (a cycle fails on the order that
    enters it from the wrong side)."""
    import json

    names = sorted(_modules(ROOT / "lit_restore"))
    orders = [
        names,
        names[::-1],
        sorted(names, key=lambda n: (-n.count("."), n)),  # deepest modules first
        sorted(names, key=lambda n: (n.count("."), n[::-1])),  # packages first, shuffled
    ]
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_IN_ORDERS, json.dumps(orders)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(len(orders))
