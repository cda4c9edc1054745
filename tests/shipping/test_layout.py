"""The package layout: the shipped engine (``backend``) never reaches into the research code (``lab``), and no
two modules import each other, directly or round a circle.

The graph is drawn from the code with ``ast`` (every ``import`` statement, at module level or inside a function),
so an import that only runs on some path still counts.  The second test runs a real refinement with the research
code unimportable, wherever it lives (``lab``, or the places in ``backend`` it used to live in)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("backend", "lab")
# Research modules in the places they lived before ``lab`` existed: blocked too, so that none can come back there.
OLD_RESEARCH_MODULES = ("backend.ablate", "backend.bench", "backend.bench_video", "backend.bench_detections",
                        "backend.sim", "backend.data", "backend.plots", "backend.models.train",
                        "backend.models.motion_train", "backend.models.report", "backend.detect.evaluate",
                        "backend.body.figure", "backend.body.free_model_build")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (a package is its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name an import statement in ``path`` (the module ``module``) names: ``import a.b`` gives
    a.b; ``from a import b`` gives a and a.b (b may be a module or a name in a); relative imports resolved."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports (a name counts when it is a module of ours)."""
    files = module_files(root)
    return {module: {name for name in imported_names(path, module) if name in files and name != module}
            for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan), each a set of modules."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_helpers_see_a_circle_and_a_function_level_import(tmp_path):
    (tmp_path / "backend").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "backend" / "__init__.py").write_text("")
    (tmp_path / "backend" / "a.py").write_text("def f():\n    from backend import b\n")
    (tmp_path / "backend" / "b.py").write_text("from . import a\nimport numpy\n")
    (tmp_path / "lab" / "c.py").write_text("from backend.a import f\n")
    graph = import_graph(tmp_path)
    assert graph["backend.a"] == {"backend", "backend.b"} and graph["backend.b"] == {"backend", "backend.a"}
    assert graph["lab.c"] == {"backend.a"}
    assert cycles(graph) == [{"backend.a", "backend.b"}]


def test_no_import_circle_and_nothing_in_backend_imports_the_lab():
    graph = import_graph()
    into_lab = sorted(f"{source} -> {target}" for source, targets in graph.items() if source.startswith("backend")
                      for target in targets if target == "lab" or target.startswith("lab."))
    assert into_lab == [], "the shipped engine imports the research code"
    circles = [sorted(c) for c in cycles(graph)]
    assert circles == [], "modules importing each other (directly or round a circle)"


BLOCKED_RUN = textwrap.dedent("""
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class NoResearchCode(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"research code imported by the shipped engine: {{name}}")
            return None

    sys.meta_path.insert(0, NoResearchCode())
    from backend.cli import main

    status = main(["refine", "--keypoints", "examples/shot/keypoints.npz", "--footage", "examples/shot/shot.mp4",
                   "--frames", "0:3", "--mode", "frame", "--iterations", "1", "--out", {out!r}])
    leaked = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    print("LEAKED", leaked)
    sys.exit(status or bool(leaked))
""")


def test_a_refinement_runs_with_the_research_code_unimportable(tmp_path):
    out = tmp_path / "out.npz"
    script = BLOCKED_RUN.format(blocked=("lab", *OLD_RESEARCH_MODULES), out=str(out))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "LEAKED []" in proc.stdout and out.is_file()
    assert "reprojection error" in proc.stdout
