"""`build.py package` makes a valid, installable extension zip."""

import copy
import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Load build.py by path: a plain "import build" could find PyPA's "build" package.
_spec = importlib.util.spec_from_file_location("refine_motion_build", ROOT / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def run_build(*args):
    return subprocess.run([sys.executable, str(ROOT / "build.py"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def manifest():
    with open(ROOT / "blender_manifest.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = run_build("package", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_manifest_fields(manifest):
    assert build.validate_manifest(manifest) == []
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
    assert len(manifest["tagline"]) <= 64 and manifest["tagline"][-1].isalnum()


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
            "result.py", "convert.py", "armature.py", "keyframes.py", "camera.py"} <= addon_py <= names
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)
    backend_py = {"backend/" + p.relative_to(ROOT / "backend").as_posix()
                  for p in (ROOT / "backend").rglob("*.py") if "__pycache__" not in p.parts}
    assert backend_py <= names
    assert "built " in proc.stdout and "Blender's extension validate" in proc.stdout


def test_package_passes_blenders_own_validator(built):
    _, proc = built
    if build.find_validator() is None:
        pytest.skip("no Blender executable or bpy module with its extension validator")
    assert "extension validate: passed" in proc.stdout


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(tagline="x" * 65), "tagline is 65 characters"),
    (lambda m: m.update(tagline="Ends with a period."), "tagline must not end with punctuation"),
    (lambda m: m.update(id="refine-motion"), "not a valid identifier"),
    (lambda m: m.update(version="0.1"), "not semantic"),
    (lambda m: m.update(blender_version_min="4.1.0"), "older than 4.2.0"),
    (lambda m: m.update(license=["GPL-3.0-or-later"]), "'SPDX:' identifier"),
    (lambda m: m.update(permissions={"files": ""}), "needs a reason string"),
    (lambda m: m.update(permissions={"files": "Read files."}), "must not end with punctuation"),
    (lambda m: m.pop("maintainer"), "missing required field 'maintainer'"),
])
def test_validator_rejects_bad_manifests(manifest, change, message):
    bad = copy.deepcopy(manifest)
    change(bad)
    errors = build.validate_manifest(bad)
    assert any(message in e for e in errors), errors


def test_invalid_manifest_fails_the_build(tmp_path, monkeypatch, manifest):
    bad = tmp_path / "blender_manifest.toml"
    text = (ROOT / "blender_manifest.toml").read_text()
    bad.write_text(text.replace(manifest["tagline"], "y" * 70))
    monkeypatch.setattr(build, "MANIFEST", bad)
    with pytest.raises(build.BuildError, match="tagline is 70 characters"):
        build.build_package(tmp_path / "out")


def test_failed_check_leaves_no_half_written_zip(tmp_path, monkeypatch):
    def reject(_path):
        raise build.BuildError("rejected")
    monkeypatch.setattr(build, "check_zip", reject)
    with pytest.raises(build.BuildError, match="rejected"):
        build.build_package(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    ("module.pyc", "compiled Python file"),
    ("torch/__init__.py", "must not bundle torch"),
])
def test_zip_check_rejects_unwanted_files(tmp_path, extra, message):
    path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(ROOT / "blender_manifest.toml", "blender_manifest.toml")
        zf.writestr("__init__.py", "")
        zf.writestr(extra, "")
    with pytest.raises(build.BuildError, match=message):
        build.check_zip(path)


def test_zip_check_rejects_large_files(tmp_path, monkeypatch):
    path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(ROOT / "blender_manifest.toml", "blender_manifest.toml")
        zf.writestr("__init__.py", "")
        zf.writestr("big.bin", b"0" * 2048)
    monkeypatch.setattr(build, "MAX_FILE_BYTES", 1024)
    with pytest.raises(build.BuildError, match="big.bin is"):
        build.check_zip(path)


def test_zip_check_requires_init_at_root(tmp_path):
    path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(ROOT / "blender_manifest.toml", "blender_manifest.toml")
        zf.writestr("scorehmr_blender/__init__.py", "")
    with pytest.raises(build.BuildError, match="__init__.py missing at the zip root"):
        build.check_zip(path)


def test_other_arguments_print_usage_and_exit_2():
    proc = run_build("--footage", "clip.mp4")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
