"""The engine's layout, read from the code: one module per mode with one call shape, no import circle inside
backend/engine, and nothing outside it calling the Engine's private methods."""
import ast
import inspect
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "backend" / "engine"
MODE_PARAMETERS = ["models", "obs", "start", "options", "progress", "denoiser"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _engine_imports() -> dict[str, set[str]]:
    """{module: engine modules it imports, at module level or inside functions}; 'from pkg import sub'
    counts as importing pkg.sub (a package's __init__ does not import its submodules)."""
    modules = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                found |= subs or {node.module}
        graph[name] = found - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (its modules in order), or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_engine_has_no_import_circle():
    assert _cycle(_engine_imports()) is None, " -> ".join(_cycle(_engine_imports()) or [])


def test_every_mode_has_its_module_and_the_same_call_shape():
    from backend.engine import api

    assert set(api.MODES) == {"frame", "video", "motion video", "multiview", "calibrated"}
    for name, refine in api.MODES.items():
        assert refine.__module__.startswith("backend.engine.modes."), name
        assert list(inspect.signature(refine).parameters) == MODE_PARAMETERS, name
    assert len({refine.__module__ for refine in api.MODES.values()}) == len(api.MODES)


def test_nothing_outside_the_engine_calls_its_private_methods():
    from backend.engine.api import Engine

    private = {n for cls in Engine.__mro__ for n in vars(cls) if n.startswith("_") and not n.startswith("__")}
    call = re.compile(r"\.(" + "|".join(map(re.escape, sorted(private))) + r")\(")
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    outside = [ROOT / f for f in tracked.stdout.split() if ENGINE not in (ROOT / f).parents]
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in outside for i, line in enumerate(p.read_text().splitlines(), 1)
           if call.search(line) and not re.search(r"\b(self|bench)\._", line)]
    assert not bad, "Engine privates called from " + ", ".join(bad)
