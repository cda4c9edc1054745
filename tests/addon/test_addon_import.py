"""Import Refined Motion, in real bpy (5.x, 4.5 and 4.2), on result files made by the real
body model (tests/support/result_fixture.py; synthetic motion, not engine output).

The maths tests import with timing='EXACT' (one key per result frame, at its own
scene time) and map the result's camera frame to the world with the import's
camera_to_world (the footage camera's W, moved onto the floor by default)."""

import math
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector

from scorehmr_blender import convert, importer, keyframes, operators, scene_setup, staging
from tests.support import blender_scene, result_fixture
from tests.support.blender_scene import fcurves_of, keys

# blender_versions (repeated on 4.2 and 4.5 LTS): keyframes (legacy actions in 4.2, slotted actions from 4.4), the
# camera, footage and compositor set-up (scene_setup: 4.x vs 5.0).
pytestmark = pytest.mark.blender_versions

ROOT = Path(__file__).resolve().parents[2]
C, W = convert.MODEL_TO_BLENDER, convert.CAMERA_TO_WORLD
FOOTAGE_FPS, SCENE_FPS = 30.0, 24
START = 5
DATA_KINDS = ("objects", "armatures", "meshes", "actions", "cameras", "movieclips", "images", "worlds", "lights",
              "collections")
MADE_FOR_THE_SCENE = {scene_setup.LIGHT_NAME, scene_setup.GROUND_NAME}


addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


@pytest.fixture(autouse=True)
def empty_scene():
    return blender_scene.fresh_scene(SCENE_FPS, 10)


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    """(path, arrays) of a 24-frame result at 30 fps, intrinsics in its info JSON."""
    path = tmp_path_factory.mktemp("results") / "Shot.npz"
    return path, result_fixture.write_result(path, num_frames=24, fps=FOOTAGE_FPS)


def import_shot(path, **options):
    options.setdefault("frame_start", START)
    return importer.import_result(bpy.context, str(path), **options)


def to_world(imported, points):
    """Camera-frame points (..., 3) where the import put them in the world."""
    M = imported.camera_to_world
    return np.asarray(points) @ M[:3, :3].T + M[:3, 3]


def data_counts():
    return {kind: len(getattr(bpy.data, kind)) for kind in DATA_KINDS}


def go_to(frame):
    """Evaluate the scene at a fractional frame; returns the depsgraph."""
    whole = math.floor(frame)
    bpy.context.scene.frame_set(whole, subframe=float(frame - whole))
    return bpy.context.evaluated_depsgraph_get()


def posed_heads(rig, frame):
    rig = rig.evaluated_get(go_to(frame))
    return np.array([rig.matrix_world @ rig.pose.bones[name].head for name in convert.JOINT_NAMES])


# -- what gets built ---------------------------------------------------------------

def test_import_builds_rig_body_action_and_camera(shot):
    path, arrays = shot
    imported = import_shot(path)
    rig, body, cam = imported.armature, imported.body, imported.camera

    assert rig.name == "Shot" and rig.type == 'ARMATURE' and rig.matrix_world == Matrix.Identity(4)
    bones = rig.data.bones
    lift = importer.rest_on_floor(arrays["rest_vertices"])  # the rest body stands on Z = 0
    assert (C @ lift)[:2] == pytest.approx([0, 0]) and ((arrays["rest_vertices"] + lift) @ C.T)[:, 2].min() == \
        pytest.approx(0, abs=1e-9)
    assert sorted(b.name for b in bones) == sorted(convert.JOINT_NAMES)
    for j, name in enumerate(convert.JOINT_NAMES):
        parent = convert.PARENTS[j]
        assert (bones[name].parent.name if bones[name].parent else None) == (
            convert.JOINT_NAMES[parent] if parent >= 0 else None)
        np.testing.assert_allclose(bones[name].head_local, C @ (arrays["rest_joints"][j] + lift), atol=1e-6)
        assert rig.pose.bones[name].rotation_mode == 'QUATERNION'
    assert bones["left_knee"].tail_local == bones["left_ankle"].head_local  # towards the child
    assert bones["pelvis"].tail_local == bones["spine1"].head_local         # the mid-line child

    assert body.type == 'MESH' and body.parent == rig
    assert len(body.data.vertices) == len(arrays["rest_vertices"])
    assert len(body.data.polygons) == len(arrays["faces"])
    co = np.empty(3 * len(body.data.vertices), dtype=np.float32)
    body.data.vertices.foreach_get("co", co)
    np.testing.assert_allclose(co.reshape(-1, 3), (arrays["rest_vertices"] + lift) @ C.T, atol=1e-6)
    assert [m.type for m in body.modifiers] == ['ARMATURE'] and body.modifiers[0].object == rig
    assert [g.name for g in body.vertex_groups] == list(convert.JOINT_NAMES)
    v = int(np.argmax((arrays["skin_weights"] > 0).sum(1)))  # a vertex with many influences
    weights = {body.vertex_groups[g.group].name: g.weight for g in body.data.vertices[v].groups}
    expected = {convert.JOINT_NAMES[j]: w for j, w in enumerate(arrays["skin_weights"][v]) if w > 0}
    assert weights.keys() == expected.keys() and len(weights) > 2
    assert all(weights[k] == pytest.approx(expected[k], abs=1e-6) for k in weights)

    assert imported.action.name == "Shot" and rig.animation_data.action == imported.action
    assert len(fcurves_of(imported.action)) == 24 * 4 + 3
    assert cam.type == 'CAMERA' and cam.name == "Shot_camera"
    assert {o.name for o in bpy.context.scene.objects} == {"Shot", "Shot_body", "Shot_camera", *MADE_FOR_THE_SCENE}
    assert bpy.context.view_layer.objects.active == rig and rig.select_get() and not body.select_get()


def test_fcurves_hold_the_converted_rotations_at_retimed_scene_frames(shot):
    path, arrays = shot
    imported = import_shot(path, timing='EXACT')
    rig, frames = imported.armature, len(arrays["transl"])
    expected_frames = START + np.arange(frames) * SCENE_FPS / FOOTAGE_FPS  # 5, 5.8, 6.6, ...
    np.testing.assert_allclose(imported.frames, expected_frames)
    curves = fcurves_of(imported.action)

    # Expected values with mathutils, from the documented formulas:
    # Q_0 = B_0^T W R_0 C^T B_0, Q_j = B_j^T C R_j C^T B_j, location = B_0^T (M (J_0 + t) - C (J_0 + l)),
    # M the camera -> world transform: W, then a translation onto the floor; l the rest body's lift onto
    # the floor (importer.rest_on_floor).
    np.testing.assert_allclose(imported.camera_to_world[:3, :3], W)
    R = convert.axis_angle_to_matrix(
        np.concatenate([arrays["global_orient"], arrays["body_pose"]], 1).reshape(frames, 24, 3))
    for j, name in enumerate(convert.JOINT_NAMES):
        B = rig.data.bones[name].matrix_local.to_3x3()
        outer = Matrix(W) if j == 0 else Matrix(C)
        path = f'pose.bones["{name}"].rotation_quaternion'
        assert {curves[path, axis].group.name for axis in range(4)} == {name}  # grouped by bone
        times, values = zip(*(keys(curves[path, axis]) for axis in range(4)))
        q = np.stack(values, -1)
        for t in times:
            np.testing.assert_allclose(t, expected_frames, atol=1e-5)
        for i in range(frames):
            want = (B.transposed() @ outer @ Matrix(R[i, j]) @ Matrix(C).transposed() @ B).to_quaternion()
            assert abs(np.dot(q[i], want)) == pytest.approx(1.0, abs=1e-6), (name, i)
        assert (np.sum(q[1:] * q[:-1], -1) >= 0).all(), name  # sign-continuous

    B0 = np.array(rig.data.bones["pelvis"].matrix_local.to_3x3())
    pelvis = arrays["rest_joints"][0]
    lift = importer.rest_on_floor(arrays["rest_vertices"])
    want = (to_world(imported, arrays["transl"] + pelvis) - C @ (pelvis + lift)) @ B0
    for axis in range(3):
        times, values = keys(curves['pose.bones["pelvis"].location', axis])
        np.testing.assert_allclose(times, expected_frames, atol=1e-5)
        np.testing.assert_allclose(values, want[:, axis], atol=1e-6)
    assert ('pose.bones["left_knee"].location', 0) not in curves


def test_posed_armature_joints_equal_result_joints_in_world(shot):
    """The proof of the rotation maths: evaluated bone heads at every key equal the
    result's camera-frame joints mapped to the world (W and the floor placement), to 0.1 mm."""
    path, arrays = shot
    imported = import_shot(path, timing='EXACT')
    worst = 0.0
    for i, frame in enumerate(imported.frames):
        rig = imported.armature.evaluated_get(go_to(frame))
        heads = np.array([rig.matrix_world @ rig.pose.bones[name].head for name in convert.JOINT_NAMES])
        worst = max(worst, np.abs(heads - to_world(imported, arrays["joints"][i])).max())
    assert worst < 1e-4
    assert np.ptp(arrays["joints"][:, 0], axis=0).max() > 0.5  # the motion really moves


def test_skinned_body_follows_linear_blend_skinning(shot):
    """The vertex groups carry skin_weights: the evaluated mesh is SMPL's linear blend
    skinning (no pose correctives) of the rest vertices, in the world."""
    path, arrays = shot
    imported = import_shot(path, timing='EXACT')
    G, P = staging.forward_kinematics(arrays["global_orient"], arrays["body_pose"], arrays["transl"],
                                      arrays["rest_joints"])
    rest_v, rest_j, weights = arrays["rest_vertices"], arrays["rest_joints"], arrays["skin_weights"]
    for i in (0, 13):
        per_joint = np.einsum("jab,vjb->vja", G[i], rest_v[:, None] - rest_j[None]) + P[i][None]
        expected = to_world(imported, np.einsum("vj,vja->va", weights, per_joint))
        mesh = imported.body.evaluated_get(go_to(imported.frames[i])).data
        co = np.empty(3 * len(mesh.vertices), dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        np.testing.assert_allclose(co.reshape(-1, 3), expected, atol=1e-4)


@pytest.mark.parametrize("placement", importer.PLACEMENTS)
def test_camera_sees_the_posed_joints_where_the_footage_intrinsics_put_them(shot, placement):
    """Blender's posed bone heads, seen through the imported camera, land on the pixels where
    the OpenCV pinhole puts the result's joints, wherever the placement moved body and camera."""
    path, arrays = shot
    scene = bpy.context.scene
    imported = import_shot(path, set_resolution=True, timing='EXACT', placement=placement)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1280, 720)
    assert scene.camera == imported.camera
    cam = imported.camera
    assert cam.data.sensor_fit == 'HORIZONTAL'
    np.testing.assert_allclose(cam.location, imported.camera_to_world[:3, 3], atol=1e-6)
    assert (cam.location.length == 0) == (placement == 'CAMERA')
    fx = result_fixture.FOCAL_PX
    cx, cy = result_fixture.PRINCIPAL_POINT
    width, height = result_fixture.IMAGE_SIZE
    for i in (0, 11, 23):
        for joint, head in zip(arrays["joints"][i], posed_heads(imported.armature, imported.frames[i])):
            u, v = fx * joint[0] / joint[2] + cx, fx * joint[1] / joint[2] + cy   # OpenCV pinhole
            ndc = world_to_camera_view(scene, cam, Vector(head))                    # Blender's camera
            assert ndc.z == pytest.approx(joint[2], abs=1e-4)
            assert ndc.x * width == pytest.approx(u, abs=0.05)
            assert (1 - ndc.y) * height == pytest.approx(v, abs=0.05)


def test_messages_report_retiming_and_resolution(shot):
    path, _ = shot
    imported = import_shot(path)
    texts = {text.split(" ")[0]: (level, text) for level, text in imported.messages}
    assert texts["Footage"] == ('WARNING', "Footage is 30 fps, the scene 24 fps: keys are resampled onto whole "
                                           "scene frames")
    assert texts["Scene"][0] == 'WARNING' and "1920x1080 differs from the footage's 1280x720" in texts["Scene"][1]
    assert texts["Imported"] == ('INFO', "Imported 'Shot': 24 frames, keyed on scene frames 5-23, action 'Shot'")
    assert texts["Placed"][0] == 'INFO' and texts["Placed"][1].startswith("Placed on a floor guessed from the body's "
                                                                          "lowest points (Z = 0) with its camera")
    assert texts["Not"] == ('INFO', "Not on the engine's floor: it has no world frame (single frames, multi-view, "
                                    "or made before world frames existed)")
    assert texts["Added"] == ('INFO', f"Added a grey World, a sun ('{scene_setup.LIGHT_NAME}'), a ground plane "
                                      f"(collection '{scene_setup.GROUND_NAME}', hide it there)")
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (5, 23)  # the motion's keys, not the scene's 1-10

    exact = import_shot(path, timing='EXACT')
    assert ('WARNING', "Footage is 30 fps, the scene 24 fps: keys are retimed to (fractional) scene frames") \
        in exact.messages
    assert scene.frame_end == 24


def test_same_fps_keys_on_whole_frames_and_says_nothing(tmp_path):
    path = tmp_path / "Same.npz"
    result_fixture.write_result(path, num_frames=4, fps=SCENE_FPS)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 1280, 720
    imported = import_shot(path, frame_start=None, update_scene_duration=False)
    np.testing.assert_array_equal(imported.frames, [1, 2, 3, 4])
    np.testing.assert_array_equal(imported.key_frames, [1, 2, 3, 4])
    assert {level for level, _ in imported.messages} == {'INFO'}
    assert scene.frame_end == 10


@pytest.mark.parametrize("camera_in", ["arrays", None])
def test_intrinsics_as_arrays_or_missing(tmp_path, camera_in):
    path = tmp_path / "Cam.npz"
    result_fixture.write_result(path, num_frames=3, camera_in=camera_in)
    imported = import_shot(path)
    if camera_in is None:
        assert imported.camera is None and not bpy.data.cameras
        assert ('WARNING', "No camera added: the result has no image_size and focal_length") in imported.messages
    else:
        assert imported.camera.data.lens == pytest.approx(result_fixture.FOCAL_PX * 36 / 1280)


def test_footage_shows_behind_the_camera(tmp_path, shot):
    image = bpy.data.images.new("frame", 8, 6)
    image.filepath_raw = str(tmp_path / "frame_0001.png")
    image.file_format = 'PNG'
    image.save()
    bpy.data.images.remove(image)
    imported = import_shot(shot[0], footage_path=str(tmp_path / "frame_0001.png"))
    cam = imported.camera.data
    assert cam.show_background_images and len(cam.background_images) == 1
    background = cam.background_images[0]
    assert background.source == 'MOVIE_CLIP' and background.clip.frame_start == START


# -- staged in the scene: on a floor, on whole frames, lit -----------------------------

def standing_result(path, num_frames=20, sunk_frame=None, fps=SCENE_FPS):
    """Write a result of a body standing upright (arms down) and stepping sideways 3.5-4.5 m in
    front of the camera, its feet always at the same camera height; ``sunk_frame``'s estimate
    dips 0.3 m through the floor (an outlier).  Returns the arrays."""
    import torch

    from backend.body.example_poses import example_pose

    t = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    global_orient = torch.tensor([[math.pi, 0.0, 0.0]], dtype=torch.float64).expand(num_frames, 3)
    body_pose = example_pose("arms_down", torch.float64)[1:].reshape(1, 69).expand(num_frames, 69)
    transl = torch.stack([0.8 * t - 0.4, torch.full_like(t, 0.3), 3.5 + t], -1)
    if sunk_frame is not None:
        transl[sunk_frame, 1] += 0.3  # camera y points down
    betas = torch.zeros(10, dtype=torch.float64)
    arrays = result_fixture.result_arrays(global_orient, body_pose, transl, betas, fps)
    np.savez(path, **arrays)
    return arrays


def lowest_vertex_heights(imported, frames):
    """World Z of the evaluated (skinned) body's lowest vertex at each scene frame."""
    heights = []
    for frame in frames:
        mesh = imported.body.evaluated_get(go_to(frame)).data
        co = np.empty(3 * len(mesh.vertices), dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        world = np.array(imported.body.matrix_world)
        heights.append((co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3])[:, 2].min())
    return np.array(heights)


def test_lowest_contact_goes_on_the_floor_and_the_start_on_the_origin(tmp_path):
    """The default placement: the feet of every frame but the outlier on Z = 0 (read back from
    Blender's skinned mesh), the first frame's pelvis above the origin, and the camera moved with
    the body, so a joint projects onto the same pixel as before (checked for every placement
    by test_camera_sees_the_posed_joints_...)."""
    path = tmp_path / "Standing.npz"
    standing_result(path, sunk_frame=7)
    imported = import_shot(path)
    heights = lowest_vertex_heights(imported, imported.key_frames)
    print(f"\nlowest vertex on the floor: max |z| {np.abs(np.delete(heights, 7)).max() * 1000:.3f} mm "
          f"(the outlier frame {heights[7]:.3f} m)")
    assert np.abs(np.delete(heights, 7)).max() < 0.02  # the contact feet on the floor, within 2 cm
    assert heights[7] == pytest.approx(-0.3, abs=0.02)  # one frame through the floor does not lift the rest
    heads = posed_heads(imported.armature, imported.key_frames[0])
    names = convert.JOINT_NAMES
    np.testing.assert_allclose(heads[names.index("pelvis")][:2], 0.0, atol=1e-4)
    assert all(0.03 < heads[names.index(ankle)][2] < 0.15 for ankle in ("left_ankle", "right_ankle"))
    assert heads[names.index("head")][2] > 1.4



@pytest.mark.parametrize("placement", ['FLOOR', 'CAMERA'])
def test_other_placements(tmp_path, placement):
    path = tmp_path / "Standing.npz"
    standing_result(path)
    imported = import_shot(path, placement=placement)
    heights = lowest_vertex_heights(imported, imported.key_frames[:3])
    camera_xy = np.array(imported.camera.location)[:2]
    np.testing.assert_allclose(camera_xy, 0.0, atol=1e-6)  # the camera stays above the origin
    if placement == 'FLOOR':
        np.testing.assert_allclose(heights, 0.0, atol=0.02)
        assert imported.camera.location.z > 0.5
    else:  # as filmed: the camera at the origin, the feet where its height puts them
        assert imported.camera.location.length == 0 and heights.max() < -1.0
        assert scene_setup.GROUND_NAME not in bpy.data.objects


def test_keys_on_whole_frames_in_a_30_fps_scene(tmp_path):
    """A 24 fps result in a 30 fps, 250-frame scene: by default every key on a whole scene frame
    (the motion resampled), the frame range the motion's; 'EXACT' keeps the result's timing,
    'SCENE_RATE' sets the scene to 24 fps."""
    path = tmp_path / "Film.npz"
    arrays = result_fixture.write_result(path, num_frames=24, fps=24.0)
    scene = blender_scene.fresh_scene(30, 250)
    imported = import_shot(path, frame_start=1)
    np.testing.assert_allclose(imported.frames, 1 + 1.25 * np.arange(24))
    np.testing.assert_array_equal(imported.key_frames, np.arange(1, 30))  # 23 / 24 s = 28.75 scene frames
    for fcurve in fcurves_of(imported.action).values():
        times = keys(fcurve)[0]
        assert len(times) == 29 and (times == np.round(times)).all()
    assert (scene.frame_start, scene.frame_end) == (1, 29)
    for i in (0, 8, 20):  # result frames on whole scene frames (1, 11, 26): the result's pose exactly
        np.testing.assert_allclose(posed_heads(imported.armature, imported.frames[i]),
                                   to_world(imported, arrays["joints"][i]), atol=1e-4)
    # Between them, a pose between its two neighbours (scene frame 2 is result frame 0.8).
    between = posed_heads(imported.armature, 2)
    blend = to_world(imported, 0.2 * arrays["joints"][0] + 0.8 * arrays["joints"][1])
    assert np.abs(between - blend).max() < 0.01

    exact = import_shot(path, frame_start=1, timing='EXACT')
    np.testing.assert_allclose(keys(fcurves_of(exact.action)['pose.bones["pelvis"].location', 0])[0],
                               imported.frames, atol=1e-5)
    rate = import_shot(path, frame_start=1, timing='SCENE_RATE')
    assert scene.render.fps / scene.render.fps_base == 24
    np.testing.assert_array_equal(rate.key_frames, np.arange(1, 25))


def test_scene_gets_only_the_world_light_and_ground_it_lacks(shot):
    path, arrays = shot
    scene = bpy.context.scene
    imported = import_shot(path)
    world, sun = scene.world, bpy.data.objects[scene_setup.LIGHT_NAME]
    assert world.name == scene_setup.WORLD_NAME and sun.data.type == 'SUN'
    ground = bpy.data.objects[scene_setup.GROUND_NAME]
    assert [c.name for c in ground.users_collection] == [scene_setup.GROUND_NAME]  # hide it in one click
    assert ground.display_type == 'WIRE'  # the footage stays visible behind the camera view
    co = np.empty(3 * len(ground.data.vertices))
    ground.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    assert (co[:, 2] == 0).all()
    pelvis = to_world(imported, arrays["transl"] + arrays["rest_joints"][0])
    assert (co[:, :2].min(0) < pelvis[:, :2].min(0) - 1).all() and (co[:, :2].max(0) > pelvis[:, :2].max(0) + 1).all()

    counts = data_counts()
    import_shot(path)  # a second import adds no second World, sun or ground
    assert {kind: n - counts[kind] for kind, n in data_counts().items() if n != counts[kind]} == {
        "objects": 3, "armatures": 1, "meshes": 1, "actions": 1, "cameras": 1}
    assert scene.world == world

    blender_scene.fresh_scene(SCENE_FPS, 10)
    bpy.ops.object.light_add(type='POINT')
    user_world = bpy.context.scene.world = bpy.data.worlds.new("Mine")
    import_shot(path, placement='CAMERA')  # the user's light and World; no floor known: no ground
    assert bpy.context.scene.world == user_world
    assert not bpy.data.lights.get(scene_setup.LIGHT_NAME) and scene_setup.GROUND_NAME not in bpy.data.objects

    blender_scene.fresh_scene(SCENE_FPS, 10)
    import_shot(path, prepare_scene=False)
    assert bpy.context.scene.world is None and not bpy.data.lights and not bpy.data.collections


def render_mean(scene, path):
    """Render the scene's camera view to ``path``; returns its pixels (H, W, 3) in 0..1."""
    scene.render.filepath = str(path)
    assert bpy.ops.render.render(write_still=True) == {'FINISHED'}
    image = bpy.data.images.load(str(path))
    pixels = np.array(image.pixels[:]).reshape(image.size[1], image.size[0], 4)[..., :3]
    bpy.data.images.remove(image)
    return pixels


def test_f12_renders_the_lit_body_not_black(shot, tmp_path):
    """A batch-like scene (empty, no World, no light): after the import, rendering through the
    footage camera shows a lit grey scene with the body in it.  Cycles on the CPU with few
    samples (EEVEE compiles its shaders for minutes on a machine without a GPU)."""
    path, _ = shot
    scene = bpy.context.scene
    imported = import_shot(path, set_resolution=True)
    scene.render.engine = 'CYCLES'
    scene.cycles.samples, scene.cycles.use_denoising, scene.cycles.device = 4, False, 'CPU'
    scene.render.resolution_percentage = 12  # 153 x 86
    scene.frame_set(START + 8)
    shown = render_mean(scene, tmp_path / "render.png")
    imported.body.hide_render = True
    empty = render_mean(scene, tmp_path / "without_body.png")
    body_pixels = (np.abs(shown - empty).max(-1) > 0.05).mean()
    print(f"\nrender: mean brightness {shown.mean():.3f}, body covers {100 * body_pixels:.1f}% of the image")
    assert shown.mean() > 0.15
    assert body_pixels > 0.03


# -- a result with a world frame: on the engine's floor, its camera placed ------------

@pytest.fixture(scope="module")
def world_shot(tmp_path_factory):
    """(path, arrays) of the example shot's true motion with the world fields the engine's
    backend.engine.world computes (floor, contacts, planted feet, camera pose); 96 frames, 24 fps."""
    path = tmp_path_factory.mktemp("world") / "World.npz"
    return path, result_fixture.write_world_result(path)


def soles(heads, arrays):
    """Height (F, 4) of the soles under the foot joints (docs/world.md: ankles and balls of the feet,
    each moved down by its height above the rest mesh's sole) of Blender joints (F, 24, 3), Z up."""
    from backend.engine.world import FOOT_JOINTS, sole_offsets

    return heads[:, list(FOOT_JOINTS), 2] - np.asarray(sole_offsets(arrays["rest_joints"], arrays["rest_vertices"]))


def test_world_result_stands_on_the_floor_as_the_engine_posed_it(world_shot):
    """Read back from the evaluated armature at every frame: the joints are joints_world turned Z up
    (to 1 mm), the soles of the feet in contact are on Z = 0 (to 1 cm) and no sole is below -2 cm."""
    path, arrays = world_shot
    imported = import_shot(path, timing='EXACT')
    assert imported.world and any("floor the engine found" in text for _, text in imported.messages)
    heads = np.array([posed_heads(imported.armature, frame) for frame in imported.frames])
    assert np.abs(heads - arrays["joints_world"] @ C.T).max() < 1e-3
    sole = soles(heads, arrays)
    contacts = arrays["foot_contacts"]
    assert contacts.sum() > len(contacts)  # the check below has feet to look at
    assert np.abs(sole[contacts]).max() < 0.01 and sole.min() > -0.02


def test_world_camera_sees_the_joints_where_the_world_camera_projects_them(world_shot):
    """The Blender camera is placed and tilted at the result's camera pose with the footage's
    intrinsics: every joint seen through it (world_to_camera_view) lands within 1 px of its
    projection by camera_R_world / camera_position / focal_length / principal_point."""
    path, arrays = world_shot
    footage = result_fixture.EXAMPLE_SHOT / "shot.mp4"
    imported = import_shot(path, timing='EXACT', set_resolution=True, footage_path=str(footage))
    scene, cam = bpy.context.scene, imported.camera
    (width, height), focal = arrays["image_size"], float(arrays["focal_length"])
    R, p = np.asarray(arrays["camera_R_world"], np.float64), np.asarray(arrays["camera_position"], np.float64)
    worst = 0.0
    for i in range(0, len(imported.frames), 5):
        heads = posed_heads(imported.armature, imported.frames[i])
        cam_points = (arrays["joints_world"][i] - p) @ R                    # world -> OpenCV camera
        want = focal * cam_points[:, :2] / cam_points[:, 2:] + arrays["principal_point"]
        for head, uv in zip(heads, want):
            ndc = world_to_camera_view(scene, cam, Vector(head))
            worst = max(worst, abs(ndc.x * width - uv[0]), abs((1 - ndc.y) * height - uv[1]))
    assert worst < 1.0
    # Where and how tilted: the camera's height and pitch are the engine's, its footage behind it.
    np.testing.assert_allclose(cam.location.z, arrays["camera_height"], atol=1e-4)
    forward = np.array(cam.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0)))
    assert math.degrees(math.asin(-forward[2])) == pytest.approx(float(arrays["camera_pitch_deg"]), abs=0.01)
    background = cam.data.background_images[0]
    assert background.source == 'MOVIE_CLIP' and Path(background.clip.filepath).name == "shot.mp4"
    assert scene_setup.GROUND_NAME in scene.objects


@pytest.mark.parametrize("info_world, level, why", [
    ({"status": "moving camera", "drift_deg": 14.2, "drift_m": 0.05}, 'WARNING', "moving camera"),
    ({"status": "too little floor evidence", "drift_deg": 0.0, "drift_m": 0.0, "floor_points": 3}, 'INFO',
     "3 slow foot points"),
    (None, 'INFO', "no world frame"),
])
def test_without_a_world_frame_the_floor_is_guessed_and_the_user_told_why(tmp_path, info_world, level, why):
    info = {"mode": "video", **({"world": info_world} if info_world else {})}
    path = tmp_path / "Moving.npz"
    result_fixture.write_world_result(path)
    with np.load(path) as stored:  # the same motion without its world fields
        arrays = {k: stored[k] for k in stored.files if not k.endswith("_world") and k not in (
            "foot_contacts", "camera_position", "camera_height", "camera_pitch_deg", "camera_roll_deg")}
    np.savez(path, **dict(arrays, info=np.asarray(__import__("json").dumps(info))))
    imported = import_shot(path)
    assert not imported.world
    assert any(lv == level and why in text and "Not on the engine's floor" in text for lv, text in imported.messages)
    np.testing.assert_allclose(imported.camera_to_world[:3, :3], W)  # today's placement: camera frame, W


def test_as_filmed_keeps_the_camera_frame_of_a_world_result(world_shot):
    path, arrays = world_shot
    imported = import_shot(path, timing='EXACT', placement='CAMERA')
    assert not imported.world and ('INFO', "The result's world frame is not used: Placement is As Filmed") \
        in imported.messages
    np.testing.assert_allclose(posed_heads(imported.armature, imported.frames[3]), arrays["joints"][3] @ W.T,
                               atol=1e-4)


def test_joints_world_alone_is_not_a_floor(tmp_path, shot):
    """Calibrated multi-view results have joints_world in the calibration's world: no floor there."""
    path = tmp_path / "Calibrated.npz"
    result_fixture.write_result(path, num_frames=4, joints_world=shot[1]["joints"][:4])
    imported = import_shot(path)
    assert not imported.world and any("joints_world only" in text for _, text in imported.messages)


# -- never overwrite -----------------------------------------------------------------

def test_reimport_makes_a_new_action_and_leaves_the_first_alone(shot):
    path, _ = shot
    first = import_shot(path)
    before = {key: keys(fc) for key, fc in fcurves_of(first.action).items()}
    second = import_shot(path)
    assert (first.action.name, second.action.name) == ("Shot", "Shot.001")
    assert second.armature.animation_data.action == second.action
    assert first.armature.animation_data.action == first.action
    after = fcurves_of(first.action)
    assert after.keys() == before.keys()
    for key, (times, values) in before.items():
        np.testing.assert_array_equal(keys(after[key])[0], times)
        np.testing.assert_array_equal(keys(after[key])[1], values)


def test_existing_action_of_the_shot_name_is_kept(shot):
    walk = bpy.data.actions.new("Walk")
    walk.use_fake_user = True
    imported = import_shot(shot[0], shot_name="Walk")
    assert imported.action.name == "Walk.001" and imported.armature.name == "Walk"
    assert bpy.data.actions["Walk"] == walk and walk.users == 1  # only its fake user


def test_reimport_onto_the_active_rig_swaps_in_a_new_action(shot, tmp_path):
    path, arrays = shot
    first = import_shot(path)
    before = {key: keys(fc) for key, fc in fcurves_of(first.action).items()}
    counts = data_counts()
    assert bpy.ops.refinemotion.import_result(filepath=str(path), use_active_rig=True, add_camera=False,
                                              frame_start=START) == {'FINISHED'}
    counts["actions"] += 1
    assert data_counts() == counts  # no new rig, body or camera
    rig = first.armature
    assert rig.animation_data.action.name == "Shot.001"
    assert first.action.use_fake_user  # unassigned now: kept from being lost on save
    for key, (times, values) in before.items():
        np.testing.assert_array_equal(keys(fcurves_of(first.action)[key])[1], values)
    for i in (0, 15):  # result frames on whole scene frames (4 scene frames per 5 result frames)
        np.testing.assert_allclose(posed_heads(rig, first.frames[i]), to_world(first, arrays["joints"][i]), atol=1e-4)

    # A result for another body shape: the rig keeps its bones, the pelvis follows the result.
    other = result_fixture.write_result(tmp_path / "Other.npz", num_frames=24, seed=5)
    assert np.abs(other["rest_joints"] - arrays["rest_joints"]).max() > 0.01
    imported = import_shot(tmp_path / "Other.npz", onto_rig=rig, add_camera=False)
    assert imported.armature == rig and imported.body is None
    for i in (0, 10):
        np.testing.assert_allclose(posed_heads(rig, imported.frames[i])[0], to_world(imported, other["joints"][i, 0]),
                                   atol=1e-4)


def test_onto_rig_needs_a_refine_motion_armature(shot):
    bpy.ops.object.camera_add()
    before = data_counts()
    with pytest.raises(RuntimeError, match="'Camera' is not a Refine Motion armature"):
        bpy.ops.refinemotion.import_result(filepath=str(shot[0]), use_active_rig=True)
    assert data_counts() == before


# -- the operator ---------------------------------------------------------------------

def test_operator_imports_and_is_undoable(shot):
    cls = operators.REFINEMOTION_OT_import_result
    assert {'REGISTER', 'UNDO'} <= cls.bl_options
    assert bpy.ops.refinemotion.import_result(filepath=str(shot[0]), shot_name="Op") == {'FINISHED'}
    assert bpy.data.objects["Op"].animation_data.action.name == "Op"
    # Without an explicit start frame, the scene's start is used.
    fc = fcurves_of(bpy.data.actions["Op"])['pose.bones["pelvis"].location', 0]
    assert fc.keyframe_points[0].co.x == bpy.context.scene.frame_start
    assert bpy.data.objects["Op_camera"].location.length > 1  # placed on the floor with the body

    blender_scene.fresh_scene(SCENE_FPS, 10)
    assert bpy.ops.refinemotion.import_result(filepath=str(shot[0]), shot_name="Op", placement='CAMERA',
                                              timing='EXACT', prepare_scene=False) == {'FINISHED'}
    assert bpy.data.objects["Op_camera"].location.length == 0 and bpy.context.scene.world is None
    times = keys(fcurves_of(bpy.data.actions["Op"])['pose.bones["pelvis"].location', 0])[0]
    assert times[1] - times[0] == pytest.approx(SCENE_FPS / FOOTAGE_FPS)


def test_undo_after_an_import_restores_the_scene(shot):
    """Blender's own undo, headless: ed.undo() runs in background bpy once the undo stack has a
    step to go back to (its poll fails only on an empty stack, e.g. right after loading a file),
    so the user's work is pushed first.  An operator without 'UNDO' in bl_options pushes no step
    and ed.undo() then fails here; the redo brings the whole import back."""
    bpy.data.objects.new("UserThing", None)
    bpy.context.scene.collection.objects.link(bpy.data.objects["UserThing"])
    bpy.ops.ed.undo_push(message="the user's work")
    before = {kind: sorted(x.name for x in getattr(bpy.data, kind)) for kind in DATA_KINDS}
    # 'EXEC_DEFAULT', True: run and push an undo step, as a click in the UI does
    assert bpy.ops.refinemotion.import_result('EXEC_DEFAULT', True, filepath=str(shot[0]), shot_name="Op") \
        == {'FINISHED'}
    after = {kind: sorted(x.name for x in getattr(bpy.data, kind)) for kind in DATA_KINDS}
    assert {"Op", "Op_body", "Op_camera", *MADE_FOR_THE_SCENE} <= set(after["objects"]) - set(before["objects"])
    assert bpy.ops.ed.undo() == {'FINISHED'}
    assert {kind: sorted(x.name for x in getattr(bpy.data, kind)) for kind in DATA_KINDS} == before
    assert bpy.context.scene.world is None
    assert bpy.ops.ed.redo() == {'FINISHED'}
    assert {kind: sorted(x.name for x in getattr(bpy.data, kind)) for kind in DATA_KINDS} == after
    assert bpy.data.objects["Op"].animation_data.action.name == "Op"


@pytest.mark.parametrize("override, message", [
    ({"rest_vertices": None}, "has no field 'rest_vertices'"),
    ({"body_pose": np.zeros((24, 72))}, "field 'body_pose' has shape (24, 72), expected (F, 69) with F=24"),
    ({"skin_weights": np.zeros((10, 24), dtype=np.float32)},
     "field 'skin_weights' has shape (10, 24), expected (V, 24) with V=13718"),
])
def test_bad_result_reports_error_and_changes_nothing(shot, tmp_path, override, message):
    import_shot(shot[0])
    path = tmp_path / "Bad.npz"
    result_fixture.write_result(path, num_frames=24, **override)
    before = data_counts()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.refinemotion.import_result(filepath=str(path))
    assert f"Import Refined Motion: Bad.npz: {message}" in str(err.value)
    assert data_counts() == before


def test_missing_footage_reports_error_and_changes_nothing(shot, tmp_path):
    before = data_counts()
    with pytest.raises(RuntimeError, match="Cannot load the footage"):
        bpy.ops.refinemotion.import_result(filepath=str(shot[0]), footage_path=str(tmp_path / "none.mp4"))
    assert data_counts() == before


def test_failure_while_building_removes_everything_made(shot, monkeypatch):
    import_shot(shot[0])  # an earlier import must survive
    before = data_counts()
    names = {kind: {item.name for item in getattr(bpy.data, kind)} for kind in DATA_KINDS}
    real_new_action = keyframes.new_action

    def new_action_then_fail(*args):
        real_new_action(*args)
        raise RuntimeError("disk full")

    monkeypatch.setattr(keyframes, "new_action", new_action_then_fail)
    with pytest.raises(RuntimeError, match="Import Refined Motion: disk full"):
        bpy.ops.refinemotion.import_result(filepath=str(shot[0]))
    assert data_counts() == before
    assert {kind: {item.name for item in getattr(bpy.data, kind)} for kind in DATA_KINDS} == names


def test_import_runs_without_torch_or_the_engine(shot):
    """In a fresh Blender Python: enabling the add-on and importing loads neither
    torch nor the engine, only its numpy contract (backend.contract; numpy only once
    the operator runs, where bpy itself has not loaded it)."""
    script = f"""
import os
import sys
import bpy
numpy_with_bpy = "numpy" in sys.modules
sys.path.insert(0, {str(ROOT)!r})
import scorehmr_blender
scorehmr_blender.register()
assert numpy_with_bpy or "numpy" not in sys.modules, "numpy loaded by enabling the add-on"
assert bpy.ops.refinemotion.import_result(filepath={str(shot[0])!r}) == {{'FINISHED'}}
assert "Shot" in bpy.data.objects
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "smplx", "cv2", "scipy")
               or (m.startswith("backend.") and not m.startswith("backend.contract")))
assert "backend.contract.results" in sys.modules
assert not heavy, heavy
print("ok", flush=True)
# Skip interpreter teardown: the bpy 4.2 module segfaults at exit once a class with a
# property update callback (our scene settings) was registered, even if unregistered.
os._exit(0)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (proc.stdout + proc.stderr)[-3000:]
