"""`build.py` batch mode: refine shots headless into .blend files (`python build.py -- --footage ...`), or
import engine results as they are (`--result`); every argument is checked before any engine work."""

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from scorehmr_blender import batch

ROOT = Path(__file__).resolve().parents[2]
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
    return batch.Options(**vars(build.refine_parser().parse_args(["--footage", "x", "--keypoints", "y"])) | given)


def touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def paths(shot):
    return dict(footage=shot.footage, keypoints=shot.keypoints, init=shot.init, result=shot.result,
                blend=shot.blend, bvh=shot.bvh, fbx=shot.fbx)


def engine_started(proc):
    return "engine:" in proc.stdout or "iteration" in proc.stdout


# -- pairing shots and outputs (paths only) -----------------------------------------------------------------

def test_one_shot_outputs_default_next_to_the_footage(tmp_path):
    video, kp = touch(tmp_path / "a.mp4"), touch(tmp_path / "kp.json")
    (shot,) = batch.shots(options(footage=[str(video)], keypoints=[str(kp)]))
    assert paths(shot) == dict(footage=video, keypoints=kp, init=None, result=None, blend=tmp_path / "a.blend",
                               bvh=None, fbx=None)
    (shot,) = batch.shots(options(footage=[str(video)], keypoints=[str(kp)], out=str(tmp_path / "o.blend"),
                                  bvh=str(tmp_path / "exports") + "/", fbx=str(tmp_path / "a.fbx")))
    assert (shot.blend, shot.bvh, shot.fbx) == (tmp_path / "o.blend", tmp_path / "exports" / "a.bvh",
                                                tmp_path / "a.fbx")


def test_folders_pair_keypoints_and_init_by_footage_name(tmp_path):
    for name in ("b.mov", "a.mp4", "notes.txt"):
        touch(tmp_path / "shots" / name)
    kp_a = touch(tmp_path / "kp" / "a.json")
    openpose_b = touch(tmp_path / "kp" / "b" / "b_000000000000_keypoints.json").parent
    init_a, init_b = touch(tmp_path / "init" / "a.npz"), touch(tmp_path / "init" / "b.pkl")
    shots = batch.shots(options(footage=[str(tmp_path / "shots")], keypoints=[str(tmp_path / "kp")],
                                init=[str(tmp_path / "init")], out=str(tmp_path / "out"), bvh=str(tmp_path / "bvh")))
    assert [(s.footage.name, s.keypoints, s.init, s.blend, s.bvh) for s in shots] == [
        ("a.mp4", kp_a, init_a, tmp_path / "out" / "a.blend", tmp_path / "bvh" / "a.bvh"),
        ("b.mov", openpose_b, init_b, tmp_path / "out" / "b.blend", tmp_path / "bvh" / "b.bvh"),
    ]


def test_an_openpose_folder_belongs_to_the_one_shot(tmp_path):
    video = touch(tmp_path / "a.mp4")
    openpose = touch(tmp_path / "json" / "a_000000000000_keypoints.json").parent
    (shot,) = batch.shots(options(footage=[str(video)], keypoints=[str(openpose)]))
    assert shot.keypoints == openpose


def test_results_are_shots_named_after_their_footage(tmp_path):
    result, video = touch(tmp_path / "refined.npz"), touch(tmp_path / "shot.mp4")
    (shot,) = batch.shots(options(keypoints=None, result=[str(result)], footage=[str(video)]))
    assert (shot.name, shot.result, shot.footage, shot.blend) == ("shot", result, video, tmp_path / "shot.blend")
    (shot,) = batch.shots(options(keypoints=None, footage=None, result=[str(result)]))
    assert (shot.name, shot.footage, shot.blend) == ("refined", None, tmp_path / "refined.blend")


@pytest.mark.parametrize("change, message", [
    (dict(footage=["a.mp4", "missing.mp4"]), "--footage missing.mp4: not found"),
    (dict(keypoints=["a.json"]), r"--keypoints: give one per footage \(2\) or one folder"),
    (dict(keypoints=["kp"]), r"--keypoints kp: nothing for shot 'b' \(looked for b.npz/.npy/.json or b/\)"),
    (dict(footage=["a.mp4", "other/a.mp4"], keypoints=["a.json", "b.json"]), "two shots have the same name"),
    (dict(footage=["a.mp4"], keypoints=["a.json"], out="a.txt"), "--out a.txt: expected a .blend file"),
    (dict(footage=["a.mp4"], keypoints=["a.json"], out="exists.blend"), "output exists: .*exists.blend; pass --force"),
    (dict(footage=["empty"], keypoints=["kp"]), "--footage empty: no video files"),
    (dict(footage=None, keypoints=None), "give --footage to refine .*or --result OUT.npz"),
    (dict(preset="rigify"), "--preset goes with --retarget"),
    (dict(focal_length=800.0, fov=40.0), "--focal-length or --fov, not both"),
    (dict(keypoints=None, result=["a.json"], smoothing=0.5), "--result imports .*--smoothing would change nothing"),
    (dict(keypoints=None, result=["a.json"], height=1.78), "--result imports .*--height would change nothing"),
    (dict(keypoints=None, result=["missing.npz"]), "--result missing.npz: not found"),
    (dict(keypoints=None, result=["a.json", "b.json"], footage=["a.mp4"]), r"give one per --result \(2\) or none"),
])
def test_bad_batch_arguments(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "b.mp4", "other/a.mp4", "a.json", "b.json", "kp/a.json", "exists.blend"):
        touch(tmp_path / name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(batch.BatchError, match=message):
        batch.shots(options(**dict(footage=["a.mp4", "b.mp4"], keypoints=["a.json", "b.json"]) | change))


def test_without_keypoints_each_footage_of_a_folder_is_a_shot_to_detect(tmp_path):
    for name in ("b.mov", "a.mp4", "notes.txt"):
        touch(tmp_path / "shots" / name)
    shots = batch.shots(options(footage=[str(tmp_path / "shots")], keypoints=None, out=str(tmp_path / "out")))
    assert [(s.name, s.keypoints, s.blend) for s in shots] == [("a", None, tmp_path / "out" / "a.blend"),
                                                                ("b", None, tmp_path / "out" / "b.blend")]


def test_force_allows_existing_outputs(tmp_path):
    video, kp = touch(tmp_path / "a.mp4"), touch(tmp_path / "a.json")
    touch(tmp_path / "a.blend")
    (shot,) = batch.shots(options(footage=[str(video)], keypoints=[str(kp)], force=True))
    assert shot.blend == tmp_path / "a.blend"


@pytest.mark.parametrize("given, side, expected, source", [
    (dict(focal_length=800.0), {"focal_length": np.array(700.0)}, 800.0, "--focal-length"),
    (dict(fov=90.0), {"focal_length": np.array(700.0)}, 320.0, "--fov 90"),  # 640 px wide: tan(45 deg) = 1
    ({}, {"focal_length": np.array(700.0)}, 700.0, "kp.npz"),
    ({}, {}, 320 / math.tan(math.radians(27.5)), "default 55 deg field of view"),
])
def test_the_focal_length_comes_from_the_options_then_the_keypoint_file(given, side, expected, source):
    focal, used = batch._focal_length(options(**given), side, (640, 360), "kp.npz")
    assert focal == pytest.approx(expected) and used == source


def test_usage_and_argument_errors_exit_before_any_work(tmp_path):
    proc = run_build("--footage", tmp_path / "a.mp4", "--frames", "7:3")
    assert proc.returncode == 2 and "--frames" in proc.stderr
    proc = run_build("--out", tmp_path / "a.blend")
    assert proc.returncode == 1 and "give --footage to refine" in proc.stderr
    for keypoints in ([], ["--keypoints", tmp_path / "a.json"]):  # detected or given: the footage must be there
        proc = run_build("--footage", tmp_path / "a.mp4", *keypoints)
        assert proc.returncode == 1 and f"build.py: error: --footage {tmp_path / 'a.mp4'}: not found" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "--help"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and "--footage" in proc.stdout and "--result" in proc.stdout


def test_help_after_the_separator_lists_the_batch_options():
    """The general usage says to pass --help after --: that prints the options, not the usage again."""
    proc = run_build("--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--keypoints", "--retarget", "--smoothing", "--keypoint-trust", "--frames", "--force"):
        assert option in proc.stdout, proc.stdout
    assert "--help after --" not in proc.stdout


# -- headless runs (bpy module) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Two tiny shots one.avi / two.avi with keypoints one.npz / two.npz in one folder."""
    pytest.importorskip("cv2")
    from tests.addon.test_addon_refine import make_shot

    root = tmp_path_factory.mktemp("batch")
    return [make_shot(root, name=name, seed=seed) for seed, name in enumerate(("one", "two"))]


@pytest.fixture(scope="module")
def short_shot(tmp_path_factory):
    """A 6-frame shot short.avi / short.npz (the others have 8)."""
    from tests.addon.test_addon_refine import make_shot

    return make_shot(tmp_path_factory.mktemp("short"), name="short", frames=6, seed=2)


def at_rate(video, fps, out):
    """A copy of ``video`` playing at ``fps`` (the same frames)."""
    reader = cv2.VideoCapture(str(video))
    frames = []
    while (frame := reader.read()[1]) is not None:
        frames.append(frame)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return out


def character_blend(path):
    """A .blend holding a Rigify-like character armature (and nothing else)."""
    import bpy

    from tests.addon.test_addon_retarget import rigify_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    rigify_rig()
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return path


def job_focal_lengths(proc):
    """{shot: focal length (px) of the OBS.npz its job handed to the engine}, from the job folders printed."""
    found = {}
    for name, folder in re.findall(r"\[\d+/\d+\] (\w+): refining.*?\n  engine: .*?, job folder (\S+)", proc.stdout):
        with np.load(Path(folder) / "OBS.npz") as obs:
            found[name] = float(obs["focal_length"])
    return found


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
    assert "[1/2] one: FAILED: " in proc.stderr
    assert ("long.npz: one has 8 frames (0:8) but the keypoints cover 16 (footage frames 0:16)" in proc.stderr
            and "--frames 0:8 or --frames overlap" in proc.stderr)
    assert "[2/2] two: FAILED: " in proc.stderr and "bad.json: has no field 'keypoints'" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.blender_versions  # .blend files written and loaded back by this Blender, with their actions
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
        assert f"{name}: 8 frames, focal length 307.4 px (default 55 deg field of view), reprojection error" \
            in proc.stdout
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


@pytest.mark.blender_versions  # retargeting and the bundled exporters
@pytest.mark.slow
@needs_weights
def test_batch_retargets_onto_a_character_and_exports_it(shots, tmp_path):
    import bpy

    from tests.addon.test_addon_retarget import rigify_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    character = rigify_rig().name
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "character.blend"))
    proc = run_build("--footage", shots[0]["video"], "--keypoints", shots[0]["keypoints"], "--out",
                     tmp_path / "one.blend", "--bvh", tmp_path / "one.bvh", "--fbx", tmp_path / "one.fbx",
                     "--retarget", tmp_path / "character.blend", "--preset", "rigify_deform", "--iterations", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ROOT DEF-" in (tmp_path / "one.bvh").read_text()  # the character's motion, not SMPL's
    assert (tmp_path / "one.fbx").stat().st_size > 0
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "one.blend"))
    action = bpy.data.objects[character].animation_data.action
    assert action is not None and action.frame_range[:] == pytest.approx((1, 8))
    assert bpy.data.objects["one"].animation_data.action.name == "one"
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.mark.slow
def test_every_shot_is_checked_before_any_engine_work(shots, short_shot, tmp_path):
    """--frames 0:8 fits shot one (8 frames) but not shot two (6): the batch stops before refining one."""
    proc = run_build("--footage", shots[0]["video"], short_shot["video"], "--keypoints", shots[0]["keypoints"],
                     short_shot["keypoints"], "--frames", "0:8", "--out", tmp_path / "out", "--iterations", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[2/2] short: FAILED: " in proc.stderr
    assert ("short.npz: frame range 0:8 is outside the frames with both footage and keypoints (0:6); "
            "pick a range inside it: --frames 0:6 or --frames overlap") in proc.stderr
    assert "summary: 0 of 2 shots refined; failed: short" in proc.stdout
    assert not engine_started(proc) and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("character, preset, message", [
    ("rig", "foo", "--preset: unknown preset 'foo' (use one of rigify, rigify_metarig, rigify_deform, mixamo, ue5)"),
    ("text", None, "character.blend: not a .blend file Blender can read"),
    ("empty", None, "character.blend: has no armature object"),
    ("missing", None, "character.blend: file not found"),
])
def test_a_bad_character_or_preset_fails_before_any_engine_work(shots, tmp_path, character, preset, message):
    import bpy

    path = tmp_path / "character.blend"
    if character == "rig":
        character_blend(path)
    elif character == "text":
        path.write_text("not a blend file")
    elif character == "empty":
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
    proc = run_build("--footage", shots[0]["video"], "--keypoints", shots[0]["keypoints"], "--out",
                     tmp_path / "one.blend", "--retarget", path, *(["--preset", preset] if preset else []))
    assert proc.returncode == 1 and message in proc.stderr, proc.stdout + proc.stderr
    assert not engine_started(proc) and not (tmp_path / "one.blend").exists()


@pytest.mark.slow
def test_keypoints_recorded_at_another_rate_than_the_footage_are_refused(shots, tmp_path):
    """Footage at 30 fps with keypoints recorded at 24 fps: refused, naming both rates and the fix."""
    video = at_rate(shots[0]["video"], 30.0, tmp_path / "fast.avi")
    keypoints = tmp_path / "fast.npz"
    np.savez(keypoints, keypoints=shots[0]["kp"], fps=24.0)
    proc = run_build("--footage", video, "--keypoints", keypoints, "--out", tmp_path / "fast.blend")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("fast.npz: the keypoint file says 24 fps but fast plays at 30 fps" in proc.stderr
            and "re-run the detector on this footage" in proc.stderr)
    assert not engine_started(proc) and not (tmp_path / "fast.blend").exists()


@pytest.mark.slow
@needs_weights
def test_the_keypoint_files_focal_length_and_the_options_reach_the_engine(shots, tmp_path):
    """one.npz stores focal_length 700 px: the engine gets it (not the 55 deg default); two.npz stores
    none: the default (320 px wide); --focal-length overrides both."""
    with_focal = tmp_path / "kp" / "one.npz"
    with_focal.parent.mkdir()
    np.savez(with_focal, keypoints=shots[0]["kp"], focal_length=700.0)
    args = ("--footage", shots[0]["video"], shots[1]["video"], "--keypoints", with_focal, shots[1]["keypoints"],
            "--iterations", "1", "--device", "cpu", "--force")
    proc = run_build(*args, "--out", tmp_path / "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    default = 160 / math.tan(math.radians(27.5))
    assert job_focal_lengths(proc) == pytest.approx(dict(one=700.0, two=default))
    assert "focal length 700.0 px (one.npz)" in proc.stdout
    proc = run_build(*args, "--out", tmp_path / "b", "--focal-length", "500")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert job_focal_lengths(proc) == pytest.approx(dict(one=500.0, two=500.0))


@pytest.mark.slow
@needs_weights
def test_the_summary_shows_the_jobs_warnings(shots, tmp_path):
    """Keypoints with no person in footage frames 3-4: the shot is refined and the summary warns that
    scene frames 4-5 (footage frame i is scene frame 1 + i) are guessed."""
    gap = shots[0]["kp"].copy()
    gap[3:5] = 0.0
    keypoints = tmp_path / "one.npz"
    np.savez(keypoints, keypoints=gap)
    proc = run_build("--footage", shots[0]["video"], "--keypoints", keypoints, "--out", tmp_path / "one.blend",
                     "--iterations", "1", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout[proc.stdout.index("summary: 1 of 1 shots refined"):]
    assert "  one: warning: Few or no keypoints in scene frames 4-5" in summary


@pytest.mark.blender_versions  # the import's actions, camera and footage set-up in a saved .blend
@pytest.mark.slow
def test_a_result_is_imported_as_it_is_and_checked_against_its_footage(shots, tmp_path):
    import bpy

    from tests.support.result_fixture import write_result

    result = tmp_path / "one.npz"
    write_result(result, num_frames=8, fps=24.0)  # 1280x720 image, the footage is 320x240
    proc = run_build("--result", result, "--footage", shots[0]["video"], "--out", tmp_path / "one.blend")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "importing" in proc.stdout and "summary: 1 of 1 shots imported" in proc.stdout
    assert not engine_started(proc)
    # The import sets the scene to the result's image size (issue 20, item 15) and warns that the footage differs.
    assert "  one: warning: The footage is 320x240 but the result was refined on 1280x720 images" in proc.stdout
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "one.blend"))
    assert bpy.data.objects["one"].animation_data.action.frame_range[:] == pytest.approx((1, 8))
    assert bpy.context.scene.render.fps == 24
    bpy.ops.wm.read_factory_settings(use_empty=True)

    fast = at_rate(shots[0]["video"], 30.0, tmp_path / "fast.avi")
    proc = run_build("--result", result, "--footage", fast, "--out", tmp_path / "fast.blend")
    assert proc.returncode == 1 and "one.npz is 24 fps but fast.avi plays at 30 fps" in proc.stderr


# -- footage alone: the keypoints detected by the job (BlazePose) -------------------------------------------

EXAMPLE = ROOT / "examples" / "shot"
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def detector():
    """The batch options that give the job a detector: none where mediapipe imports in this Python, else
    the main venv as the worker (the bpy 4.2 / 4.5 test venvs)."""
    from scorehmr_blender.runner import placement

    if placement.detector_in_blender():
        return []
    if not MAIN_PYTHON.is_file():
        pytest.skip("mediapipe imports neither here nor in the main venv (.venv)")
    return ["--worker", MAIN_PYTHON]


@pytest.fixture(scope="module")
def example_cuts(tmp_path_factory):
    """A folder of two 24-frame cuts of the example shot (early.mp4: frames 0-23, late.mp4: 48-71)."""
    folder = tmp_path_factory.mktemp("cuts")
    reader = cv2.VideoCapture(str(EXAMPLE / "shot.mp4"))
    frames = [reader.read()[1] for _ in range(72)]
    reader.release()
    for name, cut in (("early", frames[:24]), ("late", frames[48:])):
        writer = cv2.VideoWriter(str(folder / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24.0,
                                 cut[0].shape[1::-1])
        for frame in cut:
            writer.write(frame)
        writer.release()
    return folder


def job_detections(proc):
    """{shot: (detections (F, 17, 3), the keypoints of the OBS.npz its job handed to the engine)}."""
    found = {}
    for name, folder in re.findall(r"\[\d+/\d+\] (\w+): refining.*?\n  engine: .*?, job folder (\S+)", proc.stdout):
        with np.load(Path(folder) / "view0.keypoints.npz") as kp, np.load(Path(folder) / "OBS.npz") as obs:
            found[name] = kp["keypoints"], obs["keypoints"]
    return found


@pytest.mark.slow
@needs_weights
def test_a_folder_of_footage_alone_is_detected_and_refined_shot_by_shot(example_cuts, detector, tmp_path):
    import bpy

    truth2d = np.load(EXAMPLE / "ground_truth.npz")["keypoints2d"]
    proc = run_build("--footage", example_cuts, "--out", tmp_path / "out", "--iterations", "1", "--device", "cpu",
                     *detector)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "refining " + str(example_cuts / "early.mp4") + " with keypoints detected in it (BlazePose)" in proc.stdout
    assert "Detecting the person: frame 24/24" in proc.stdout and "summary: 2 of 2 shots refined" in proc.stdout
    detections = job_detections(proc)
    for name, start in (("early", 0), ("late", 48)):
        kp, given = detections[name]
        np.testing.assert_allclose(given[..., :2], kp[..., :2], atol=1e-3)  # the engine refined the detections
        assert np.linalg.norm(kp[..., :2] - truth2d[start:start + 24], axis=-1).mean() < 8.0
        bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "out" / f"{name}.blend"))
        assert bpy.data.objects[name].animation_data.action.frame_range[:] == pytest.approx((1, 24))
        # The detections stay beside the outputs (not only in a job folder that another job may remove) and in
        # the .blend as tracking markers, the panel set to refine from them once corrected.
        assert f"detections {tmp_path / 'out' / name}.keypoints.npz" in proc.stdout
        with np.load(tmp_path / "out" / f"{name}.keypoints.npz") as kept:
            np.testing.assert_array_equal(kept["keypoints"], kp)
        from scorehmr_blender import properties, refine
        (clip,) = bpy.data.movieclips
        properties_registered = hasattr(bpy.types.Scene, "refine_motion")
        if not properties_registered:  # to read the stored settings
            for cls in properties.classes:
                bpy.utils.register_class(cls)
            properties.attach()
        try:
            settings = bpy.context.scene.refine_motion
            assert (settings.footage_source, settings.footage_clip, settings.keypoints_source) == ('CLIP', clip,
                                                                                                  'TRACKS')
        finally:
            if not properties_registered:
                properties.detach()
                for cls in reversed(properties.classes):
                    bpy.utils.unregister_class(cls)
        # Markers in the clip's normalised coordinates, y up (a reopened clip reports a size only once shown).
        video = cv2.VideoCapture(str(example_cuts / f"{name}.mp4"))
        size = np.array([video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)])
        video.release()
        markers = refine.clip_keypoints(clip)[..., :2] / np.array(clip.size)
        sure = kp[..., 2] >= refine.MARKER_MIN_CONFIDENCE
        want = kp[..., :2] / size
        np.testing.assert_allclose(markers[sure], want[sure], atol=1e-4)
        assert (refine.clip_keypoints(clip)[..., 2] > 0).tolist() == sure.tolist()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # ... and are reused as they are with --keypoints.
    proc = run_build("--footage", example_cuts / "early.mp4", "--keypoints", tmp_path / "out" / "early.keypoints.npz",
                     "--out", tmp_path / "again.blend", "--iterations", "1", "--device", "cpu")
    assert proc.returncode == 0 and "summary: 1 of 1 shots refined" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_detection_problems_are_one_line_per_shot_and_leave_no_output(example_cuts, detector, tmp_path):
    """--frames beyond a clip fails every shot before any detection; a clip without a person fails in its
    detection stage, without a .blend, while the other shot is refined."""
    proc = run_build("--footage", example_cuts, "--frames", "0:30", "--out", tmp_path / "a", *detector)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[1/2] early: FAILED: --frames 0:30 is outside early's 24 frames" in proc.stderr
    assert not engine_started(proc) and not (tmp_path / "a").exists()

    if not WEIGHTS[0].is_file():
        return
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "early.mp4").symlink_to(example_cuts / "early.mp4")
    writer = cv2.VideoWriter(str(mixed / "nobody.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, (160, 120))
    for _ in range(6):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    proc = run_build("--footage", mixed, "--out", tmp_path / "b", "--iterations", "1", "--device", "cpu", *detector)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[2/2] nobody: FAILED: " in proc.stderr and "no person found in any of the 6 frames 0-5" in proc.stderr
    assert "summary: 1 of 2 shots refined; failed: nobody" in proc.stdout
    # The refined shot's detections are kept beside its .blend (issue 20, item 5); the failed shot left nothing.
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["early.blend", "early.keypoints.npz"]


def test_without_a_detector_anywhere_each_shot_fails_before_any_work(example_cuts, tmp_path, monkeypatch):
    import bpy

    from scorehmr_blender.runner import placement

    monkeypatch.setattr(placement, "detector_in_blender", lambda: False)
    given = options(footage=[str(example_cuts)], keypoints=None, out=str(tmp_path / "out"))
    found = batch.shots(given)
    failed = batch.check_shots(bpy.context, given, found, placement.Runner("in_process", root=ROOT))
    assert sorted(failed) == ["early", "late"]
    assert re.match(r"Detect from Footage needs the detector \(mediapipe\).*\(or pass --worker PYTHON\)$",
                    failed["early"]), failed["early"]


@pytest.mark.slow
@needs_weights
def test_the_readme_batch_command_saves_a_blend_that_finds_its_footage(tmp_path):
    """Item 4: the README's command, as given (relative paths, from the folder holding build.py), saves
    footage paths relative to the .blend ('//...'): reopened from anywhere, the clip's file is there and
    the footage camera shows it.  --absolute-paths stores the absolute path instead."""
    import bpy

    work = tmp_path / "checkout"
    work.mkdir()
    (work / "build.py").symlink_to(ROOT / "build.py")
    (work / "examples").symlink_to(ROOT / "examples")
    command = "python build.py -- --footage examples/shot/shot.mp4 --keypoints examples/shot/keypoints.npz " \
              "--out out/shot.blend"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra, blend in (([], "out/shot.blend"), (["--absolute-paths", "--iterations", "1"], "abs/shot.blend")):
        args = [sys.executable, *command.split()[1:-1], blend, *extra]
        proc = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=1800, env=env, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        bpy.ops.wm.open_mainfile(filepath=str(work / blend))
        (clip,) = bpy.data.movieclips
        assert clip.filepath.startswith("/" if extra else "//"), clip.filepath
        assert Path(bpy.path.abspath(clip.filepath)).resolve() == (ROOT / "examples/shot/shot.mp4").resolve()
        camera = bpy.data.objects["shot_camera"].data
        assert camera.show_background_images and camera.background_images[0].clip == clip
        assert clip.frame_duration == 96
    bpy.ops.wm.read_factory_settings(use_empty=True)


# -- the options shared with python -m backend batch, and --ray (handing the clips to its runner) ---------------

SHARED_ARGS = ["--mode", "frame", "--iterations", "2", "--smpl", "m.pkl", "--device", "cpu", "--retarget", "r.blend",
               "--preset", "mixamo", "--ray-address", "head:6379", "--num-cpus", "3", "--cpus-per-clip", "2",
               "--clips-per-gpu", "4"]


def shared_actions(parser):
    """{dest: what the parser does with it} of the options both batch entry points share."""
    from backend.contract.batch_options import shared_dests

    return {a.dest: (a.option_strings, a.type, a.choices, a.default, a.nargs, a.help) for a in parser._actions
            if a.dest in shared_dests()}


def test_the_shared_batch_options_parse_the_same_in_both_entry_points():
    from backend.batch import cli
    from backend.contract.batch_options import shared_dests

    runner = cli.parser().parse_args(["clip.mp4", "--out", "out", *SHARED_ARGS])
    blender = build.refine_parser().parse_args(["--footage", "clip.mp4", *SHARED_ARGS])
    assert {d: getattr(blender, d) for d in shared_dests()} == {d: getattr(runner, d) for d in shared_dests()}
    assert blender.num_cpus == 3 and blender.cpus_per_clip == 2.0 and blender.mode == "frame"
    assert shared_actions(build.refine_parser()) == shared_actions(cli.parser())  # one definition
    defaults = (build.refine_parser().parse_args(["--footage", "clip.mp4"]),
                cli.parser().parse_args(["clip.mp4", "--out", "out"]))
    assert [{d: getattr(ns, d) for d in shared_dests()} for ns in defaults] == 2 * [
        dict(mode="video", iterations=None, smpl=None, device=None, retarget=None, preset=None, ray_address=None,
             num_cpus=None, cpus_per_clip=1.0, clips_per_gpu=1)]


def test_ray_hands_the_clips_and_shared_options_to_the_runners_command_line(tmp_path, monkeypatch):
    from backend.batch import cli

    monkeypatch.chdir(tmp_path)
    for name in ("takes/a.mp4", "takes/b.mov", "kp/a.npz", "kp/b.json"):
        touch(tmp_path / name)
    parsed = build.refine_parser().parse_args(["--footage", "takes", "--keypoints", "kp", "--out", "refined", "--bvh",
                                               "--ray", *SHARED_ARGS])
    command = batch.ray_command(batch.Options(**vars(parsed)), "/worker/python")
    assert command[:4] == ["/worker/python", "-m", "backend", "batch"]
    handed = cli.parser().parse_args(command[4:])
    assert handed.clips == [str(tmp_path / "takes" / "a.mp4"), str(tmp_path / "takes" / "b.mov")]
    assert (handed.out, handed.keypoints_dir) == (str(tmp_path / "refined"), str(tmp_path / "kp"))
    assert (handed.blend, handed.bvh, handed.fbx, handed.no_ray) == (True, True, False, False)
    assert handed.blender == sys.executable  # the exports: this Python's bpy (a Blender: its executable)
    for dest in ("mode", "iterations", "device", "preset", "ray_address", "num_cpus", "cpus_per_clip", "clips_per_gpu"):
        assert getattr(handed, dest) == getattr(parsed, dest), dest
    assert (handed.smpl, handed.retarget) == (str(tmp_path / "m.pkl"), str(tmp_path / "r.blend"))  # absolute


@pytest.mark.parametrize("args, message", [
    (["--in-place", "--retarget", "r.blend"], "--in-place is not available with --ray"),
    (["--focal-length", "800"], "--focal-length is not available with --ray"),
    (["--fov", "40"], "--fov is not available with --ray"),
    (["--force"], "--force is not available with --ray"),
    (["--first-frame", "1"], "--first-frame is not available with --ray"),
    (["--keypoints", "kp/a.npz"], "--ray finds each clip's keypoints by its name in one folder"),
    (["--bvh", "a.bvh"], "--ray exports into OUT/<clip>/<clip>.bvh: give --bvh without a path"),
    (["--preset", "rigify"], "--preset goes with --retarget"),
])
def test_ray_refuses_what_the_runner_lacks_before_any_work(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "kp" / "a.npz")
    touch(tmp_path / "a.mp4")
    given = batch.Options(**vars(build.refine_parser().parse_args(["--footage", "a.mp4", "--out", "refined", "--ray",
                                                                   *args])))
    with pytest.raises(batch.BatchError, match=re.escape(message)):
        batch.run(given)
    assert not (tmp_path / "refined").exists()


def test_ray_options_without_ray_and_a_blend_as_ray_output_are_refused(tmp_path):
    video = touch(tmp_path / "a.mp4")
    with pytest.raises(batch.BatchError, match="--num-cpus goes with --ray"):
        batch.run(options(footage=[str(video)], keypoints=None, num_cpus=2))
    with pytest.raises(batch.BatchError, match="--ray writes OUT/<clip>/ for every clip"):
        batch.run(options(footage=[str(video)], keypoints=None, out=str(tmp_path / "a.blend"), ray=True))


def test_an_export_option_without_a_path_writes_beside_each_blend(tmp_path):
    video, kp = touch(tmp_path / "a.mp4"), touch(tmp_path / "a.json")
    parsed = build.refine_parser().parse_args(["--footage", str(video), "--keypoints", str(kp), "--out",
                                               str(tmp_path / "out") + "/", "--bvh", "--fbx"])
    (shot,) = batch.shots(batch.Options(**vars(parsed)))
    assert (shot.blend, shot.bvh, shot.fbx) == (tmp_path / "out" / "a.blend", tmp_path / "out" / "a.bvh",
                                                tmp_path / "out" / "a.fbx")


def test_a_known_height_goes_to_the_engine_request():
    parsed = build.refine_parser().parse_args(["--footage", "x", "--keypoints", "y", "--height", "1.78"])
    assert batch.Options(**vars(parsed)).height == 1.78
    with pytest.raises(SystemExit):
        build.refine_parser().parse_args(["--footage", "x", "--height", "-1"])
