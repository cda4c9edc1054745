"""The animator's last mile (issue 20): the panel's Refine and Import, and the batch, as a user drives
them in real bpy, with the stand-in engine of test_addon_refine.py."""

import bpy
import numpy as np
import pytest

from scorehmr_blender.runner import job as jobs
from tests.addon.test_addon import real_layout  # noqa: F401 -- a fixture
from tests.addon.test_addon_refine import (  # noqa: F401 -- addon, scene, shot and fake_engine are fixtures
    addon,
    assert_refused,
    draw,
    fake_engine,
    scene,
    shot,
    use_shot,
)


def test_single_frame_refine_keeps_the_scene_frame_range(shot, fake_engine):
    """Item 18: refining the current frame keys it without collapsing the scene to frames 5-5."""
    use_shot(shot, mode='SINGLE_FRAME')
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 8
    scene.frame_set(5)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    assert (scene.frame_start, scene.frame_end, scene.frame_current) == (1, 8, 5)


def test_footage_without_a_keypoint_file_points_at_detect_from_footage(shot, fake_engine):
    """Item 14: footage chosen, Keypoints: File left empty: the one line names the step that user needs."""
    use_shot(shot, keypoints_path="")
    assert_refused("No keypoints: set Keypoints to Detect from Footage", fake_engine)


def _build_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("refine_motion_build_ui", Path(__file__).parents[2] / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoothing_and_keypoint_trust_have_the_batch_s_scale(shot, fake_engine):
    """Item 19: the panel's Smoothing / Keypoint Trust are the batch's --smoothing / --keypoint-trust: the
    same default (1 = the engine's weight), the same range 0-2, the value sent to the engine as it is."""
    settings = bpy.context.scene.refine_motion
    defaults = _build_module().refine_parser().parse_args(["--footage", "x"])
    for name in ("smoothing", "keypoint_trust"):
        prop = settings.bl_rna.properties[name]
        batch_default = getattr(defaults, name)
        assert prop.default == (1.0 if batch_default is None else batch_default)
        assert (prop.hard_min, prop.hard_max) == (0.0, 2.0)
    use_shot(shot, smoothing=1.5, keypoint_trust=0.75)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    assert (call["options"].smoothing, call["options"].keypoint_trust) == (1.5, 0.75)


def test_refine_warnings_are_printed_once(shot, fake_engine, tmp_path, capfd):
    """Item 25: a keypoint gap's warning is reported once per Refine, not at the start and again at the end."""
    kp = shot["kp"].copy()
    kp[3:5] = np.nan
    np.savez(tmp_path / "gap.npz", keypoints=kp)
    use_shot(shot, keypoints_path=str(tmp_path / "gap.npz"))
    capfd.readouterr()
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    printed = capfd.readouterr().out
    assert printed.count("Few or no keypoints in scene frames 4-5") == 1, printed


def test_refine_onto_the_active_rig_adds_no_second_rig(shot, fake_engine):
    """Item 25: a second Refine with Onto Active Rig gives the new action to the selected rig; without a
    Refine Motion rig active it stops before the engine with one line."""
    settings = use_shot(shot)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    rig = bpy.context.view_layer.objects.active
    first = rig.animation_data.action
    armatures = sorted(obj.name for obj in bpy.data.objects if obj.type == 'ARMATURE')
    settings.use_active_rig = True
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    assert sorted(obj.name for obj in bpy.data.objects if obj.type == 'ARMATURE') == armatures
    assert rig.animation_data.action not in (None, first) and first.use_fake_user
    assert len(fake_engine.calls) == 2
    bpy.context.view_layer.objects.active = bpy.data.objects["shot_camera"]
    folders = sorted(jobs.jobs_root().iterdir())
    with pytest.raises(RuntimeError, match="Onto Active Rig: 'shot_camera' is not a Refine Motion armature"):
        bpy.ops.refinemotion.refine()
    assert len(fake_engine.calls) == 2 and sorted(jobs.jobs_root().iterdir()) == folders


def _scene_with_another_camera():
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Their Camera", bpy.data.cameras.new("Their Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    return scene


def test_refine_and_import_set_the_scene_camera_and_resolution(shot, fake_engine, tmp_path):
    """Item 15: like the batch, Refine and Import make the footage camera the scene's camera and the
    scene's render size the footage's, even where the scene had a camera of its own."""
    scene = _scene_with_another_camera()
    use_shot(shot)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    assert scene.camera == bpy.data.objects["shot_camera"]
    (folder,) = jobs.jobs_root().iterdir()
    with np.load(folder / "OUT.npz") as out:  # the stand-in engine's image size
        assert (scene.render.resolution_x, scene.render.resolution_y) == tuple(out["image_size"].astype(int))

    from tests.support import result_fixture
    path = tmp_path / "Other.npz"
    result_fixture.write_result(path, num_frames=6, fps=24.0)
    scene = _scene_with_another_camera()
    assert bpy.ops.refinemotion.import_result(filepath=str(path)) == {'FINISHED'}
    assert scene.camera == bpy.data.objects["Other_camera"]
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1280, 720)


ORIGINAL_JOBS_ROOT = jobs.jobs_root  # before the scene fixture points it at tmp_path

OTHER_PROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
from scorehmr_blender.runner import job as jobs, placement
for i in range(jobs.KEEP_JOBS + 1):
    jobs.new_job_folder(f"other{i}")
print(jobs.jobs_root())
print(placement.process_dir() / "worker-setup.log")
"""


def test_another_process_keeps_its_own_job_folders_and_log(tmp_path, monkeypatch):
    """Item 5: another Blender process making 11 jobs (the temp folder shared, as with the bpy module)
    removes none of this process's job folders, and writes its set-up log elsewhere."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from scorehmr_blender.runner import placement

    shared = tmp_path / "shared-temp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setattr(jobs, "jobs_root", ORIGINAL_JOBS_ROOT)
    mine = jobs.new_job_folder("mine")
    (mine / "view0.keypoints.npz").write_bytes(b"detections")
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(shared), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(Path(__file__).parents[2])], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    their_jobs, their_log = proc.stdout.split()[-2:]
    assert (mine / "view0.keypoints.npz").is_file()
    assert Path(their_jobs) != jobs.jobs_root() and len(list(Path(their_jobs).iterdir())) == jobs.KEEP_JOBS
    assert Path(their_log) != placement.process_dir() / "worker-setup.log"


def test_openpose_files_numbered_from_1_start_the_footage(shot, fake_engine, tmp_path):
    """Item 12: OpenPose files 1..8 written for an 8-frame footage's images (numbered from 1): file 1 is
    footage frame 0 (auto-detected from the names), every frame refined on time; First Frame Number 0
    says they are footage frames 1..8 and is refused with the frames both cover."""
    from tests.support import result_fixture

    folder = result_fixture.write_openpose_folder(tmp_path / "openpose", shot["kp"], first_number=1)
    settings = use_shot(shot, keypoints_path=str(folder))
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    np.testing.assert_allclose(call["obs"]["keypoints"][0, :, :, :2], shot["kp"][:, :, :2], atol=1e-4)
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (1, 8)
    assert any("taken as the first footage frame" in w for w in jobs.LAST_WARNINGS), jobs.LAST_WARNINGS

    settings.keypoints_first_auto, settings.keypoints_first_number = False, 0
    with pytest.raises(RuntimeError, match=r"the keypoints cover 8 \(footage frames 1:9\)"):
        bpy.ops.refinemotion.refine()
    settings.keypoints_first_number = 1
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    np.testing.assert_allclose(fake_engine.calls[-1]["obs"]["keypoints"][0, :, :, :2], shot["kp"][:, :, :2],
                               atol=1e-4)


def test_batch_first_frame_option(shot, tmp_path):
    """Item 12 in the batch: --first-frame 1 maps files 1..7 onto footage frames 0..6 (auto keeps them at
    1..7, as OpenPose numbers a video)."""
    from scorehmr_blender import batch
    from scorehmr_blender.runner.placement import Runner
    from tests.support import result_fixture

    folder = result_fixture.write_openpose_folder(tmp_path / "openpose", shot["kp"][:7], first_number=1)
    build = _build_module()
    for first, frames in (("1", "0:7"), ("auto", "1:8")):
        args = ["--footage", str(shot["video"]), "--keypoints", str(folder), "--first-frame", first,
                "--frames", frames, "--out", str(tmp_path / f"{first}.blend")]
        options = batch.Options(**vars(build.refine_parser().parse_args(args)))
        (found,) = batch.shots(options)
        assert batch.check_shots(bpy.context, options, [found], Runner("in_process")) == {}
        inputs = jobs.prepare_inputs(found.plan.request)
        np.testing.assert_allclose(inputs.obs["keypoints"][0, :, :, :2], shot["kp"][:7, :, :2], atol=1e-4)
        assert str(inputs.frames) == frames


def test_the_panel_starts_where_the_user_starts(shot, fake_engine, capfd):
    """Item 23: footage, then keypoints (detect or file), then Refine; Import and the tuning after it,
    the tuning (trust, smoothing, body model) in a closed sub-panel; the frames the whole footage by default."""
    from tests.support import layout_recorder as recorder

    recorder.fill_example()
    records = [rec for record in recorder.record_sidebar() for rec in record.walk()]
    steps = [(rec.label, n.attrs.get("identifier") or n.attrs.get("idname"))
             for rec in records for n in rec.tree.walk() if n.kind in {"prop", "operator"}]
    order = [name for _, name in steps]
    assert order.index("footage_path") < order.index("keypoints_source") < order.index("keypoints_path") \
        < order.index("refinemotion.refine") < order.index("refinemotion.import_result")
    assert order[0] == "footage_source"
    tuning = [rec for rec in records if rec.label == "Tuning"]
    assert len(tuning) == 1 and 'DEFAULT_CLOSED' in tuning[0].cls.bl_options
    assert {name for label, name in steps if label == "Tuning"} >= {"keypoint_trust", "smoothing", "device"}
    assert 'DETECT' in {item.identifier for item in
                        bpy.context.scene.refine_motion.bl_rna.properties["keypoints_source"].enum_items}

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)  # a new scene's settings
    settings = bpy.context.scene.refine_motion
    settings.footage_path, settings.keypoints_path = str(shot["video"]), str(shot["keypoints"])
    capfd.readouterr()
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    assert call["obs"]["keypoints"].shape[1] == 8  # the footage's frames, with nothing said about a range
    assert "clamped" not in capfd.readouterr().out


@pytest.fixture(scope="module")
def shot_30fps(shot, tmp_path_factory):
    """The test shot's 8 frames as 30 fps footage (phone footage), with its keypoints."""
    import cv2

    folder = tmp_path_factory.mktemp("shot30")
    reader = cv2.VideoCapture(str(shot["video"]))
    frames = [reader.read()[1] for _ in range(8)]
    reader.release()
    writer = cv2.VideoWriter(str(folder / "phone.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0,
                             frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return dict(shot, video=folder / "phone.avi")


def _overlay_errors(footage_frame_at):
    """Pixels between the rig's joints seen through the scene camera and the result's joints of the footage
    frame shown behind it (``footage_frame_at(scene frame)``), over the keyed scene frames: (N,) max per frame."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from tests.addon.test_addon_import import posed_heads

    (folder,) = jobs.jobs_root().iterdir()
    with np.load(folder / "OUT.npz") as out:
        joints, focal = out["joints"], float(out["focal_length"])
        principal, size = out["principal_point"], out["image_size"]
    scene = bpy.context.scene
    rig = bpy.data.objects["phone"]
    first, last = (int(f) for f in rig.animation_data.action.frame_range)
    errors = []
    for s in range(first, last + 1):
        heads = posed_heads(rig, s)
        k = footage_frame_at(s)
        want = focal * joints[k, :, :2] / joints[k, :, 2:] + principal
        ndc = np.array([world_to_camera_view(scene, scene.camera, Vector(h))[:2] for h in heads])
        seen = np.stack([ndc[:, 0] * size[0], (1 - ndc[:, 1]) * size[1]], -1)
        errors.append(np.linalg.norm(seen - want, axis=-1).max())
    return np.array(errors)


@pytest.mark.parametrize("choice", ['SET_SCENE', 'RETIME'])
def test_30_fps_footage_in_a_24_fps_scene_lines_up(shot_30fps, fake_engine, choice):
    """Item 7: Refine of 30 fps footage in a 24 fps scene.  Set Scene to Footage (the default, as the batch)
    makes the scene 30 fps, a key per footage frame; Keep Scene Rate keeps 24 fps and retimes the footage
    behind the camera, each scene frame keying the footage frame shown there.  Either way the body is within
    1 px of the footage frame the camera shows."""
    scene = bpy.context.scene
    assert scene.render.fps == 24
    use_shot(shot_30fps, footage_rate=choice)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    clip = bpy.data.movieclips["phone.avi"]
    assert scene.camera.data.background_images[0].clip == clip

    def shown(s):  # the file frame Blender reads at scene frame s (frame_offset only changes that)
        scene.frame_set(s)
        return s - clip.frame_start + clip.frame_offset

    errors = _overlay_errors(shown)
    if choice == 'SET_SCENE':
        assert scene.render.fps / scene.render.fps_base == pytest.approx(30.0) and len(errors) == 8
    else:
        assert scene.render.fps == 24 and len(errors) == 6  # 8 frames at 30 fps span 5.6 frames at 24
        assert [shown(s) for s in range(1, 7)] == [0, 1, 3, 4, 5, 6]  # frame 2 skipped, as 30 -> 24 must
    assert errors.max() < 1.0, errors


def test_rest_position_stands_on_the_floor(shot, fake_engine):
    """Item 17: with the rig in Rest Position its body stands on the floor at the armature's origin (its
    lowest vertex at Z = 0), not a metre under it; the posed motion is where it was."""
    use_shot(shot)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    rig, body = bpy.data.objects["shot"], bpy.data.objects["shot_body"]
    scene = bpy.context.scene
    scene.frame_set(1)

    def lowest_z():
        mesh = body.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
        z = min((body.matrix_world @ v.co).z for v in mesh.vertices)
        body.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh_clear()
        return z

    posed = lowest_z()
    rig.data.pose_position = 'REST'
    bpy.context.view_layer.update()
    assert lowest_z() == pytest.approx(0.0, abs=1e-4)
    rig.data.pose_position = 'POSE'
    bpy.context.view_layer.update()
    assert lowest_z() == pytest.approx(posed, abs=1e-6)


def test_a_calibrated_multi_view_result_imports_every_camera_where_the_calibration_puts_it(shot, fake_engine,
                                                                                          tmp_path):
    """Item 24: the OUT.npz of a calibrated three-camera refinement, imported as a file, brings the body in
    the calibration's world (its joints on joints_world, upright as the cameras stand) and a camera per view
    where the calibration put it, each with its own lens (views 1 and 2: other focal lengths, sensor fits and
    shifts than view 0), not one camera on a floor guessed from the body."""
    from tests.addon.test_addon_import import posed_heads
    from tests.addon.test_addon_refine import SIZE, blender_pixels, make_shot, three_cameras, use_views

    import shutil

    folder = tmp_path / "views"
    others = [make_shot(folder, name, seed=seed) for seed, name in ((1, "left"), (2, "right"))]
    cameras = three_cameras()
    poses = [np.array(cam.matrix_world.normalized()) for cam in cameras]  # the calibration (unit scale)
    use_views(shot, others, cameras)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (job,) = jobs.jobs_root().iterdir()
    out = folder / "multiview.npz"
    shutil.copyfile(job / "OUT.npz", out)
    with np.load(out) as arrays:
        joints_world = arrays["joints_world"]
    seen = [blender_pixels(cam, joints_world[0])[0] for cam in cameras]  # where each user camera sees the body

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert bpy.ops.refinemotion.import_result(filepath=str(out), shot_name="mv", frame_start=1) == {'FINISHED'}
    cams = sorted((obj for obj in bpy.data.objects if obj.type == 'CAMERA'), key=lambda obj: obj.name)
    assert [cam.name for cam in cams] == ["mv_camera", "mv_camera_view1", "mv_camera_view2"]
    for cam, pose in zip(cams, poses):
        np.testing.assert_allclose(np.array(cam.matrix_world), pose, atol=1e-4)
    bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y = SIZE
    for cam, pixels in zip(cams, seen):  # the same lens: the body where the user's camera saw it
        np.testing.assert_allclose(blender_pixels(cam, joints_world[0])[0], pixels, atol=0.05)
    np.testing.assert_allclose(posed_heads(bpy.data.objects["mv"], 1), joints_world[0], atol=1e-4)
