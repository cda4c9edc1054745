"""BVH and FBX export of animated armatures, in real bpy (5.x, 4.5 and 4.2): files
re-imported with Blender's importers at their defaults must give back the frames and the
posed skeleton where it stood in the world, upright."""

import math

import bpy
import numpy as np
import pytest

from scorehmr_blender import convert, export, importer, retarget
from tests.support import blender_scene, result_fixture
from tests.addon.test_addon_retarget import MIXAMO_OBJECT, build_rig, mixamo_like_bones

# blender_versions (repeated on 4.2 and 4.5 LTS): Blender's bundled BVH / FBX exporters and importers, and the
# actions they read, differ between versions.
pytestmark = pytest.mark.blender_versions

FPS = 30
NUM_FRAMES = 24
LONG_FRAMES = 96  # long and slow enough for the FBX exporter's key simplification to show
START = 3
CHECK_FRAMES = (START, START + 7, START + NUM_FRAMES - 1)
CHECK_BONES = ("pelvis", "left_elbow", "right_knee", "head", "left_wrist")


addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


@pytest.fixture(autouse=True)
def empty_scene():
    return blender_scene.fresh_scene(FPS, 250)


@pytest.fixture(scope="module")
def shot_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "Shot.npz"
    result_fixture.write_result(path, num_frames=NUM_FRAMES, fps=FPS)
    return path


@pytest.fixture
def smpl(shot_path):
    return importer.import_result(bpy.context, str(shot_path), frame_start=START, add_camera=False,
                                  update_scene_duration=False).armature


def posed(rig, frame):
    """{bone: (world head (3,), world rotation (3, 3), its change from rest (3, 3))} at ``frame``.

    The change from rest, G_posed G_rest^T, compares rigs whose bones have other
    rest orientations (BVH re-imports)."""
    bpy.context.scene.frame_set(frame)
    ev = rig.evaluated_get(bpy.context.evaluated_depsgraph_get())
    world = np.array(ev.matrix_world)
    out = {}
    for pb in ev.pose.bones:
        m, rest = world @ np.array(pb.matrix), world @ np.array(pb.bone.matrix_local)
        rotation = retarget.world_rotation(m)
        out[pb.name] = (m[:3, 3], rotation, rotation @ retarget.world_rotation(rest).T)
    return out


def rotation_angle_deg(R):
    q = convert.matrix_to_quaternion(R)
    return math.degrees(2.0 * math.atan2(np.linalg.norm(q[1:]), abs(q[0])))


def new_armatures(before):
    return [o for o in bpy.data.objects if o.type == 'ARMATURE' and o not in before]


def compare_rigs(original, copy, bones=CHECK_BONES, rotations="world"):
    """Worst head distance (m) and bone rotation difference (deg) over CHECK_FRAMES;
    rotations: compare "world" rotations or their change "from_rest"."""
    which = {"world": 1, "from_rest": 2}[rotations]
    worst_pos, worst_rot = 0.0, 0.0
    for frame in CHECK_FRAMES:
        a, b = posed(original, frame), posed(copy, frame)
        for bone in bones:
            worst_pos = max(worst_pos, np.linalg.norm(a[bone][0] - b[bone][0]))
            worst_rot = max(worst_rot, rotation_angle_deg(a[bone][which].T @ b[bone][which]))
    return worst_pos, worst_rot


def import_fbx(path, **options):
    """Blender's FBX import at its defaults (its Animation Offset: 1 frame)."""
    return bpy.ops.import_scene.fbx(filepath=str(path), **options)


def worst_head_distance(original, copy, frames, names=None):
    """Largest distance (m) between same-named posed bone heads in the world over ``frames``."""
    names = names or [b.name for b in original.data.bones]
    worst = 0.0
    for frame in frames:
        a, b = posed(original, frame), posed(copy, frame)
        worst = max(worst, max(np.linalg.norm(a[n][0] - b[n][0]) for n in names))
    return worst


def all_frames():
    return range(START, START + NUM_FRAMES)


def frame_count(action):
    start, end = action.frame_range
    return round(end - start) + 1, start


def import_bvh(path, **axes):
    """Blender's BVH import at its defaults (Y up, -Z forward unless ``axes`` say otherwise),
    keys from START; returns the new armature."""
    before = set(bpy.data.objects)
    assert bpy.ops.import_anim.bvh(filepath=str(path), frame_start=START, update_scene_duration=False,
                                   **axes) == {'FINISHED'}
    (copy,) = new_armatures(before)
    return copy


def test_bvh_opens_upright_where_the_character_stands(smpl, tmp_path):
    """Y up by default: Blender's default BVH import (Y up -> Z up) gives back every bone head
    of every frame in the world, the body upright on the floor at the origin."""
    path = export.export_bvh(smpl, tmp_path / "shot.bvh")
    text = path.read_text()
    assert f"Frames: {NUM_FRAMES}\n" in text and f"Frame Time: {1 / FPS:.6f}" in text
    assert text.count("JOINT ") == 23 and "ROOT pelvis\n{\n\tOFFSET 0.000000 0.000000 0.000000\n" in text
    assert text.count("CHANNELS 6 ") == 1  # positions on the root only, absolute (as in CMU's files)

    copy = import_bvh(path)
    assert frame_count(copy.animation_data.action) == (NUM_FRAMES, START)
    worst = worst_head_distance(smpl, copy, all_frames())
    worst_rot = compare_rigs(smpl, copy, rotations="from_rest")[1]  # BVH bones get new rolls
    print(f"\nBVH round trip (Y up): {worst * 1000:.4f} mm, {worst_rot:.4f} deg")
    assert worst < 1e-4 and worst_rot < 0.01
    for frame in (START, START + 11):
        heads = posed(copy, frame)
        assert heads["head"][0][2] > max(heads[f][0][2] for f in ("left_ankle", "right_ankle")) + 0.6
    first = posed(copy, START)
    np.testing.assert_allclose(first["pelvis"][0][:2], 0.0, atol=1e-4)  # the import's placement: at the origin
    assert 0.0 < min(first[f][0][2] for f in ("left_ankle", "right_ankle")) < 0.3


def test_bvh_z_up_on_request_and_a_turned_scaled_rig(smpl, tmp_path):
    """up_axis='Z' reads back with a Z-up import (here with position channels on every bone not
    connected to its parent too); a Mixamo-like rig (object turned and scaled like an FBX
    import) is written in the world, its object transform included."""
    path = export.export_bvh(smpl, tmp_path / "z.bvh", up_axis='Z', root_transform_only=False)
    loose = [b.name for b in smpl.data.bones if not b.use_connect]
    assert sorted(loose) == ["left_collar", "left_hip", "pelvis", "right_collar", "right_hip"]
    assert path.read_text().count("CHANNELS 6 ") == len(loose)
    assert worst_head_distance(smpl, import_bvh(path, axis_forward='Y', axis_up='Z'), all_frames()) < 1e-4

    rig = build_rig("MixamoLike", mixamo_like_bones(), MIXAMO_OBJECT)
    retarget.retarget(smpl, rig, preset="mixamo")
    copy = import_bvh(export.export_bvh(rig, tmp_path / "character.bvh"))
    bones = ("mixamorig:Hips", "mixamorig:LeftForeArm", "mixamorig:RightLeg", "mixamorig:Head")
    assert worst_head_distance(rig, copy, all_frames(), bones) < 1e-4
    with pytest.raises(ValueError, match="up_axis"):
        export.export_bvh(smpl, tmp_path / "x.bvh", up_axis='X')

    bpy.context.view_layer.objects.active = smpl  # the Export BVH operator passes its Up Axis on
    assert bpy.ops.refinemotion.export_bvh(filepath=str(tmp_path / "op.bvh"), up_axis='Z') == {'FINISHED'}
    assert (tmp_path / "op.bvh").read_text() == export.export_bvh(smpl, tmp_path / "z2.bvh", up_axis='Z').read_text()


def test_bvh_of_a_rig_with_several_root_bones(smpl, tmp_path):
    """BVH has one root: a still one at the origin holds them (as Blender's own exporter does)."""
    bpy.context.view_layer.objects.active = smpl
    bpy.ops.object.mode_set(mode='EDIT')
    prop = smpl.data.edit_bones.new("prop")
    prop.head, prop.tail = (0.5, 0.0, 0.0), (0.5, 0.0, 0.3)
    bpy.ops.object.mode_set(mode='OBJECT')
    text = export.export_bvh(smpl, tmp_path / "two_roots.bvh").read_text()
    assert text.startswith("HIERARCHY\nROOT __0\n{\n\tOFFSET 0.000000 0.000000 0.000000\n\tCHANNELS 0\n")
    copy = import_bvh(tmp_path / "two_roots.bvh")
    assert worst_head_distance(smpl, copy, all_frames(), [*convert.JOINT_NAMES, "prop"]) < 1e-4


def test_fbx_round_trip_keeps_every_frame_and_pose(tmp_path):
    """Unsimplified: every bone head of every frame of a 96-frame motion comes back (the FBX
    exporter's default simplify factor 1 loses 4.9 mm here, 2.0 mm on the example shot).
    Frames: as Blender's own exporter's files, they come back on the frames they were on with the
    importer's default Animation Offset (1 frame), one earlier with none."""
    result_fixture.write_result(tmp_path / "Long.npz", num_frames=LONG_FRAMES, fps=FPS)
    smpl = importer.import_result(bpy.context, str(tmp_path / "Long.npz"), frame_start=START,
                                  add_camera=False).armature
    path = export.export_fbx(smpl, tmp_path / "shot.fbx")
    assert path.stat().st_size > 10_000  # the skinned body went along

    before, meshes = set(bpy.data.objects), set(bpy.data.meshes)
    assert import_fbx(path) == {'FINISHED'}
    (copy,) = new_armatures(before)
    assert len(set(bpy.data.meshes) - meshes) == 1
    assert frame_count(copy.animation_data.action) == (LONG_FRAMES, START)
    worst = worst_head_distance(smpl, copy, range(START, START + LONG_FRAMES))
    worst_rot = compare_rigs(smpl, copy)[1]
    print(f"\nFBX round trip: {worst * 1000:.4f} mm over every bone and frame, {worst_rot:.4f} deg")
    assert worst < 1e-3 and worst_rot < 0.01
    assert compare_rigs(smpl, copy, rotations="from_rest")[1] < 0.01  # the skin's bind pose is the rest

    before = set(bpy.data.objects)
    assert import_fbx(path, anim_offset=0.0) == {'FINISHED'}
    (shifted,) = new_armatures(before)
    assert frame_count(shifted.animation_data.action) == (LONG_FRAMES, START - 1)
    keys = blender_scene.fcurves_of(smpl.animation_data.action)[('pose.bones["pelvis"].location', 0)]
    assert blender_scene.keys(keys)[0][0] == START  # the keys were moved back after the export


def test_retargeted_character_round_trips_through_fbx(smpl, tmp_path):
    """A Mixamo-like character (object turned and scaled like an FBX import) with a
    retargeted action: the FBX keeps its world-space motion.  (Without a skinned
    mesh the FBX has no bind pose: Blender re-imports the pose at export time as
    the rest, so only world rotations compare.)"""
    rig = build_rig("MixamoLike", mixamo_like_bones(), MIXAMO_OBJECT)
    retarget.retarget(smpl, rig, preset="mixamo")
    path = export.export_fbx(rig, tmp_path / "character.fbx")
    before = set(bpy.data.objects)
    assert import_fbx(path) == {'FINISHED'}
    (copy,) = new_armatures(before)
    assert frame_count(copy.animation_data.action) == (NUM_FRAMES, START)
    bones = ("mixamorig:Hips", "mixamorig:LeftForeArm", "mixamorig:RightLeg", "mixamorig:Head")
    worst_pos, worst_rot = compare_rigs(rig, copy, bones)
    assert worst_pos < 1e-4 and worst_rot < 0.01


def test_exports_refuse_to_overwrite_unless_asked(smpl, tmp_path):
    for name, write in (("a.bvh", export.export_bvh), ("a.fbx", export.export_fbx)):
        path = tmp_path / name
        path.write_text("keep me")
        with pytest.raises(FileExistsError, match="overwrite=True"):
            write(smpl, path)
        assert path.read_text() == "keep me"
        assert write(smpl, path, overwrite=True) == path
        assert path.stat().st_size > 1000


def test_export_takes_the_action_range_and_restores_the_scene(smpl, tmp_path):
    scene, view_layer = bpy.context.scene, bpy.context.view_layer
    body = smpl.children[0]
    body.select_set(True)
    smpl.select_set(False)
    view_layer.objects.active = body
    scene.frame_set(42)
    assert export.action_frame_range(smpl) == (START, START + NUM_FRAMES - 1)

    export.export_fbx(smpl, tmp_path / "a.fbx")
    path = export.export_bvh(smpl, tmp_path / "a.bvh", frame_start=START + 2, frame_end=START + 5)
    assert "Frames: 4\n" in path.read_text()
    assert (scene.frame_start, scene.frame_end, scene.frame_current) == (1, 250, 42)
    assert view_layer.objects.active == body and body.select_get() and not smpl.select_get()


def test_export_needs_an_animated_armature(smpl, tmp_path):
    with pytest.raises(ValueError, match="needs an armature"):
        export.export_bvh(smpl.children[0], tmp_path / "a.bvh")
    smpl.animation_data.action = None
    with pytest.raises(ValueError, match="has no action"):
        export.export_fbx(smpl, tmp_path / "a.fbx")
    with pytest.raises(FileNotFoundError):
        export.export_bvh(smpl, tmp_path / "missing" / "a.bvh")
    assert not list(tmp_path.iterdir())
