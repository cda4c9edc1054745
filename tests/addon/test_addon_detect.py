"""Keypoints source "Detect from Footage" in real bpy: the Refine operator's job detects the person in
the example shot (MediaPipe BlazePose, in Blender's Python when it imports there, else in the worker
Python), refines (a stand-in engine: the detections are what it is given), writes the detections as
tracking markers, and a re-run from the edited markers refines what the animator corrected."""

import time

import bpy
import numpy as np
import pytest

from backend.contract.layout import COCO17_NAMES
from scorehmr_blender import preferences, refine
from scorehmr_blender.runner import job as jobs
from scorehmr_blender.runner import placement
from tests.addon.test_addon import real_layout  # noqa: F401 -- a fixture
from tests.addon.test_addon_refine import (  # noqa: F401 -- addon, scene, fake_engine are fixtures
    MAIN_PYTHON, ROOT, ModalContext, addon, assert_action_is_result, assert_refused, cancel_on_first_progress,
    fake_engine, job_folders, modal_operator, out_arrays, scene, snapshot)

cv2 = pytest.importorskip("cv2")

FOOTAGE = ROOT / "examples" / "shot" / "shot.mp4"
TRUTH = ROOT / "examples" / "shot" / "ground_truth.npz"
FRAMES = 96
WRIST = COCO17_NAMES.index("left_wrist")

needs_a_detector = pytest.mark.skipif(
    not placement.detector_in_blender() and not MAIN_PYTHON.is_file(),
    reason="mediapipe imports neither in this Python nor in the main venv (.venv)")


@pytest.fixture(autouse=True)
def worker_for_the_detector(scene):
    """The main venv as the worker Python: the detector runs there when mediapipe does not import here
    (the bpy 4.2 / 4.5 test venvs); the engine stays in-process."""
    preferences.get(bpy.context).worker_python = str(MAIN_PYTHON) if MAIN_PYTHON.is_file() else ""


def detect_settings(clip=True, **settings):
    s = bpy.context.scene.refine_motion
    if clip:
        s.footage_source, s.footage_clip = 'CLIP', bpy.data.movieclips.load(str(FOOTAGE), check_existing=True)
    else:
        s.footage_source, s.footage_path = 'FILE', str(FOOTAGE)
    s.keypoints_source, s.frame_start, s.frame_end = 'DETECT', 1, FRAMES
    for key, value in settings.items():
        setattr(s, key, value)
    return s


def detections():
    (folder,) = job_folders()[-1:]
    with np.load(folder / "view0.keypoints.npz") as npz:
        return npz["keypoints"]


def assert_detected_the_person(kp):
    """The example shot's person found in every frame, near its true 2D keypoints."""
    with np.load(TRUTH) as truth:
        error = np.linalg.norm(kp[..., :2] - truth["keypoints2d"], axis=-1).mean()
    assert kp.shape == (FRAMES, 17, 3) and (kp[..., 2].max(-1) > 0).all() and error < 8.0, error


@pytest.mark.blender_versions  # tracking markers on a Movie Clip, the imported armature's action
@needs_a_detector
def test_detect_from_footage_refines_writes_markers_and_a_rerun_uses_the_edited_ones(fake_engine):
    settings = detect_settings(detect_markers=True)
    clip = settings.footage_clip
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    kp = detections()
    assert_detected_the_person(kp)
    # The engine was given the detections (the contract's checks keep them as they are).
    given = fake_engine.calls[0]["obs"]["keypoints"][0]
    np.testing.assert_allclose(given[..., :2], kp[..., :2], atol=1e-3)
    rig = bpy.data.objects["shot"]
    assert_action_is_result(rig, rig.animation_data.action, out_arrays(), first_frame=clip.frame_start)

    markers = refine.clip_keypoints(clip)
    sure = kp[..., 2] >= refine.MARKER_MIN_CONFIDENCE
    assert sure.mean() > 0.8 and (markers[..., 2] == sure).all()
    assert np.abs(markers[sure][:, :2] - kp[sure][:, :2]).max() < 0.5  # px

    # The animator moves the left wrist 20 px right on clip frame 10, then refines from the markers.
    track = next(t for t in clip.tracking.tracks if t.name == "left_wrist")
    marker = track.markers.find_frame(10)
    marker.co = (marker.co[0] + 20.0 / clip.size[0], marker.co[1])
    settings.keypoints_source = 'TRACKS'
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    rerun = fake_engine.calls[1]["obs"]["keypoints"][0]
    assert rerun[9, WRIST, 0] == pytest.approx(kp[9, WRIST, 0] + 20.0, abs=0.5)
    others = sure.copy()
    others[9, WRIST] = False
    assert np.abs(rerun[others][:, :2] - kp[others][:, :2]).max() < 0.5


@pytest.mark.skipif(not MAIN_PYTHON.is_file(), reason="no main venv (.venv) to use as the worker Python")
def test_detection_in_the_worker_python_when_mediapipe_does_not_import_in_blender(fake_engine, monkeypatch):
    monkeypatch.setattr(placement, "detector_in_blender", lambda: False)
    detect_settings(clip=False)
    plan = refine.plan(bpy.context, bpy.context.scene.refine_motion)
    runner = placement.choose_runner("AUTO", str(MAIN_PYTHON))
    job = jobs.Job(plan.request, runner, plan.name)
    stages = set()
    assert job.run(on_progress=lambda done, total: stages.add((job.stage, total))) == "done", job.error
    assert stages == {("detect", FRAMES), ("refine", 3)}
    assert_detected_the_person(detections())
    assert "person found in 96 of 96" in job.log_path.read_text()  # the worker's `python -m backend detect`


@needs_a_detector
def test_modal_refine_detects_in_its_background_thread_and_shows_the_stage(fake_engine):
    detect_settings(clip=False)
    context = ModalContext()
    modal, op = modal_operator(context)
    deadline = time.time() + 120
    while (result := modal('TIMER')) == {'PASS_THROUGH'} and time.time() < deadline:
        time.sleep(0.05)
    assert result == {'FINISHED'} and len(fake_engine.calls) == 1
    assert any("Detecting the person: frame" in (text or "") for text in context.status)
    assert any("Refining: iteration" in (text or "") for text in context.status)
    assert_detected_the_person(detections())


@needs_a_detector
def test_multi_view_detects_every_view(fake_engine):
    detect_settings(clip=False, mode='MULTI_VIEW')
    settings = bpy.context.scene.refine_motion
    view = settings.views.add()
    view.footage_source, view.footage_path, view.keypoints_source = 'FILE', str(FOOTAGE), 'DETECT'
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (folder,) = job_folders()
    given = fake_engine.calls[0]["obs"]["keypoints"]
    assert given.shape == (2, FRAMES, 17, 3)
    for index in (0, 1):
        with np.load(folder / f"view{index}.keypoints.npz") as npz:
            np.testing.assert_allclose(given[index, ..., :2], npz["keypoints"][..., :2], atol=1e-3)


def test_progress_says_which_stage_runs():
    job = type("RunningJob", (), dict(progress=(0, 0), stage="detect"))()
    assert jobs.progress_text(job) == "Starting the detector..."
    job.progress = (12, 96)
    assert jobs.progress_text(job) == "Detecting the person: frame 12/96"
    job.stage, job.progress = "refine", (2, 5)
    assert jobs.progress_text(job) == "Refining: iteration 2/5"


# -- bad input: one line, the file unchanged, no result -----------------------------------------------

def test_write_markers_needs_a_movie_clip(fake_engine):
    detect_settings(clip=False, detect_markers=True)
    assert_refused("Write Tracking Markers needs the footage as a Movie Clip", fake_engine)


def test_no_detector_anywhere_is_one_line(fake_engine, monkeypatch):
    monkeypatch.setattr(placement, "detector_in_blender", lambda: False)
    preferences.get(bpy.context).worker_python = ""
    monkeypatch.setattr(placement, "default_worker_python", lambda: ROOT / "no-venv" / "bin" / "python")
    detect_settings()
    assert_refused("Detect from Footage needs the detector \\(mediapipe\\).*Set Up Worker Environment", fake_engine,
                   job_started=True)


@needs_a_detector
def test_footage_without_a_person_is_one_line_and_no_result(fake_engine, tmp_path):
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, (160, 120))
    for _ in range(6):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    s = detect_settings(clip=False)
    s.footage_path = str(empty)
    assert_refused("no person found in any of the 6 frames 0-5", fake_engine, job_started=True)


@needs_a_detector
def test_cancel_while_detecting_changes_nothing(fake_engine, monkeypatch):
    detect_settings(detect_markers=True)
    clip = bpy.context.scene.refine_motion.footage_clip
    before = snapshot()
    cancel_on_first_progress(monkeypatch)
    assert bpy.ops.refinemotion.refine() == {'CANCELLED'}
    assert snapshot() == before and fake_engine.calls == [] and len(clip.tracking.tracks) == 0
    assert not (job_folders()[0] / "OUT.npz").exists()


@pytest.mark.blender_versions  # draw() into this Blender's UILayout
def test_panel_shows_the_markers_option_only_when_detecting(real_layout):
    from scorehmr_blender import panel
    from tests.addon.test_addon_refine import draw

    s = bpy.context.scene.refine_motion
    s.footage_source, s.keypoints_source, s.intrinsics = 'FILE', 'DETECT', 'ESTIMATE'
    log = draw(panel.draw_refine, real_layout, bpy.context)
    assert log["props"][:4] == ["footage_source", "footage_path", "keypoints_source", "detect_markers"]
    s.keypoints_source = 'TRACKS'
    assert "detect_markers" not in draw(panel.draw_refine, real_layout, bpy.context)["props"]
