"""`build.py` batch mode: refine shots headless into .blend files (`python build.py -- --footage ...`)."""

import importlib.util
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = [ROOT / "backend" / "assets" / name for name in ("regressor.pt", "prior.pt")]
needs_weights = pytest.mark.skipif(not all(p.is_file() for p in WEIGHTS), reason="trained weights not committed yet")

# Load build.py by path: a plain "import build" could find PyPA's "build" package.
_spec = importlib.util.spec_from_file_location("refine_motion_build_batch", ROOT / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def run_build(*args):
    # One torch thread, as in the test process (conftest.py): the test machines have 2 cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "build.py"), "--", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def options(**given):
    opts = vars(build.refine_parser().parse_args(["--footage", "x", "--keypoints", "y"]))
    opts.update(given)
    return Namespace(**opts)


def touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- pairing shots and outputs (no Blender needed) --------------------------------------------------

def test_one_shot_outputs_default_next_to_the_footage(tmp_path):
    video, kp = touch(tmp_path / "a.mp4"), touch(tmp_path / "kp.json")
    (shot,) = build.batch_shots(options(footage=[str(video)], keypoints=[str(kp)]))
    assert shot == dict(footage=video, keypoints=kp, init=None, blend=tmp_path / "a.blend", bvh=None, fbx=None)
    (shot,) = build.batch_shots(options(footage=[str(video)], keypoints=[str(kp)], out=str(tmp_path / "o.blend"),
                                        bvh=str(tmp_path / "exports") + "/", fbx=str(tmp_path / "a.fbx")))
    assert (shot["blend"], shot["bvh"], shot["fbx"]) == (tmp_path / "o.blend", tmp_path / "exports" / "a.bvh",
                                                         tmp_path / "a.fbx")


def test_folders_pair_keypoints_and_init_by_footage_name(tmp_path):
    for name in ("b.mov", "a.mp4", "notes.txt"):
        touch(tmp_path / "shots" / name)
    kp_a = touch(tmp_path / "kp" / "a.json")
    openpose_b = touch(tmp_path / "kp" / "b" / "b_000000000000_keypoints.json").parent
    init_a, init_b = touch(tmp_path / "init" / "a.npz"), touch(tmp_path / "init" / "b.pkl")
    shots = build.batch_shots(options(footage=[str(tmp_path / "shots")], keypoints=[str(tmp_path / "kp")],
                                      init=[str(tmp_path / "init")], out=str(tmp_path / "out"),
                                      bvh=str(tmp_path / "bvh")))
    assert [(s["footage"].name, s["keypoints"], s["init"], s["blend"], s["bvh"]) for s in shots] == [
        ("a.mp4", kp_a, init_a, tmp_path / "out" / "a.blend", tmp_path / "bvh" / "a.bvh"),
        ("b.mov", openpose_b, init_b, tmp_path / "out" / "b.blend", tmp_path / "bvh" / "b.bvh"),
    ]


def test_an_openpose_folder_belongs_to_the_one_shot(tmp_path):
    video = touch(tmp_path / "a.mp4")
    openpose = touch(tmp_path / "json" / "a_000000000000_keypoints.json").parent
    (shot,) = build.batch_shots(options(footage=[str(video)], keypoints=[str(openpose)]))
    assert shot["keypoints"] == openpose


@pytest.mark.parametrize("change, message", [
    (dict(footage=["a.mp4", "missing.mp4"]), "--footage missing.mp4: not found"),
    (dict(keypoints=["a.json"]), r"--keypoints: give one per footage \(2\) or one folder"),
    (dict(keypoints=["kp"]), r"--keypoints kp: nothing for shot 'b' \(looked for b.npz/.npy/.json or b/\)"),
    (dict(footage=["a.mp4", "other/a.mp4"], keypoints=["a.json", "b.json"]), "two shots have the same name"),
    (dict(footage=["a.mp4"], keypoints=["a.json"], out="a.txt"), "--out a.txt: expected a .blend file"),
    (dict(footage=["a.mp4"], keypoints=["a.json"], out="exists.blend"), "output exists: .*exists.blend; pass --force"),
    (dict(footage=["empty"], keypoints=["kp"]), "--footage empty: no video files"),
])
def test_bad_batch_arguments(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "b.mp4", "other/a.mp4", "a.json", "b.json", "kp/a.json", "exists.blend"):
        touch(tmp_path / name)
    (tmp_path / "empty").mkdir()
    given = dict(footage=["a.mp4", "b.mp4"], keypoints=["a.json", "b.json"])
    given.update(change)
    with pytest.raises(build.BuildError, match=message):
        build.batch_shots(options(**given))


def test_force_allows_existing_outputs(tmp_path):
    video, kp = touch(tmp_path / "a.mp4"), touch(tmp_path / "a.json")
    touch(tmp_path / "a.blend")
    (shot,) = build.batch_shots(options(footage=[str(video)], keypoints=[str(kp)], force=True))
    assert shot["blend"] == tmp_path / "a.blend"


def test_missing_add_on_modules_are_named():
    with pytest.raises(build.BuildError, match="no_such_module is not available in this version of the add-on"):
        build._addon_module("no_such_module")


def test_scene_rate_keeps_ntsc_exact():
    assert build._scene_rate(24.0) == (24, 1.0)
    fps, base = build._scene_rate(30000 / 1001)
    assert fps == 30 and fps / base == pytest.approx(30000 / 1001, rel=1e-12)


def test_usage_and_argument_errors_exit_2_before_blender_starts(tmp_path):
    proc = run_build("--footage", tmp_path / "a.mp4")
    assert proc.returncode == 2 and "the following arguments are required: --keypoints" in proc.stderr
    proc = run_build("--footage", tmp_path / "a.mp4", "--keypoints", tmp_path / "a.json")
    assert proc.returncode == 1 and f"build.py: error: --footage {tmp_path / 'a.mp4'}: not found" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "--help"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and "--footage" in proc.stdout


# -- headless runs (bpy module) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Two tiny shots one.avi / two.avi with keypoints one.npz / two.npz in one folder."""
    pytest.importorskip("cv2")
    from tests.test_addon_refine import make_shot

    root = tmp_path_factory.mktemp("batch")
    return [make_shot(root, name=name, seed=seed) for seed, name in enumerate(("one", "two"))]


@pytest.mark.slow
def test_failing_shots_are_summarised_and_exit_1(shots, tmp_path):
    """Both shots fail on their inputs (before the engine): each gets a FAILED line, nothing is written."""
    bad_count = tmp_path / "long.npz"
    np.savez(bad_count, keypoints=np.tile(shots[0]["kp"], (2, 1, 1)))
    bad_format = touch(tmp_path / "bad.json", '{"foo": 1}')
    proc = run_build("--footage", shots[0]["video"], shots[1]["video"], "--keypoints", bad_count, bad_format,
                     "--out", tmp_path / "out", "--iterations", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "summary: 0 of 2 shots refined; failed: one, two" in proc.stdout
    assert "[1/2] one: FAILED: long.npz has 16 frames of keypoints but the footage has 8" in proc.stderr
    assert "[2/2] two: FAILED: " in proc.stderr and "bad.json: has no field 'keypoints'" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@needs_weights
def test_batch_refines_a_folder_of_shots_into_blend_files_that_load_back(shots, tmp_path):
    import bpy

    folder = shots[0]["video"].parent
    args = ("--footage", folder, "--keypoints", folder, "--out", tmp_path / "out", "--bvh", tmp_path / "bvh",
            "--iterations", "1")
    proc = run_build(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: 2 of 2 shots refined" in proc.stdout
    for name in ("one", "two"):
        assert f"{name}: 8 frames, reprojection error" in proc.stdout
        assert "Frames: 8" in (tmp_path / "bvh" / f"{name}.bvh").read_text()
        bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "out" / f"{name}.blend"))
        rig = bpy.data.objects[name]
        action = rig.animation_data.action
        assert action.name == name and action.frame_range[:] == pytest.approx((1, 8))
        assert bpy.context.scene.render.fps == 24 and bpy.context.scene.frame_end == 8
        assert bpy.data.objects[f"{name}_camera"].data.background_images[0].clip.frame_duration == 8
    bpy.ops.wm.read_factory_settings(use_empty=True)

    again = run_build(*args)  # outputs are never overwritten without --force
    assert again.returncode == 1 and "output exists" in again.stderr


@pytest.mark.slow
@needs_weights
def test_batch_retargets_onto_a_character_and_exports_it(shots, tmp_path):
    import bpy

    from tests.test_addon_retarget import rigify_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    character = rigify_rig().name
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "character.blend"))
    proc = run_build("--footage", shots[0]["video"], "--keypoints", shots[0]["keypoints"], "--out",
                     tmp_path / "one.blend", "--bvh", tmp_path / "one.bvh", "--fbx", tmp_path / "one.fbx",
                     "--retarget", tmp_path / "character.blend", "--preset", "rigify", "--iterations", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ROOT DEF-" in (tmp_path / "one.bvh").read_text()  # the character's motion, not SMPL's
    assert (tmp_path / "one.fbx").stat().st_size > 0
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "one.blend"))
    action = bpy.data.objects[character].animation_data.action
    assert action is not None and action.frame_range[:] == pytest.approx((1, 8))
    assert bpy.data.objects["one"].animation_data.action.name == "one"
    bpy.ops.wm.read_factory_settings(use_empty=True)
