"""The Refine operator in real bpy: inputs -> engine job (in Blender or a worker) -> armature + action.

Without the trained weights (backend/assets/*.pt) the engine-dependent tests skip; the
plumbing is tested with a stand-in engine (in-process) and a stand-in worker package
(subprocess) that return fixture results (tests/support/result_fixture.py).
"""

import json
import math
import re
import sys
import textwrap
import time
from pathlib import Path

import bpy
import numpy as np
import pytest
import torch
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector

import scorehmr_blender
from backend import service
from backend.contract.results import Result
from scorehmr_blender import convert, importer, operators, preferences, refine, result, scene_setup, staging
from scorehmr_blender.runner import job as jobs
from scorehmr_blender.runner import placement, worker_env
from scorehmr_blender.runner.engine import RefineError
from tests.support import result_fixture
from tests.addon.test_addon import CheckedLayout, real_layout  # noqa: F401 -- real_layout is a fixture
from tests.addon.test_addon_import import fcurves_of, keys, posed_heads
from tests.addon.test_addon_retarget_ops import ListCheckedLayout

cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[2]
ADDON = scorehmr_blender.__name__
FPS, SIZE, FRAMES = 24.0, (320, 240), 8
C, W = convert.MODEL_TO_BLENDER, convert.CAMERA_TO_WORLD
WEIGHTS = [ROOT / "backend" / "assets" / name for name in service.WEIGHT_FILES]
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"
DATA_KINDS = ("objects", "armatures", "meshes", "actions", "cameras", "movieclips", "images", "collections")

needs_weights = pytest.mark.skipif(not all(p.is_file() for p in WEIGHTS), reason="trained weights not committed yet")


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def addon():
    import addon_utils  # importable once bpy is

    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert addon_utils.enable(ADDON, default_set=True, handle_error=None) is scorehmr_blender
    yield
    addon_utils.disable(ADDON, default_set=True, handle_error=None)
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture(autouse=True)
def scene(tmp_path, monkeypatch):
    """An empty scene at the footage's rate; job folders under tmp_path."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)  # keeps the add-on enabled
    monkeypatch.setattr(jobs, "jobs_root", lambda: tmp_path / "jobs")
    (tmp_path / "jobs").mkdir()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(FPS), 1.0
    scene.frame_start, scene.frame_end = 1, 20
    prefs = preferences.get(bpy.context)
    prefs.engine_location, prefs.worker_python, prefs.smpl_path = 'AUTO', "", ""
    return scene


def make_shot(folder, name="shot", frames=FRAMES, seed=0):
    """A tiny video ``name``.avi (MJPG, dots at the keypoints) and its COCO-17 keypoints ``name``.npz
    from lab.sim's video observations of a body going from arms-down to a squat."""
    from backend.body.body_model import BodyModel
    from backend.body.example_poses import example_pose
    from lab.sim.observations import video_observations

    folder.mkdir(parents=True, exist_ok=True)
    bm = BodyModel.load(None, dtype=torch.float64)
    t = torch.linspace(0, 1, frames, dtype=torch.float64)[:, None, None]
    pose = (1 - t) * example_pose("arms_down", torch.float64) + t * example_pose("squat", torch.float64)
    params = dict(global_orient=torch.zeros(1, frames, 3, dtype=torch.float64),
                  body_pose=pose[:, 1:].reshape(1, frames, 69), betas=torch.zeros(10, dtype=torch.float64))
    obs = video_observations(bm, params, torch.Generator().manual_seed(seed), "low", fps=FPS,
                             camera_kwargs=dict(resolutions=(SIZE,)), as_numpy=True)
    kp = obs["keypoints"][0].astype(np.float32)
    np.savez(folder / f"{name}.npz", keypoints=kp)
    writer = cv2.VideoWriter(str(folder / f"{name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for i in range(frames):
        image = np.full((SIZE[1], SIZE[0], 3), 40, np.uint8)
        for x, y, c in kp[i]:
            if c > 0:
                cv2.circle(image, (int(x), int(y)), 2, (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return dict(video=folder / f"{name}.avi", keypoints=folder / f"{name}.npz", kp=kp)


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    return make_shot(tmp_path_factory.mktemp("shot"))


def use_shot(shot, **settings):
    s = bpy.context.scene.refine_motion
    s.footage_source, s.footage_path = 'FILE', str(shot["video"])
    s.keypoints_source, s.keypoints_path = 'FILE', str(shot["keypoints"])
    for key, value in settings.items():
        setattr(s, key, value)
    return s


def snapshot():
    """Names in the bpy.data collections an import touches, and the scene's frame/rate settings."""
    scene = bpy.context.scene
    data = {kind: sorted(item.name for item in getattr(bpy.data, kind)) for kind in DATA_KINDS}
    return data, (scene.frame_start, scene.frame_end, scene.frame_current, scene.render.fps,
                  scene.render.resolution_x, scene.camera)


def job_folders():
    return sorted(p for p in jobs.jobs_root().iterdir() if p.is_dir())


def assert_refused(message, fake_engine, job_started=False):
    """Refine stops with one line matching ``message`` before any job starts (``job_started``: in the job's
    detection stage, before the engine, so without a result); the file is unchanged."""
    before = snapshot()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.refinemotion.refine()
    text = str(err.value).strip()
    assert text.startswith("Error: Refine Motion: ") and "\n" not in text, text
    assert re.search(message, text), text
    assert snapshot() == before
    assert fake_engine.calls == []
    if job_started:
        assert not any((folder / "OUT.npz").exists() for folder in job_folders())
    else:
        assert job_folders() == []


def out_arrays():
    """The OUT.npz of the only job run."""
    (folder,) = job_folders()
    with np.load(folder / "OUT.npz") as npz:
        return {key: npz[key] for key in npz.files}


def assert_action_is_result(rig, action, arrays, first_frame):
    """The action keys the result's rotations and root motion at consecutive scene frames
    (documented formulas of convert.py, evaluated with mathutils): its world body turned Z up by C
    when it has a world frame, else its camera-frame body through W on the floor placement."""
    frames = len(arrays["transl"])
    expected_frames = first_frame + np.arange(frames)
    curves = fcurves_of(action)
    world = "transl_world" in arrays
    suffix, turn = ("_world", C) if world else ("", W)
    R = convert.axis_angle_to_matrix(
        np.concatenate([arrays["global_orient" + suffix], arrays["body_pose" + suffix]], 1).reshape(frames, 24, 3))
    for j, name in enumerate(convert.JOINT_NAMES):
        B = rig.data.bones[name].matrix_local.to_3x3()
        outer = Matrix(turn) if j == 0 else Matrix(C)
        path = f'pose.bones["{name}"].rotation_quaternion'
        times, values = zip(*(keys(curves[path, axis]) for axis in range(4)))
        np.testing.assert_allclose(times[0], expected_frames, atol=1e-5)
        q = np.stack(values, -1)
        for i in range(frames):
            want = (B.transposed() @ outer @ Matrix(R[i, j]) @ Matrix(C).transposed() @ B).to_quaternion()
            assert abs(np.dot(q[i], want)) == pytest.approx(1.0, abs=1e-5), (name, i)
    B0 = np.array(rig.data.bones["pelvis"].matrix_local.to_3x3())
    pelvis = arrays["rest_joints"][0]
    # Placed on the floor by the importer (staging.floor_placement, tested in test_addon_staging.py).
    shift = 0.0 if world else staging.floor_placement(result.from_arrays(arrays))[:3, 3]
    lift = importer.rest_on_floor(arrays["rest_vertices"])  # the rest body stands on the floor
    want = ((arrays["transl" + suffix] + pelvis) @ turn.T + shift - C @ (pelvis + lift)) @ B0
    for axis in range(3):
        times, values = keys(curves['pose.bones["pelvis"].location', axis])
        np.testing.assert_allclose(times, expected_frames, atol=1e-5)
        np.testing.assert_allclose(values, want[:, axis], atol=1e-5)
    heads = np.array([rig.data.bones[n].head_local for n in convert.JOINT_NAMES])
    np.testing.assert_allclose(heads, (arrays["rest_joints"] + lift) @ C.T, atol=1e-5)


# -- a stand-in engine (in-process) and worker package (subprocess) --------------------------------

class FakeEngine:
    """Engine.run's contract: reports 3 iterations, returns fixture arrays for the observed frames."""

    def __init__(self):
        self.calls = []

    def run(self, obs, init, mode, options, progress=None):
        self.calls.append(dict(obs=obs, init=init, mode=mode, options=options))
        for i in range(3):
            progress(i + 1, 3)
        motion = result_fixture.synthetic_motion(obs["keypoints"].shape[1])
        betas = torch.zeros(10, dtype=torch.float64)
        if mode == "multiview":  # per-view fields with a leading V axis, as Engine.run returns them
            return Result.from_arrays(result_fixture.multiview_arrays(*motion, betas, obs), per_view=True)
        return Result.from_arrays(result_fixture.result_arrays(*motion, betas, fps=obs["fps"], camera_in="arrays"))


@pytest.fixture
def fake_engine(monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr(jobs, "load_engine", lambda smpl, device: engine)
    return engine


FAKE_WORKER_MAIN = textwrap.dedent('''
    """Stand-in for `python -m backend refine` (tests only); what it does comes from FAKE_WORKER."""
    import json, os, shutil, sys, time
    args = sys.argv[1:]
    behaviour = os.environ["FAKE_WORKER"]
    out = args[args.index("--out") + 1]
    with open(os.path.join(os.path.dirname(out), "argv.json"), "w") as f:
        json.dump(args, f)
    if behaviour == "notorch":
        raise ModuleNotFoundError("No module named 'torch'")
    if behaviour == "error":
        print("error: OBS.npz: field 'keypoints' is odd; fix it", file=sys.stderr)
        sys.exit(2)
    for i in range(1, 4):
        print(f"PROGRESS {i}/3", flush=True)
        if behaviour == "sleep":
            time.sleep(60)
    print("wrote the result", flush=True)
    shutil.copyfile(os.environ["FAKE_RESULT"], out)
''')


@pytest.fixture
def fake_worker(tmp_path, monkeypatch):
    """A worker root whose backend package is the stand-in CLI, run by this Python."""
    root = tmp_path / "worker_root"
    (root / "backend" / "assets").mkdir(parents=True)
    (root / "backend" / "__init__.py").write_text("")
    (root / "backend" / "__main__.py").write_text(FAKE_WORKER_MAIN)
    for name in service.WEIGHT_FILES:
        (root / "backend" / "assets" / name).write_bytes(b"")
    result = tmp_path / "fixture_out.npz"
    result_fixture.write_result(result, num_frames=FRAMES, fps=FPS, camera_in="arrays")
    monkeypatch.setenv("FAKE_RESULT", str(result))
    monkeypatch.setenv("FAKE_WORKER", "ok")
    runner = placement.Runner("worker", python=sys.executable, root=root)
    monkeypatch.setattr(placement, "choose_runner", lambda *args: runner)
    return runner


# -- registration and drawing --------------------------------------------------------------------

@pytest.mark.blender_versions  # registration in this Blender's RNA
def test_refine_operator_and_subpanel_registered():
    cls = bpy.types.REFINEMOTION_OT_refine
    assert cls is operators.REFINEMOTION_OT_refine
    assert cls.bl_idname == "refinemotion.refine" and {'REGISTER', 'UNDO'} <= cls.bl_options
    assert bpy.ops.refinemotion.refine.poll()
    sub = bpy.types.REFINEMOTION_PT_refine
    assert sub.bl_parent_id == "REFINEMOTION_PT_main" and sub.bl_category == "Refine Motion"
    for name in ("setup_worker", "check_device"):
        getattr(bpy.ops.refinemotion, name).get_rna_type()


def draw(fn, layout, *args):
    log = {"props": [], "labels": [], "operators": []}
    fn(CheckedLayout(layout, log), *args)
    return log


@pytest.mark.blender_versions  # draw() into this Blender's UILayout
def test_refine_panel_draws_inputs_button_and_progress(real_layout):
    from scorehmr_blender import panel

    s = bpy.context.scene.refine_motion
    s.footage_source, s.keypoints_source, s.intrinsics = 'FILE', 'FILE', 'MANUAL'
    log = draw(panel.draw_refine, real_layout, bpy.context)
    steps = ["mode", "use_footage_range", "frame_start", "frame_end", "footage_rate", "use_active_rig"]
    assert log["props"] == ["footage_source", "footage_path", "keypoints_source", "keypoints_path", *steps]
    assert log["operators"] == ["refinemotion.refine"]
    log = draw(panel.draw_tuning, real_layout, bpy.context)
    assert log["props"] == ["keypoint_trust", "smoothing", "height", "keypoints_first_auto", "init_path",
                            "intrinsics", "focal_length", "device"]

    s.footage_source, s.keypoints_source, s.intrinsics = 'CLIP', 'TRACKS', 'ESTIMATE'
    log = draw(panel.draw_refine, real_layout, bpy.context)
    assert log["props"] == ["footage_source", "footage_clip", "keypoints_source", *steps]

    s.mode, s.keypoints_source = 'MULTI_VIEW', 'FILE'
    assert bpy.ops.refinemotion.view_add() == {'FINISHED'}
    log = {"props": [], "labels": [], "operators": [], "lists": []}
    panel.draw_refine(ListCheckedLayout(real_layout, log), bpy.context)
    assert log["props"] == ["footage_source", "footage_clip", "keypoints_source", "keypoints_path", "camera_object",
                            # then the selected view's inputs
                            "footage_source", "footage_path", "keypoints_source", "keypoints_path", "camera_object",
                            *steps]
    assert log["lists"] == [("REFINEMOTION_UL_views", "views", "active_view")]
    assert log["operators"] == ["refinemotion.view_add", "refinemotion.view_remove", "refinemotion.refine"]
    view = s.views[0]
    view.footage_path = "/takes/side.mp4"
    view.camera_object = bpy.data.objects.new("Side", bpy.data.cameras.new("Side"))
    row_log = {"props": [], "labels": [], "operators": []}
    panel.REFINEMOTION_UL_views.draw_item(None, bpy.context, CheckedLayout(real_layout, row_log), s, view, 0, s,
                                          "active_view", 0)
    assert row_log["labels"] == ["View 1: side.mp4", "Side"]
    s.mode = 'VIDEO'

    running = type("RunningJob", (), dict(progress=(3, 10), fraction=0.3, cancelling=False, finished=False,
                                          stage="refine"))()
    jobs._ACTIVE[:] = [running]
    try:
        assert not bpy.ops.refinemotion.refine.poll()  # one job at a time
        log = draw(panel.draw_refine, real_layout, bpy.context)
    finally:
        jobs._ACTIVE.clear()
    assert log["operators"] == [] and "Esc cancels" in log["labels"]


@pytest.mark.blender_versions  # draw() into this Blender's UILayout
def test_preferences_show_mode_device_and_setup_commands(real_layout):
    prefs = preferences.get(bpy.context)
    log = draw(preferences.draw_preferences, real_layout, prefs)
    assert log["props"] == ["smpl_path", "engine_location", "worker_python", "setup_command_venv",
                            "setup_command_torch", "setup_command_engine"]
    assert "refinemotion.setup_worker" in log["operators"]
    assert any(text.startswith("Engine runs: In Blender") for text in log["labels"])  # torch is here
    assert prefs.setup_command_torch.endswith("-m pip install --disable-pip-version-check torch==2.13.0")
    assert "requirements/engine.txt" in prefs.setup_command_engine.replace("\\", "/")

    running = type("Task", (), dict(state="running", step=1, commands=[[], [], []],
                                    last_output="Downloading torch"))()
    worker_env.SETUP[:] = [running]
    try:
        log = draw(preferences.draw_preferences, real_layout, prefs)
    finally:
        worker_env.SETUP.clear()
    assert "refinemotion.setup_worker" not in log["operators"]
    assert "Step 2/3: Downloading torch" in log["labels"]


# -- choosing where the engine runs ----------------------------------------------------------------

def test_choose_runner_in_blender_worker_or_not_configured(tmp_path, monkeypatch):
    assert placement.torch_in_blender()
    assert placement.choose_runner("AUTO", "").kind == "in_process"
    runner = placement.choose_runner("WORKER", sys.executable)
    assert (runner.kind, runner.python, runner.root) == ("worker", sys.executable, ROOT)

    monkeypatch.setattr(placement, "default_worker_python", lambda: tmp_path / "no-venv" / "bin" / "python")
    with pytest.raises(RefineError, match="Set Up Worker Environment"):
        placement.choose_runner("WORKER", "")
    with pytest.raises(RefineError, match="Worker Python not found"):
        placement.choose_runner("WORKER", str(tmp_path / "python9"))
    placement.forget_devices()  # the status is cached for draw(); "Check Again" asks again
    assert placement.engine_status("WORKER", "")[0] == "none"

    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    monkeypatch.setattr(placement, "default_worker_python", lambda: venv_python)
    assert placement.choose_runner("WORKER", "").python == str(venv_python)  # the set-up environment


def test_device_is_queried_once_through_the_worker_python():
    placement.forget_devices()
    runner = placement.Runner("worker", python=str(MAIN_PYTHON if MAIN_PYTHON.is_file() else sys.executable))
    assert placement.device_text(runner) is None  # the query runs in the background
    deadline = time.time() + 120
    while placement.device_query_running() and time.time() < deadline:
        time.sleep(0.1)
    text = placement.device_text(runner)
    expected = f"CUDA GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    assert text.startswith(expected)
    assert placement.cached_device_text(runner) == text


def test_job_folders_keep_the_newest(tmp_path):
    root = jobs.jobs_root()
    for i in range(jobs.KEEP_JOBS + 2):
        (root / f"20200101-0000{i:02d}-old").mkdir()
    folder = jobs.new_job_folder("my shot!")
    kept = sorted(p.name for p in root.iterdir())
    assert len(kept) == jobs.KEEP_JOBS and kept[-1] == folder.name
    assert kept[0] == "20200101-000003-old" and "-my_shot_-" in folder.name


# -- the Refine operator with a stand-in engine -----------------------------------------------------

@pytest.mark.blender_versions  # the result imported as an armature and its action
def test_refine_writes_the_job_and_imports_the_engine_result(shot, fake_engine):
    s = use_shot(shot, smoothing=0.5, keypoint_trust=2.0, frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}

    (call,) = fake_engine.calls
    assert call["mode"] == "video" and call["init"] is None
    assert (call["options"].smoothing, call["options"].keypoint_trust) == (0.5, 2.0)  # the engine's scale
    (folder,) = job_folders()
    with np.load(folder / "OBS.npz") as obs:
        np.testing.assert_allclose(obs["keypoints"], shot["kp"])
        np.testing.assert_allclose(obs["image_size"], SIZE)
        assert float(obs["fps"]) == FPS
        # The engine's default 55 degree field of view across the long side.
        assert float(obs["focal_length"]) == pytest.approx(SIZE[0] / (2 * math.tan(math.radians(55) / 2)))
    np.testing.assert_allclose(call["obs"]["keypoints"][0], shot["kp"], atol=1e-6)

    rig = bpy.data.objects["shot"]
    assert rig.animation_data.action.name == "shot"
    assert_action_is_result(rig, rig.animation_data.action, out_arrays(), first_frame=1)
    camera = bpy.data.objects["shot_camera"]
    clip = camera.data.background_images[0].clip
    assert Path(bpy.path.abspath(clip.filepath)) == shot["video"] and clip.frame_start == 1
    assert s.footage_path == str(shot["video"])


@pytest.mark.blender_versions  # undo in this Blender
def test_undo_after_a_refine_restores_the_scene(shot, fake_engine):
    use_shot(shot)
    bpy.ops.ed.undo_push(message="before refining")
    before = snapshot()
    # 'EXEC_DEFAULT', True: run and push an undo step, as a click in the UI does
    assert bpy.ops.refinemotion.refine('EXEC_DEFAULT', True) == {'FINISHED'}
    assert "shot" in bpy.data.objects and snapshot() != before
    bpy.ops.ed.undo()
    assert snapshot() == before


@pytest.mark.blender_versions  # keyframes written into this Blender's actions
def test_frame_range_selects_keypoints_and_keys_from_its_start(shot, fake_engine):
    use_shot(shot, frame_start=3, frame_end=6)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (folder,) = job_folders()
    with np.load(folder / "OBS.npz") as obs:
        np.testing.assert_allclose(obs["keypoints"], shot["kp"][2:6])
    rig = bpy.data.objects["shot"]
    assert_action_is_result(rig, rig.animation_data.action, out_arrays(), first_frame=3)
    # The footage still starts at scene frame 1 behind the camera.
    assert bpy.data.objects["shot_camera"].data.background_images[0].clip.frame_start == 1


def test_single_frame_mode_refines_the_current_frame(shot, fake_engine):
    use_shot(shot, mode='SINGLE_FRAME', intrinsics='MANUAL', focal_length=400.0)
    bpy.context.scene.frame_set(5)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    assert call["mode"] == "frame"
    np.testing.assert_allclose(call["obs"]["keypoints"][0], shot["kp"][4:5], atol=1e-6)
    assert float(call["obs"]["focal_length"][0]) == 400.0
    assert fcurves_of(bpy.data.actions["shot"])['pose.bones["pelvis"].location', 0].keyframe_points[0].co.x == 5


@pytest.mark.blender_versions  # Movie Clip tracking data read from this Blender
def test_movie_clip_footage_with_tracked_keypoints(shot, fake_engine):
    clip = bpy.data.movieclips.load(str(shot["video"]))
    clip.frame_start = 11
    kp = shot["kp"]
    for j in (0, 5, 6, 11, 12):  # nose, shoulders, hips; named in other spellings too
        name = {5: "Left Shoulder", 6: "right-shoulder"}.get(j, refine.COCO17_NAMES[j])
        track = clip.tracking.tracks.new(name=name, frame=1)
        for i in range(FRAMES):
            if (i, j) != (2, 0):  # the nose is missing at footage frame 2
                track.markers.insert_frame(i + 1, co=(kp[i, j, 0] / SIZE[0], 1 - kp[i, j, 1] / SIZE[1]))
        track.markers.find_frame(1).mute = j == 12  # a disabled marker counts as not detected
    clip.tracking.tracks.new(name="Track", frame=1)  # other tracks are ignored

    tracked = [0, 5, 6, 11, 12]
    expected = np.zeros_like(kp)
    expected[:, tracked, :2], expected[:, tracked, 2] = kp[:, tracked, :2], 1.0
    expected[2, 0] = expected[0, 12] = 0
    np.testing.assert_allclose(refine.clip_keypoints(clip), expected, atol=1e-3)

    s = bpy.context.scene.refine_motion
    s.footage_source, s.footage_clip, s.keypoints_source = 'CLIP', clip, 'TRACKS'
    s.frame_start, s.frame_end = 12, 14
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    np.testing.assert_allclose(call["obs"]["keypoints"][0], expected[1:4], atol=1e-3)
    rig = bpy.data.objects["shot"]  # named after the clip
    assert fcurves_of(rig.animation_data.action)['pose.bones["pelvis"].location', 0].keyframe_points[0].co.x == 12
    assert clip.frame_start == 11  # the user's clip keeps its place in the scene
    assert len(bpy.data.movieclips) == 1


def test_initial_estimate_is_sliced_to_the_frame_range(shot, fake_engine, tmp_path):
    init = {"global_orient": np.tile([math.pi, 0, 0], (FRAMES, 1)), "body_pose": np.zeros((FRAMES, 69)),
            "betas": np.zeros(10), "transl": np.tile([0, 0, 4.0], (FRAMES, 1))}
    init["transl"][:, 0] = np.arange(FRAMES)
    np.savez(tmp_path / "init.npz", **init)
    use_shot(shot, init_path=str(tmp_path / "init.npz"), frame_start=2, frame_end=4)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    np.testing.assert_allclose(call["init"]["transl"][:, 0], [1, 2, 3])



def test_openpose_folder_numbered_from_1_keeps_file_n_at_footage_frame_n(shot, fake_engine, tmp_path):
    """Files 1..7 hold the detections of footage frames 1..7 (scene frames 2..8): refining scene frames
    2-7 sends exactly those detections and keys from scene frame 2, as the command line maps them
    (tests/contract/test_refine_cli.py); the whole footage is refused with the frames both cover."""
    folder = result_fixture.write_openpose_folder(tmp_path / "openpose", shot["kp"][1:], first_number=1)
    use_shot(shot, keypoints_path=str(folder))
    assert_refused("the keypoints cover 7 \\(footage frames 1:8\\).*set Frame Start/End to scene frames 2-8$",
                   fake_engine)
    use_shot(shot, keypoints_path=str(folder), frame_start=2, frame_end=7)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    np.testing.assert_allclose(call["obs"]["keypoints"][0, :, :, :2], shot["kp"][1:7, :, :2], atol=1e-4)
    rig = bpy.data.objects["shot"]
    assert_action_is_result(rig, rig.animation_data.action, out_arrays(), first_frame=2)


@pytest.mark.blender_versions  # timeline markers and keyframes
def test_a_gap_in_the_keypoints_is_reported_and_marked_in_the_timeline(shot, fake_engine, tmp_path, capfd,
                                                                      real_layout):
    kp = shot["kp"].copy()
    kp[3:5] = np.nan  # footage frames 3-4 (scene frames 4-5): no detection
    use_shot(shot, keypoints_path=_write(tmp_path / "gap.npz", keypoints=kp))
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    reported = capfd.readouterr().out  # the operator's reports, as background Blender prints them
    assert "Warning: Refine Motion: Few or no keypoints in scene frames 4-5" in reported, reported
    markers = {m.name: m.frame for m in bpy.context.scene.timeline_markers}
    assert markers == {"shot: no keypoints 4-5": 4}
    warnings = list(jobs.LAST_WARNINGS)
    assert any("gap.npz: 25.0% frames missing" in w for w in warnings), warnings
    assert any(w.startswith("Few or no keypoints in scene frames 4-5") for w in warnings), warnings
    from scorehmr_blender import panel
    labels = draw(panel.draw_refine, real_layout, bpy.context)["labels"]
    assert all(w in labels for w in warnings)  # the panel shows them until the next refinement

# -- Multi-View: the main footage is view 0, the Views list the others -------------------------------

@pytest.fixture(scope="module")
def other_views(tmp_path_factory):
    """Views 1 and 2 (their own footage and keypoints, same frame count as ``shot``)."""
    folder = tmp_path_factory.mktemp("views")
    return [make_shot(folder, f"cam{i}", seed=i) for i in (1, 2)]


@pytest.fixture(scope="module")
def long_shot(tmp_path_factory):
    return make_shot(tmp_path_factory.mktemp("long"), "long", frames=FRAMES + 2, seed=3)


def use_views(shot, views, cameras=(), **settings):
    """Multi-View on ``shot`` (view 0) and ``views`` (make_shot dicts), added with the panel's + button;
    ``cameras``: Blender cameras of views 0, 1, ... (None: none)."""
    s = use_shot(shot, mode='MULTI_VIEW', **settings)
    for view_shot in views:
        assert bpy.ops.refinemotion.view_add() == {'FINISHED'}
        view = s.views[s.active_view]
        view.footage_source, view.footage_path = 'FILE', str(view_shot["video"])
        view.keypoints_source, view.keypoints_path = 'FILE', str(view_shot["keypoints"])
    for inputs, camera in zip((s, *s.views), cameras):
        inputs.camera_object = camera
    return s


def add_camera(name, location, target=(0.0, 0.0, 1.0), lens=35.0, scale=1.0, **data):
    """A Blender camera at ``location`` looking at ``target`` (+Y up in its view), data settings from ``data``."""
    camera = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    bpy.context.scene.collection.objects.link(camera)
    camera.location = location
    camera.rotation_euler = (Vector(target) - Vector(location)).to_track_quat('-Z', 'Y').to_euler()
    camera.scale = (scale,) * 3
    camera.data.lens = lens
    for key, value in data.items():
        setattr(camera.data, key, value)
    return camera


def three_cameras():
    """Views 0-2 around a person at the origin: other lenses, sensor fits, shifts and a scaled object."""
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = SIZE  # world_to_camera_view frames the render size
    cameras = [add_camera("Cam0", (0.0, -5.0, 1.2)),
               add_camera("Cam1", (4.0, -3.0, 1.5), lens=50.0, sensor_fit='VERTICAL', sensor_height=20.0, shift_x=0.1),
               add_camera("Cam2", (-4.0, -2.0, 2.5), lens=28.0, scale=2.0, shift_y=-0.05)]
    bpy.context.view_layer.update()  # their matrix_world
    return cameras


def read_obs():
    (folder,) = job_folders()
    with np.load(folder / "OBS.npz") as npz:
        return {key: npz[key] for key in npz.files}


def project(obs, view, points):
    """OBS.npz's pinhole projection of world points (N, 3) in ``view``: pixels (N, 2) and depths (N,)."""
    p = points @ obs["cam_R"][view].T + obs["cam_t"][view]
    return obs["focal_length"][view] * p[:, :2] / p[:, 2:] + obs["principal_point"][view], p[:, 2]


def blender_pixels(camera, points):
    """Blender's own view of world points through ``camera``: pixels (N, 2) and depths (N,)."""
    ndc = np.array([world_to_camera_view(bpy.context.scene, camera, Vector(p)) for p in points])
    return np.stack([ndc[:, 0] * SIZE[0], (1 - ndc[:, 1]) * SIZE[1]], -1), ndc[:, 2]


@pytest.mark.blender_versions  # cameras read from this Blender's scene
def test_calibrated_multi_view_matches_the_blender_cameras(shot, other_views, fake_engine):
    cameras = three_cameras()
    use_views(shot, other_views, cameras, frame_start=2, frame_end=6)
    before = set(bpy.data.objects.keys())
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}

    (call,) = fake_engine.calls
    assert call["mode"] == "multiview"
    obs = read_obs()
    assert {key: obs[key].shape for key in obs} == {
        "keypoints": (3, 5, 17, 3), "image_size": (3, 2), "focal_length": (3,), "principal_point": (3, 2),
        "cam_R": (3, 3, 3), "cam_t": (3, 3), "fps": ()}
    for view, view_shot in enumerate((shot, *other_views)):
        np.testing.assert_allclose(obs["keypoints"][view], view_shot["kp"][1:6])
    # A known world point lands on the same pixels, at the same depth, as through Blender's cameras.
    points = np.array([[0.3, 0.2, 1.0], [-0.5, 0.4, 1.7], [0.0, 0.0, 0.0]])
    for view, camera in enumerate(cameras):
        pixels, depth = project(obs, view, points)
        want_pixels, want_depth = blender_pixels(camera, points)
        np.testing.assert_allclose(pixels, want_pixels, atol=1e-3)
        np.testing.assert_allclose(depth, want_depth, atol=1e-6)

    # View 0's body is keyed in the cameras' world (no new camera): its joints are the engine's
    # joints_world, and every Blender camera sees them where that view's refined body projects.
    out = out_arrays()
    rig = bpy.data.objects["shot"]
    assert set(bpy.data.objects.keys()) - before == {"shot", "shot_body", scene_setup.LIGHT_NAME}
    for i in (0, 4):
        heads = posed_heads(rig, 2 + i)
        np.testing.assert_allclose(heads, out["joints_world"][i], atol=1e-4)
        for view, camera in enumerate(cameras):
            joints = out["view_joints"][view, i]
            want = obs["focal_length"][view] * joints[:, :2] / joints[:, 2:] + obs["principal_point"][view]
            np.testing.assert_allclose(blender_pixels(camera, heads)[0], want, atol=1e-2)


def test_uncalibrated_multi_view_imports_view_0_with_its_camera(shot, other_views, fake_engine):
    use_views(shot, other_views, intrinsics='MANUAL', focal_length=400.0, frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    assert call["mode"] == "multiview" and "cam_R" not in call["obs"]
    obs = read_obs()
    assert obs["keypoints"].shape == (3, FRAMES, 17, 3) and "cam_R" not in obs
    np.testing.assert_allclose(obs["focal_length"], [400.0] * 3)
    np.testing.assert_allclose(obs["principal_point"], [np.array(SIZE) / 2] * 3)
    out = out_arrays()
    assert out["view_joints"].shape == (3, FRAMES, 24, 3) and "joints_world" not in out  # the CLI's layout
    rig = bpy.data.objects["shot"]
    assert_action_is_result(rig, rig.animation_data.action, out, first_frame=1)
    camera = bpy.data.objects["shot_camera"]
    assert Path(bpy.path.abspath(camera.data.background_images[0].clip.filepath)) == shot["video"]


def test_views_list_add_and_remove():
    s = bpy.context.scene.refine_motion
    for _ in range(3):
        bpy.ops.refinemotion.view_add()
    assert (len(s.views), s.active_view) == (3, 2)
    bpy.ops.refinemotion.view_remove()
    assert (len(s.views), s.active_view) == (2, 1)
    s.active_view = 0
    bpy.ops.refinemotion.view_remove()
    bpy.ops.refinemotion.view_remove()
    assert len(s.views) == 0 and not bpy.ops.refinemotion.view_remove.poll()


@pytest.mark.parametrize("case, message", [
    ("frames", "View 2: long has 10 frames but the main footage has 8: give every view the same frames"),
    ("some cameras", ("View 1 has no Blender camera but other views do: give every view a Blender camera "
                      r"\(calibrated\) or none \(uncalibrated\)$")),
    ("shared camera", "Views 0 and 2 share the Blender camera 'Cam0': give each view its own camera$"),
    ("missing keypoints", "View 2: Keypoint file not found: .*missing.npz; check the Keypoint File path"),
    ("keypoint frames", r"View 1: \S*long.npz: cam1 has 8 frames \(0:8\) but the keypoints cover 10 \(footage "
                        r"frames 0:10\): they must describe the same frames; re-run the detector on this footage$"),
    ("initial SMPL", "Initial SMPL is for one camera: clear it for Multi-View"),
])
def test_bad_multi_view_input_reports_one_line_and_changes_nothing(shot, other_views, long_shot, fake_engine,
                                                                  tmp_path, case, message):
    cameras = three_cameras()
    s = use_views(shot, other_views, cameras if "camera" in case else ())
    if case == "frames":
        s.views[1].footage_path = str(long_shot["video"])
    elif case == "some cameras":
        s.views[0].camera_object = None
    elif case == "shared camera":
        s.views[1].camera_object = cameras[0]
    elif case == "missing keypoints":
        s.views[1].keypoints_path = str(tmp_path / "missing.npz")
    elif case == "keypoint frames":
        s.views[0].keypoints_path = str(long_shot["keypoints"])
    else:
        s.init_path = str(shot["keypoints"])  # any existing file: refused before it is read
    assert_refused(message, fake_engine)


# -- the modal (GUI) path, driven by hand: timers do not fire in background mode -------------------------

class ModalContext:
    """bpy.context with a recording status bar and no screen (as a modal handler sees it headless)."""

    def __init__(self):
        self.status = []
        self.workspace = type("Workspace", (), {"status_text_set": lambda _, text: self.status.append(text)})()
        self.window_manager = type("WM", (), {"event_timer_remove": lambda _, timer: None})()
        self.screen = None

    def __getattr__(self, name):
        return getattr(bpy.context, name)


def modal_operator(context):
    """The Refine operator's modal() on a started job, as invoke() leaves it."""
    op_class = operators.REFINEMOTION_OT_refine
    op = type("Op", (), {"iterations": 0})()
    op._timer, op.reports = object(), []
    op.report = lambda level, text: op.reports.append((level.pop(), text))
    assert op_class._start(op, context)  # as invoke() does
    op._stop = lambda ctx: op_class._stop(op, ctx)
    op._finish = lambda ctx: op_class._finish(op, ctx)
    op._job.start()
    return lambda kind: op_class.modal(op, context, type("Event", (), {"type": kind, "value": "PRESS"})()), op


@pytest.mark.blender_versions  # the modal operator's timer and events
def test_modal_refine_polls_the_job_shows_progress_and_imports(shot, fake_engine):
    use_shot(shot, frame_start=1, frame_end=FRAMES)
    context = ModalContext()
    modal, op = modal_operator(context)
    assert modal('MOUSEMOVE') == {'PASS_THROUGH'}
    deadline = time.time() + 60
    while (result := modal('TIMER')) == {'PASS_THROUGH'} and time.time() < deadline:
        time.sleep(0.05)
    assert result == {'FINISHED'}
    assert context.status[-1] is None  # the status bar is given back
    assert all(text.startswith("Refine Motion: ") and "Esc cancels" in text for text in context.status[:-1])
    assert ('INFO', "Imported 'shot': 8 frames, keyed on scene frames 1-8, action 'shot'") in op.reports
    assert bpy.data.objects["shot"].animation_data.action.name == "shot"


def test_esc_in_the_modal_refine_cancels_and_changes_nothing(shot, monkeypatch):
    class SlowEngine:
        def run(self, obs, init, mode, options, progress=None):
            for i in range(600):  # until cancelled
                progress(i + 1, 600)
                time.sleep(0.05)
    monkeypatch.setattr(jobs, "load_engine", lambda *args: SlowEngine())
    use_shot(shot)
    before = snapshot()
    context = ModalContext()
    modal, op = modal_operator(context)
    while op._job.progress == (0, 0):
        time.sleep(0.01)
    assert modal('TIMER') == {'PASS_THROUGH'}
    assert modal('ESC') == {'CANCELLED'}
    assert op.reports == [('WARNING', "Refine Motion: cancelled; nothing was changed")]
    op._job._thread.join(10)
    assert op._job.state == "cancelled" and jobs.active_job() is None
    assert snapshot() == before


# -- cancelling and bad inputs leave the file as it was --------------------------------------------

def cancel_on_first_progress(monkeypatch):
    real = jobs.Job._set_progress

    def set_progress(self, done, total):
        real(self, done, total)
        self.cancel()  # what Esc does in the modal operator
    monkeypatch.setattr(jobs.Job, "_set_progress", set_progress)


def test_cancel_in_process_changes_nothing(shot, fake_engine, monkeypatch):
    use_shot(shot)
    before = snapshot()
    cancel_on_first_progress(monkeypatch)
    assert bpy.ops.refinemotion.refine() == {'CANCELLED'}
    assert snapshot() == before
    assert len(fake_engine.calls) == 1 and jobs.active_job() is None
    assert not (job_folders()[0] / "OUT.npz").exists()


@pytest.mark.parametrize("change, message", [
    (lambda shot, tmp: dict(keypoints_path=str(tmp / "missing.json")),
     "Keypoint file not found: .*missing.json; check the Keypoint File path"),
    (lambda shot, tmp: dict(keypoints_path=_write(tmp / "long.npz", keypoints=np.tile(shot["kp"], (2, 1, 1)))),
     (f"long.npz: shot has {FRAMES} frames \\(0:{FRAMES}\\) but the keypoints cover {2 * FRAMES} \\(footage frames "
      f"0:{2 * FRAMES}\\): they must describe the same frames; re-run the detector on this footage$")),
    (lambda shot, tmp: dict(keypoints_path=_write_text(tmp / "kp.txt", "x")), "unknown keypoint file type '.txt'"),
    # The command line's checks, run by the same contract: keypoints outside the image, another frame rate.
    (lambda shot, tmp: dict(keypoints_path=_write(tmp / "big.npz", keypoints=shot["kp"] * [4, 4, 1])),
     "big.npz: .*% of the keypoints lie outside the 320x240 frame"),
    (lambda shot, tmp: dict(keypoints_path=_write(tmp / "k30.npz", keypoints=shot["kp"], fps=30.0)),
     "k30.npz: the keypoint file says 30 fps but shot plays at 24 fps"),
    (lambda shot, tmp: dict(keypoints_path=_write_text(tmp / "kp.json", json.dumps({"foo": 1}))),
     "kp.json: has no field 'keypoints'"),
    (lambda shot, tmp: dict(keypoints_path=_write(tmp / "kp18.npz", keypoints=np.zeros((FRAMES, 18, 3)))),
     r"field 'keypoints' has shape \(8, 18, 3\), expected \(F, 17, 3\)"),
    (lambda shot, tmp: dict(footage_path=str(tmp / "none.mp4")), "Footage not found: .*none.mp4"),
    (lambda shot, tmp: dict(footage_path=_write_text(tmp / "notes.mp4", "not a video")),
     "Blender cannot read notes.mp4 as a video"),
    (lambda shot, tmp: dict(keypoints_path=""), "No keypoints: set Keypoints to Detect from Footage"),
    (lambda shot, tmp: dict(mode='MULTI_VIEW'), "Multi-View needs the other cameras: add each one's footage"),
    (lambda shot, tmp: dict(frame_start=30, frame_end=40), "Frames 30-40 miss the footage"),
    (lambda shot, tmp: dict(keypoints_source='TRACKS'), "Keypoints from Clip Tracks need the footage as a Movie Clip"),
    (lambda shot, tmp: dict(init_path=_write(tmp / "init.npz", global_orient=np.zeros((3, 3)),
                                             body_pose=np.zeros((3, 69)), betas=np.zeros(10),
                                             transl=np.tile([0, 0, 4.0], (3, 1)))),
     f"init.npz: has 3 frames but the keypoints have {FRAMES} \\(refining {FRAMES}\\): give one initial estimate per "
     "keypoint frame, or per refined frame"),
])
def test_bad_input_reports_one_line_error_and_changes_nothing(shot, tmp_path, fake_engine, change, message):
    use_shot(shot, **change(shot, tmp_path))
    assert_refused(message, fake_engine)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _write_text(path, text):
    path.write_text(text)
    return str(path)


def test_user_smpl_file_must_exist(shot, fake_engine, tmp_path):
    use_shot(shot)
    preferences.get(bpy.context).smpl_path = str(tmp_path / "SMPL_NEUTRAL.pkl")
    before = snapshot()
    with pytest.raises(RuntimeError, match="SMPL model file not found: .*SMPL_NEUTRAL.pkl; fix or clear"):
        bpy.ops.refinemotion.refine()
    assert snapshot() == before


def test_engine_failure_reports_and_changes_nothing(shot, monkeypatch):
    class Broken:
        def run(self, *args, **kwargs):
            raise RuntimeError("CUDA out of memory")
    monkeypatch.setattr(jobs, "load_engine", lambda *args: Broken())
    use_shot(shot)
    before = snapshot()
    with pytest.raises(RuntimeError, match="Refine Motion: The engine failed: RuntimeError: CUDA out of memory "
                                           r"\(log: .*engine.log\)"):
        bpy.ops.refinemotion.refine()
    assert snapshot() == before
    assert "CUDA out of memory" in (job_folders()[0] / "engine.log").read_text()


def test_missing_weights_are_named(shot, tmp_path, monkeypatch):
    monkeypatch.setattr(placement, "choose_runner",
                        lambda *args: placement.Runner("in_process", root=ROOT))
    monkeypatch.setattr(service, "missing_weights", lambda: ["prior.pt"])
    monkeypatch.setattr(service, "_ENGINE", {})  # no engine loaded earlier
    use_shot(shot)
    with pytest.raises(RuntimeError, match=r"trained weights are missing \(prior.pt in .*backend/assets\): "
                                           "reinstall the extension"):
        bpy.ops.refinemotion.refine()


def test_a_known_height_in_the_panel_reaches_the_engine(shot, fake_engine):
    use_shot(shot, height=1.78, frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    assert call["options"].height == pytest.approx(1.78)


# -- the worker subprocess (stand-in package) -------------------------------------------------------

def test_worker_runs_the_cli_and_its_result_is_imported(shot, fake_worker):
    use_shot(shot, smoothing=1.0, keypoint_trust=0.5, device='CPU', frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine(iterations=2) == {'FINISHED'}
    (folder,) = job_folders()
    argv = json.loads((folder / "argv.json").read_text())
    assert argv == ["refine", "--observations", str(folder / "OBS.npz"), "--out", str(folder / "OUT.npz"),
                    "--mode", "video", "--progress-lines", "--smoothing", "1.0", "--keypoint-trust", "0.5",
                    "--device", "cpu", "--iterations", "2"]
    assert "wrote the result" in (folder / "engine.log").read_text()
    rig = bpy.data.objects["shot"]
    assert_action_is_result(rig, rig.animation_data.action, out_arrays(), first_frame=1)


def test_worker_gets_the_known_height(shot, fake_worker):
    use_shot(shot, height=1.78, frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (folder,) = job_folders()
    argv = json.loads((folder / "argv.json").read_text())
    assert float(argv[argv.index("--height") + 1]) == pytest.approx(1.78)


def test_worker_refines_multi_view_with_the_cli(shot, other_views, fake_worker):
    use_views(shot, other_views, frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (folder,) = job_folders()
    argv = json.loads((folder / "argv.json").read_text())
    assert argv[argv.index("--mode") + 1] == "multiview"
    with np.load(folder / "OBS.npz") as obs:
        assert obs["keypoints"].shape == (3, FRAMES, 17, 3)
    assert "shot" in bpy.data.objects  # the CLI writes view 0 in the OUT.npz layout


def test_worker_progress_lines_reach_the_job(shot, fake_worker):
    use_shot(shot)
    plan = refine.plan(bpy.context, bpy.context.scene.refine_motion)
    job = jobs.Job(plan.request, fake_worker, plan.name)
    seen = []
    assert job.run(on_progress=lambda done, total: seen.append((done, total))) == "done"
    assert seen == [(1, 3), (2, 3), (3, 3)] and job.fraction == 1.0


def test_worker_cancel_terminates_it_and_changes_nothing(shot, fake_worker, monkeypatch):
    monkeypatch.setenv("FAKE_WORKER", "sleep")  # it would sleep 60 s after its first progress line
    use_shot(shot)
    before = snapshot()
    cancel_on_first_progress(monkeypatch)
    started = time.time()
    assert bpy.ops.refinemotion.refine() == {'CANCELLED'}
    assert time.time() - started < 30
    assert snapshot() == before and jobs.active_job() is None


@pytest.mark.parametrize("behaviour, message", [
    ("error", "Refine Motion: OBS.npz: field 'keypoints' is odd; fix it$"),
    ("notorch", "The worker Python has no engine packages .*No module named 'torch'.*Set Up Worker Environment"),
])
def test_worker_errors_are_reported_in_one_line(shot, fake_worker, monkeypatch, behaviour, message):
    monkeypatch.setenv("FAKE_WORKER", behaviour)
    use_shot(shot)
    before = snapshot()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.refinemotion.refine()
    assert re.search(message, str(err.value).strip()), str(err.value)
    assert snapshot() == before


def test_worker_python_that_cannot_start(shot, fake_worker, monkeypatch, tmp_path):
    broken = placement.Runner("worker", python=str(tmp_path / "nothing" / "python"), root=fake_worker.root)
    monkeypatch.setattr(placement, "choose_runner", lambda *args: broken)
    use_shot(shot)
    with pytest.raises(RuntimeError, match="Cannot start the worker Python .*nothing/python"):
        bpy.ops.refinemotion.refine()


# -- worker environment set-up ----------------------------------------------------------------------

def test_setup_commands_make_a_venv_then_pinned_torch_then_the_engine_then_the_detector(tmp_path):
    venv = tmp_path / "venv"
    commands = worker_env.setup_commands(venv, base_python="/usr/bin/python3.11")
    python = str(placement.venv_python(venv))
    assert commands[0] == ["/usr/bin/python3.11", "-m", "venv", str(venv)]
    assert commands[1] == [python, "-m", "pip", "install", "--disable-pip-version-check", "torch==2.13.0"]
    assert commands[2] == [python, "-m", "pip", "install", "--disable-pip-version-check",
                           "-r", str(ROOT / "requirements" / "engine.txt"),
                           "-c", str(ROOT / "requirements" / "constraints.txt")]
    assert commands[3] == [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
                           "-r", str(ROOT / "requirements" / "detect.txt"),
                           "-c", str(ROOT / "requirements" / "constraints.txt")]
    assert len(commands) == 4


def test_setup_operator_runs_the_steps_in_order_and_reports(monkeypatch, tmp_path):
    marker = tmp_path / "steps.txt"
    step = lambda text, code=0: [sys.executable, "-c",
                                 f"open({str(marker)!r}, 'a').write({text!r}); print({text!r}); "
                                 f"raise SystemExit({code})"]
    monkeypatch.setattr(operators, "online_access", lambda: True)
    monkeypatch.setattr(worker_env, "setup_commands", lambda: [step("venv "), step("torch "), step("engine")])
    assert bpy.ops.refinemotion.setup_worker() == {'FINISHED'}
    assert marker.read_text() == "venv torch engine"
    task = worker_env.current_task()
    assert task.state == "done" and "$ " in task.log_path.read_text()

    marker.unlink()
    monkeypatch.setattr(worker_env, "setup_commands", lambda: [step("venv "), step("torch ", 3), step("engine")])
    with pytest.raises(RuntimeError, match=r"Step 2 failed \(exit code 3\): torch"):
        bpy.ops.refinemotion.setup_worker()
    assert marker.read_text() == "venv torch "  # stopped at the failing step


def test_setup_needs_online_access(monkeypatch):
    monkeypatch.setattr(operators, "online_access", lambda: False)
    monkeypatch.setattr(worker_env, "setup_commands", lambda: pytest.fail("must not run"))
    with pytest.raises(RuntimeError, match="needs the internet: allow Online Access"):
        bpy.ops.refinemotion.setup_worker()


# -- the real engine (needs the trained weights) ------------------------------------------------------

@pytest.mark.slow
@needs_weights
def test_real_engine_in_blender(shot):
    use_shot(shot, frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine(iterations=1) == {'FINISHED'}
    arrays = out_arrays()
    info = json.loads(str(arrays["info"]))
    assert info["mode"] == "video" and info["frames"] == FRAMES and info["options"]["loop"]["iterations"] == 1
    rig = bpy.data.objects["shot"]
    assert_action_is_result(rig, rig.animation_data.action, arrays, first_frame=1)
    # One guided iteration keeps the body on the keypoints (the prior and the temporal term may
    # trade a little reprojection for plausibility and smoothness on this 8-frame shot).
    error, before = np.nanmean(arrays["reprojection_error_px"]), np.nanmean(arrays["init_reprojection_error_px"])
    assert np.isfinite(error) and error < before + 2.0


@pytest.mark.slow
@needs_weights
def test_real_engine_calibrated_multi_view_in_blender(shot, other_views):
    use_views(shot, other_views, three_cameras(), frame_start=1, frame_end=4)
    assert bpy.ops.refinemotion.refine(iterations=1) == {'FINISHED'}
    arrays = out_arrays()
    info = json.loads(str(arrays["info"]))
    assert (info["mode"], info["views"], info["frames"]) == ("multiview", 3, 4)
    assert arrays["view_joints"].shape == (3, 4, 24, 3) and arrays["joints_world"].shape == (4, 24, 3)
    rig = bpy.data.objects["shot"]
    np.testing.assert_allclose(posed_heads(rig, 1), arrays["joints_world"][0], atol=1e-3)


@pytest.mark.slow
@needs_weights
def test_real_engine_in_the_worker(shot, monkeypatch):
    if not MAIN_PYTHON.is_file():
        pytest.skip("no main venv (.venv) to use as the worker")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as in the test process (conftest.py)
    prefs = preferences.get(bpy.context)
    prefs.engine_location, prefs.worker_python = 'WORKER', str(MAIN_PYTHON)
    use_shot(shot, frame_start=1, frame_end=FRAMES)
    assert bpy.ops.refinemotion.refine(iterations=1) == {'FINISHED'}
    arrays = out_arrays()
    rig = bpy.data.objects["shot"]
    assert_action_is_result(rig, rig.animation_data.action, arrays, first_frame=1)
    assert json.loads(str(arrays["info"]))["frames"] == FRAMES


# -- the installed extension: its own engine package and user data folder -----------------------------

EXTENSION_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import bpy
    zip_path, video, keypoints = sys.argv[-3:]
    installed = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                         enable_on_install=True)
    (name,) = [m for m in bpy.context.preferences.addons.keys() if m.endswith("refine_motion")]
    settings = bpy.context.scene.refine_motion
    settings.footage_path, settings.keypoints_path = video, keypoints
    try:
        result = sorted(bpy.ops.refinemotion.refine(iterations=1))
    except RuntimeError as ex:
        result = str(ex).strip()
    print("RESULT " + json.dumps(dict(installed=sorted(installed), addon=name, result=result,
                                      backend=list(sys.modules["backend"].__path__),
                                      objects=sorted(o.name for o in bpy.data.objects))), flush=True)
    os._exit(0)  # the bpy module can crash while freeing itself at exit
''')


@pytest.mark.blender_versions  # the extension installed by this Blender
@pytest.mark.slow
def test_installed_extension_refines_with_its_own_engine_package(shot, tmp_path):
    """The built zip, installed as an extension: the engine package inside the add-on is the one
    used (without the weights, the refine stops at a clear error instead)."""
    import os
    import subprocess

    from tests.shipping.test_build_package import build
    zip_path = build.build_package(tmp_path / "dist")
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", EXTENSION_SCRIPT, str(zip_path), str(shot["video"]),
                           str(shot["keypoints"])], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(lines[0][len("RESULT "):])
    assert out["installed"] == ["FINISHED"] and out["addon"] == "bl_ext.user_default.refine_motion"
    extension = tmp_path / "user" / "extensions" / "user_default" / "refine_motion"
    assert out["backend"] == [str(extension / "backend")]
    if all(p.is_file() for p in WEIGHTS):
        assert out["result"] == ["FINISHED"] and "shot" in out["objects"]
        user_data = tmp_path / "user" / "extensions" / ".user" / "user_default" / "refine_motion"
        assert list(user_data.glob("processes/*/jobs/*/OUT.npz"))  # this process's job folders
    else:
        assert out["result"].startswith("Error: Refine Motion: the engine's trained weights are missing "
                                        "(regressor.pt, prior.pt in ")
        assert "backend/assets): reinstall the extension" in out["result"]
        assert "shot" not in out["objects"]
