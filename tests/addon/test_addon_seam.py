"""The seam between the add-on and the engine package: ordinary imports (``from backend.contract import
...``) that IDEs and type checkers follow, with one module deciding where ``backend`` comes from
(scorehmr_blender/runner/engine.py): the repository's, the copy staged inside the installed add-on, and
never another add-on's package of that name."""
import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.shipping.test_build_package import build

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "scorehmr_blender"
SEAM = ADDON / "runner" / "engine.py"
# Add-on modules that use the contract; each must import it with import statements.
CONTRACT_USERS = ("batch.py", "convert.py", "refine.py", "result.py", "retarget.py", "retarget_presets.py",
                  "staging.py", "runner/job.py")


def _modules():
    return {path.relative_to(ADDON).as_posix(): ast.parse(path.read_text(), str(path))
            for path in sorted(ADDON.rglob("*.py"))}


def _backend_imports(tree: ast.Module) -> set[str]:
    """``backend`` modules (and names in them) an add-on module imports with import statements."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "backend":
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "backend"}
    return found


def test_no_string_loads_of_engine_modules_come_back():
    """Engine modules named in strings (``contract("frames")``, ``backend_module("service")``,
    ``importlib.import_module("backend.x")``) are invisible to tools: none in the add-on."""
    bad = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0] if node.args else None
            named = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if func in ("contract", "backend_module") or (
                    func in ("import_module", "__import__") and named and first.value.startswith("backend")):
                bad.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert not bad, bad


def test_the_add_on_imports_the_contract_with_import_statements():
    modules = _modules()
    users = {name: _backend_imports(tree) for name, tree in modules.items() if _backend_imports(tree)}
    missing = [name for name in CONTRACT_USERS if name not in users]
    assert not missing, f"no `from backend... import` in {missing}"
    assert "backend.contract.results" in users["result.py"] and "backend.contract.rotations" in users["convert.py"]
    assert {"backend.service", "backend.detect"} <= users["runner/job.py"]
    # No module but the engine's own, numpy-only contract at module level (torch loads inside jobs).
    for name, tree in modules.items():
        top = _backend_imports(ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                          type_ignores=[]))
        assert all(m.startswith("backend.contract") for m in top), (name, top)


def test_one_module_decides_where_the_engine_package_is():
    """Only runner/engine.py registers a ``backend`` package; the add-on's __init__ runs it before
    importing any of its modules."""
    for name, tree in _modules().items():
        text = ast.unparse(tree)
        if name != "runner/engine.py":
            assert "spec_from_file_location" not in text and "sys.modules['backend']" not in text, name
    init = ast.parse((ADDON / "__init__.py").read_text()).body
    calls = [i for i, node in enumerate(init) if isinstance(node, ast.Expr) and "import_backend()" in ast.unparse(node)]
    submodules = [i for i, node in enumerate(init) if isinstance(node, ast.ImportFrom) and node.level == 1
                  and node.module is None]
    assert calls and submodules and calls[0] < min(submodules)


def _python(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env=env, check=False)


CHECK_STAGED = """
    import os, sys
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != {root!r}]
    sys.path.insert(0, {parent!r})
    import refine_motion
    from refine_motion import result, staging
    from refine_motion.runner import engine
    import backend
    from backend.contract import results
    assert os.path.realpath(backend.__path__[0]) == {staged!r}, backend.__path__
    assert result.Result is results.Result and engine.backend_root() == engine.Path({addon!r})
    assert results.__file__.startswith({staged!r}), results.__file__
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "scipy", "cv2", "smplx"))
    assert not heavy, heavy
    print("ok", flush=True)
    os._exit(0)
"""


def test_the_staged_add_on_imports_its_own_engine_package(tmp_path):
    """Laid out as the extension zip (build.stage) and imported without the repository on the path:
    ``backend`` is the copy inside the add-on."""
    addon = tmp_path / "refine_motion"
    build.stage(addon)
    proc = _python(CHECK_STAGED.format(root=str(ROOT), parent=str(tmp_path), staged=str(addon / "backend"),
                                       addon=str(addon)), tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (proc.stdout + proc.stderr)[-3000:]


def test_another_add_ons_backend_package_is_refused_with_a_fix(tmp_path):
    other = tmp_path / "other_addon" / "backend"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    script = f"""
        import os, sys
        sys.path.insert(0, {str(other.parent)!r})
        import backend  # another add-on's package, loaded first
        sys.path.insert(0, {str(ROOT)!r})
        try:
            import scorehmr_blender
        except Exception as ex:
            print(type(ex).__name__, ex, flush=True)
        os._exit(0)
    """
    proc = _python(script, tmp_path)
    assert "RefineError Another Python package named 'backend' is loaded" in proc.stdout, proc.stdout + proc.stderr
    assert "disable the add-on that brings it" in proc.stdout
