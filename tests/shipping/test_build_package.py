"""`build.py package` makes a valid, installable extension zip with Blender's own `extension build`."""

import importlib.util
import os
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Load build.py by path: a plain "import build" could find PyPA's "build" package.
_spec = importlib.util.spec_from_file_location("refine_motion_build", ROOT / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

TOOL = build.extension_tool()
needs_blender = pytest.mark.skipif(TOOL is None, reason="no Blender executable or bpy module with `extension build`")


def run_build(*args):
    return subprocess.run([sys.executable, str(ROOT / "build.py"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def manifest():
    with open(ROOT / "blender_manifest.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if TOOL is None:
        pytest.skip("no Blender executable or bpy module with `extension build`")
    out = tmp_path_factory.mktemp("dist")
    proc = run_build("package", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_manifest_fields(manifest):
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "refine_motion"
    assert manifest["version"] == "0.1.0"
    assert manifest["name"] == "Refine Motion"
    assert manifest["maintainer"] == "Refine Motion developers"
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["tags"] == ["Animation"]
    assert manifest["permissions"] == {
        "files": "Read footage and keypoints, write results",
        "network": "Set Up Worker Environment pip-installs the engine packages",
    }


@pytest.mark.blender_versions  # this Blender's `extension build` / `validate` on the manifest
def test_package_zip_contents(built, manifest):
    out, proc = built
    zips = list(out.iterdir())
    assert [z.name for z in zips] == ["refine_motion-0.1.0.zip"]  # no temporary left over
    with zipfile.ZipFile(zips[0]) as zf:
        names = set(zf.namelist())
        packed = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert packed == manifest
    addon_py = {p.name for p in (ROOT / "scorehmr_blender").glob("*.py")}
    assert {"__init__.py", "panel.py", "properties.py", "preferences.py", "operators.py", "importer.py",
            "result.py", "convert.py", "armature.py", "keyframes.py", "camera.py", "batch.py"} <= addon_py <= names
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)
    backend_py = {"backend/" + p.relative_to(ROOT / "backend").as_posix()
                  for p in (ROOT / "backend").rglob("*.py") if "__pycache__" not in p.parts}
    assert backend_py <= names
    assert {"backend/assets/prior.pt", "backend/assets/regressor.pt", "requirements/engine.txt",
            "requirements/detect.txt", "requirements/constraints.txt"} <= names
    assert "built " in proc.stdout and "Blender's extension build and validate: passed" in proc.stdout


# Research files in the places they lived before ``lab/`` existed (tests/shipping/test_layout.py blocks the same
# modules).
OLD_RESEARCH_FILES = {"backend/ablate.py", "backend/bench.py", "backend/bench_video.py", "backend/bench_detections.py",
                      "backend/plots.py", "backend/models/train.py", "backend/models/motion_train.py",
                      "backend/models/report.py", "backend/detect/evaluate.py", "backend/body/figure.py",
                      "backend/body/free_model_build.py", "backend/assets/val_batch.npz"}


def test_the_zip_ships_no_research_code(built):
    """Nothing of lab/ (benchmarks, training, simulator, data conversion, its validation batch) in the extension,
    neither under lab/ nor left in backend/ where it used to live."""
    out, _ = built
    with zipfile.ZipFile(next(out.iterdir())) as zf:
        names = set(zf.namelist())
    research = sorted(n for n in names if n.startswith(("lab/", "backend/sim/", "backend/data/"))
                      or n in OLD_RESEARCH_FILES or n.rpartition("/")[2] == "val_batch.npz")
    assert research == []


@pytest.mark.blender_versions  # this Blender's `extension build` writes the zip
@needs_blender
def test_the_zip_is_readable_by_everyone_whatever_the_umask(tmp_path):
    """Mode 644 (it was 600, from a temporary file), even when the umask would make it private."""
    previous = os.umask(0o077)
    try:
        path = build.build_package(tmp_path, TOOL)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@needs_blender
@pytest.mark.parametrize("old, new, message", [
    ('tagline = "Refine 3D', 'tagline = "' + "y" * 70 + '"\n#', "no longer than 64 characters"),
    ("pip-installs the engine packages", "pip-installs the engine packages.", "must not end with punctuation"),
    ('id = "refine_motion"', 'id = "refine-motion"', "key \"id\" invalid"),
    ('version = "0.1.0"', 'version = "0.1"', "semantic-version"),
])
@pytest.mark.blender_versions  # this Blender's own manifest checks and messages
def test_blenders_build_refuses_a_bad_manifest_and_names_it(tmp_path, monkeypatch, old, new, message):
    bad = tmp_path / "blender_manifest.toml"
    text = (ROOT / "blender_manifest.toml").read_text()
    assert old in text
    bad.write_text(text.replace(old, new))
    monkeypatch.setattr(build, "MANIFEST", bad)
    with pytest.raises(build.BuildError, match="Blender's extension build failed") as info:
        build.build_package(tmp_path / "out", TOOL)
    assert message in str(info.value) and str(bad) in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written


@pytest.mark.blender_versions  # this Blender's `extension build`
@needs_blender
def test_failed_check_leaves_no_half_written_zip(tmp_path, monkeypatch):
    def reject(_path):
        raise build.BuildError("rejected")
    monkeypatch.setattr(build, "check_zip", reject)
    with pytest.raises(build.BuildError, match="rejected"):
        build.build_package(tmp_path, TOOL)
    assert list(tmp_path.iterdir()) == []


def zip_with(path, name, data):
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(ROOT / "blender_manifest.toml", "blender_manifest.toml")
        zf.writestr("__init__.py", "")
        zf.writestr(name, data)
    return path


def test_zip_check_rejects_a_bundled_torch(tmp_path):
    with pytest.raises(build.BuildError, match="must not bundle torch"):
        build.check_zip(zip_with(tmp_path / "pkg.zip", "torch/__init__.py", ""))


def test_zip_check_rejects_large_files(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "MAX_FILE_BYTES", 1024)
    with pytest.raises(build.BuildError, match="big.bin is"):
        build.check_zip(zip_with(tmp_path / "pkg.zip", "big.bin", b"0" * 2048))


def test_unknown_commands_print_usage_and_exit_2():
    proc = run_build("frobnicate")
    assert proc.returncode == 2
    assert "unknown command 'frobnicate'" in proc.stderr and "usage:" in proc.stderr
