"""Retargeting the SMPL armature onto character rigs, in real bpy (5.x and 4.2).

The SMPL rig comes from a fixture result (tests/support/result_fixture.py) through the
importer.  The character rigs come from tests/support/retarget_rigs.py: a Rigify-like deform rig (metres,
Z up, twist segments, two neck bones, extra unmapped bones) and a Mixamo-like rig
(centimetres, Y up data under a 90 deg X rotation and 0.01 scale, like an FBX
import), both in an A-pose (arms ~45 deg down) with their own proportions and
bone rolls, against SMPL's T-pose."""

import itertools
import json
import math

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from scorehmr_blender import convert, importer, keyframes, retarget, retarget_presets
from scorehmr_blender.retarget_presets import MIXAMO, UE5
from scorehmr_blender.retarget_presets import RIGIFY_DEFORM as RIGIFY
from tests.support import blender_scene, result_fixture, retarget_rigs
from tests.support.blender_scene import fcurves_of, keys

# blender_versions (repeated on 4.2 and 4.5 LTS): constraints, baking and actions (legacy in 4.2, slotted from 4.4)
# on rigs made in this Blender.
pytestmark = pytest.mark.blender_versions

FPS = 30
NUM_FRAMES = 24
MAX_ANGLE_DEG = 3.0

# SMPL chain bones and the child their direction points at; leaves have none.
SMPL_CHAINS = {
    "pelvis": "spine1", "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
    **{f"{side}_{a}": f"{side}_{b}" for side in ("left", "right") for a, b in (
        ("collar", "shoulder"), ("shoulder", "elbow"), ("elbow", "wrist"),
        ("hip", "knee"), ("knee", "ankle"), ("ankle", "foot"))},
}
SMPL_LEAVES = ("head", "left_wrist", "right_wrist", "left_foot", "right_foot")


# -- test rigs (tests/support/retarget_rigs.py) ---------------------------------------------------------

build_rig, rigify_like_bones = retarget_rigs.build_rig, retarget_rigs.rigify_like_bones
mixamo_like_bones, MIXAMO_OBJECT = retarget_rigs.mixamo_like_bones, retarget_rigs.MIXAMO_OBJECT
RIGIFY_OBJECT = retarget_rigs.RIGIFY_OBJECT
rigify_rig, mixamo_rig = retarget_rigs.rigify_like, retarget_rigs.mixamo_like


# -- fixtures --------------------------------------------------------------------------------

addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


@pytest.fixture(autouse=True)
def empty_scene():
    return blender_scene.fresh_scene(FPS, NUM_FRAMES)


@pytest.fixture(scope="module")
def shot_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "Shot.npz"
    result_fixture.write_result(path, num_frames=NUM_FRAMES, fps=FPS)
    return path


def import_smpl(path):
    return importer.import_result(bpy.context, str(path), frame_start=1, add_camera=False).armature


# -- measuring ---------------------------------------------------------------------------------

def go_to(frame):
    bpy.context.scene.frame_set(int(frame))
    return bpy.context.evaluated_depsgraph_get()


def posed(rig, depsgraph):
    """{bone: (world head (3,), world rotation (3, 3))} of the evaluated rig."""
    ev = rig.evaluated_get(depsgraph)
    world = np.array(ev.matrix_world)
    out = {}
    for pb in ev.pose.bones:
        m = world @ np.array(pb.matrix)
        out[pb.name] = (m[:3, 3], retarget.world_rotation(m))
    return out


def angle_deg(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return math.degrees(math.atan2(np.linalg.norm(np.cross(a, b)), a @ b))  # well conditioned near 0


def rotation_angle_deg(R):
    """Angle of rotation R (3, 3), from its quaternion (acos of the trace loses small angles)."""
    w = abs(convert.matrix_to_quaternion(R)[0])
    return math.degrees(2.0 * math.atan2(np.linalg.norm(convert.matrix_to_quaternion(R)[1:]), w))


def rest_heads(rig):
    world = rig.matrix_world
    return {b.name: np.array(world @ b.head_local) for b in rig.data.bones}


def leg_ratio_expected(smpl, rig, mapping):
    """Target over SMPL hip-knee-ankle length, measured on the rest bones (world)."""
    def length(heads, names):
        return sum(np.linalg.norm(heads[b] - heads[a]) for a, b in itertools.pairwise(names))
    src, tgt = rest_heads(smpl), rest_heads(rig)
    legs = [(f"{s}_hip", f"{s}_knee", f"{s}_ankle") for s in ("left", "right")]
    return (sum(length(tgt, [mapping[j] for j in leg]) for leg in legs)
            / sum(length(src, leg) for leg in legs))


def measure(smpl, rig, mapping, facing=None):
    """Over the clip: worst chain-direction angle (deg) between the rigs (target
    directions turned by ``facing``), worst drift (deg) of each leaf's rotation
    relative to its SMPL bone, and the root displacements (F, 3) of both."""
    facing = np.eye(3) if facing is None else facing
    worst, drift, src_root, tgt_root = 0.0, 0.0, [], []
    first_relative = {}
    for frame in range(1, NUM_FRAMES + 1):
        depsgraph = go_to(frame)
        src, tgt = posed(smpl, depsgraph), posed(rig, depsgraph)
        for s, child in SMPL_CHAINS.items():
            if s in mapping and child in mapping:
                want = src[child][0] - src[s][0]
                got = facing @ (tgt[mapping[child]][0] - tgt[mapping[s]][0])
                worst = max(worst, angle_deg(want, got))
        for s in SMPL_LEAVES:
            relative = src[s][1].T @ facing @ tgt[mapping[s]][1]
            first_relative.setdefault(s, relative)
            drift = max(drift, rotation_angle_deg(first_relative[s].T @ relative))
        src_root.append(src["pelvis"][0])
        tgt_root.append(tgt[mapping["pelvis"]][0])
    src_rest, tgt_rest = rest_heads(smpl)["pelvis"], rest_heads(rig)[mapping["pelvis"]]
    return worst, drift, np.array(src_root) - src_rest, np.array(tgt_root) - tgt_rest


def snapshot(action):
    return {key: tuple(map(np.copy, keys(fc))) for key, fc in fcurves_of(action).items()}


# -- the maths on its own ------------------------------------------------------------------------

def random_rotations(n, seed):
    return convert.axis_angle_to_matrix(np.random.default_rng(seed).uniform(-3, 3, size=(n, 3)))


def test_rotation_between_takes_a_direction_onto_another_by_the_smallest_angle():
    """The contract's rotation_between, which retarget aligns bones with (it replaced retarget's own
    copy): also for opposite, equal and nearly opposite directions."""
    rng = np.random.default_rng(0)
    nearly_opposite = ([0, 0, 1], [1e-3, 0, -1])  # 0.06 deg from opposite: the general formula, 1 + c ~ 5e-7
    for a, b in [*rng.normal(size=(20, 2, 3)), ([0, 0, 1], [0, 0, -1]), ([1, 0, 0], [1, 0, 0]), nearly_opposite]:
        R = retarget.rotation_between(a, b)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(R @ retarget.unit(a), retarget.unit(b), atol=1e-12)
        assert rotation_angle_deg(R) == pytest.approx(angle_deg(np.asarray(a, float), np.asarray(b, float)),
                                                      abs=1e-6)


def test_pose_rotations_invert_blenders_bone_chain():
    """Q from pose_rotations() chained the way Blender does (M_b = M_p P^T B Q_b)
    gives back the wanted rotations of mapped bones; unmapped ones get Q = I."""
    parents = np.array([-1, 0, 1, 1, 3])
    rest = random_rotations(5, 1)
    wanted = random_rotations(3 * 5, 2).reshape(3, 5, 3, 3)
    mapped = np.array([True, False, True, True, True])
    Q, posed_rot = retarget.pose_rotations(rest, parents, wanted, mapped)
    for f in range(3):
        M = {}
        for b, p in enumerate(parents):
            M[b] = rest[b] @ Q[f, b] if p < 0 else M[p] @ rest[p].T @ rest[b] @ Q[f, b]
            np.testing.assert_allclose(M[b], posed_rot[f, b], atol=1e-12)
            if mapped[b]:
                np.testing.assert_allclose(M[b], wanted[f, b], atol=1e-12)
        np.testing.assert_allclose(Q[f, 1], np.eye(3))


def test_root_locations_put_the_head_where_asked():
    parents = np.array([-1, 0])
    rest4 = np.tile(np.eye(4), (2, 1, 1))
    rest4[:, :3, :3] = random_rotations(2, 3)
    rest4[:, :3, 3] = [[0.0, 0.1, 0.2], [0.3, -0.2, 1.0]]
    posed_rot = random_rotations(2 * 2, 4).reshape(2, 2, 3, 3)
    heads = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    loc = retarget.root_locations(rest4, parents, posed_rot, 1, heads)
    for f in range(2):
        parent = np.eye(4)
        parent[:3, :3], parent[:3, 3] = posed_rot[f, 0], rest4[0, :3, 3]   # the parent is not moved
        basis = np.eye(4)
        basis[:3, 3] = loc[f]
        bone = parent @ np.linalg.inv(rest4[0]) @ rest4[1] @ basis
        np.testing.assert_allclose(bone[:3, 3], heads[f], atol=1e-12)



def test_pinned_foot_stays_put_when_the_contact_moves_from_ball_to_ankle_and_back():
    """A foot sliding back 25 mm a frame (In Place: the body's travel) with the ball, then the
    ankle, then the ball in contact is held still over the whole contact, switches included."""
    frames = 8
    ankle = np.c_[np.zeros(frames), -0.025 * np.arange(frames), np.full(frames, 0.08)]
    ball = ankle + [0.0, 0.15, -0.06]
    kind = np.array([0, 2, 2, 1, 1, 1, 2, 0])
    offsets = retarget.pin_offsets(ankle, ball, kind, ease=2)
    contact = slice(1, 7)
    for joint in (ankle, ball):
        held = joint[contact] + offsets[contact]
        np.testing.assert_allclose(held, np.broadcast_to(held[0], held.shape), atol=1e-12)

# -- retargeting real rigs -------------------------------------------------------------------------

@pytest.mark.parametrize("make_rig, preset, expected",
                         [(rigify_rig, "rigify_deform", RIGIFY), (mixamo_rig, "mixamo", MIXAMO)],
                         ids=["rigify", "mixamo"])
def test_retargeted_bones_point_like_smpl_and_root_motion_scales_by_leg_length(shot_path, make_rig, preset,
                                                                               expected):
    smpl = import_smpl(shot_path)
    rig = make_rig()
    action = retarget.retarget(smpl, rig, preset=preset)

    assert action.name == "Shot_retarget" and rig.animation_data.action == action
    worst, drift, src_root, tgt_root = measure(smpl, rig, expected)
    print(f"\n{preset}: worst chain direction error {worst:.5f} deg, leaf drift {drift:.5f} deg")
    assert worst < MAX_ANGLE_DEG and worst < 0.01  # exact up to float32 pose matrices
    assert drift < 0.01  # leaves keep their rest angle to the SMPL bone

    ratio = leg_ratio_expected(smpl, rig, expected)
    assert abs(ratio - 1.0) > 0.08  # the rigs' legs really differ from SMPL's
    assert retarget.leg_ratio(smpl, rig, expected) == pytest.approx(ratio, rel=1e-6)
    assert np.ptp(src_root, axis=0).max() > 0.5  # the pelvis really travels
    # Across: the source's travel since the first frame, scaled (height: by the feet, see
    # test_addon_retarget_rigs.py).
    np.testing.assert_allclose(tgt_root[:, :2] - tgt_root[0, :2], ratio * (src_root[:, :2] - src_root[0, :2]),
                               atol=1e-4)


def test_target_facing_another_way_gets_the_motion_in_its_own_frame(shot_path):
    """A character turned 90 deg about Z: every direction and the root path turn with it."""
    smpl = import_smpl(shot_path)
    turn = Matrix.Rotation(math.pi / 2, 4, 'Z')
    rig = rigify_rig(RIGIFY_OBJECT @ turn)
    retarget.retarget(smpl, rig, mapping=RIGIFY)
    facing = np.array(turn.to_3x3()).T  # back into SMPL's frame
    worst, drift, src_root, tgt_root = measure(smpl, rig, RIGIFY, facing)
    assert worst < 0.01 and drift < 0.01
    ratio = leg_ratio_expected(smpl, rig, RIGIFY)
    travel = (tgt_root - tgt_root[0]) @ facing.T
    np.testing.assert_allclose(travel[:, :2], ratio * (src_root[:, :2] - src_root[0, :2]), atol=1e-4)


def test_rigs_are_evaluated_alone_only_when_they_read_no_other_object(shot_path):
    """evaluated_matrices evaluates a self-contained rig in a scratch scene of its own and gives the scene's
    own evaluation; a rig that follows another object (here a Child Of an animated empty) is evaluated in the
    scene, so it moves with that object; no scratch scene is left behind and the frame is kept."""
    smpl = import_smpl(shot_path)
    scene = bpy.context.scene
    frames = np.array([1.0, 7.5, 24.0])
    assert retarget.self_contained(smpl)
    scenes = set(bpy.data.scenes)
    scene.frame_set(5)
    alone = retarget.evaluated_matrices(smpl, frames)
    assert set(bpy.data.scenes) == scenes and scene.frame_current == 5
    for i, frame in enumerate(frames):
        scene.frame_set(int(frame), subframe=float(frame % 1))
        evaluated = smpl.evaluated_get(bpy.context.evaluated_depsgraph_get())
        matrices = np.array([np.array(b.matrix) for b in evaluated.pose.bones])
        np.testing.assert_allclose(alone[0][i], matrices, atol=1e-6)
        np.testing.assert_allclose(alone[1][i], np.array(evaluated.matrix_world), atol=1e-6)

    rig = rigify_rig(RIGIFY_OBJECT)
    empty = bpy.data.objects.new("Mover", None)
    scene.collection.objects.link(empty)
    for frame, x in ((1, 0.0), (24, 2.0)):
        empty.location = (x, 0.0, 0.0)
        empty.keyframe_insert("location", frame=frame)
    rig.pose.bones[RIGIFY["pelvis"]].constraints.new('CHILD_OF').target = empty
    assert not retarget.self_contained(rig)
    heads = retarget.evaluated_matrices(rig, frames)[0][:, rig.pose.bones.keys().index(RIGIFY["pelvis"]), 0, 3]
    assert heads[-1] - heads[0] == pytest.approx(2.0, abs=1e-3)  # the empty's path, only the scene knows it


def test_retarget_makes_a_new_action_and_touches_no_other(shot_path):
    smpl = import_smpl(shot_path)
    rig = mixamo_rig()
    idle = bpy.data.actions.new("Idle")
    fc = keyframes.fcurve_factory(idle, rig)('pose.bones["mixamorig:HeadTop_End"].location', 0,
                                              "mixamorig:HeadTop_End")
    keyframes.fill_fcurve(fc, np.array([1.0, 10.0]), np.array([0.0, 30.0]))
    keyframes.assign(rig, idle)
    taken = bpy.data.actions.new("Shot_retarget")
    taken.use_fake_user = True
    source_action = smpl.animation_data.action
    before = {a.name: snapshot(a) for a in (idle, source_action)}
    names = set(bpy.data.actions.keys())

    action = retarget.retarget(smpl, rig)  # auto mapping: detects the Mixamo names

    assert set(bpy.data.actions.keys()) == names | {"Shot_retarget.001"}
    assert action.name == "Shot_retarget.001" and rig.animation_data.action == action
    assert smpl.animation_data.action == source_action and idle.use_fake_user
    for a in (idle, source_action):
        after = snapshot(a)
        assert after.keys() == before[a.name].keys()
        for key, (times, values) in before[a.name].items():
            np.testing.assert_array_equal(after[key][0], times)
            np.testing.assert_array_equal(after[key][1], values)

    curves = fcurves_of(action)
    mapped = [rig.pose.bones[t] for t in MIXAMO.values()]
    paths = {pb.name: {'QUATERNION': "rotation_quaternion", 'AXIS_ANGLE': "rotation_axis_angle"}.get(
        pb.rotation_mode, "rotation_euler") for pb in mapped}
    expected = {(f'pose.bones["{n}"].{p}', i) for n, p in paths.items()
                for i in range(3 if p == "rotation_euler" else 4)}
    expected |= {('pose.bones["mixamorig:Hips"].location', i) for i in range(3)}
    assert set(curves) == expected
    assert paths["mixamorig:LeftForeArm"] == "rotation_euler" and paths["mixamorig:Neck"] == "rotation_axis_angle"
    for fcurve in curves.values():
        np.testing.assert_array_equal(keys(fcurve)[0], np.arange(1, NUM_FRAMES + 1))


def test_unmapped_bones_stay_at_rest(shot_path):
    smpl = import_smpl(shot_path)
    rig = rigify_rig()
    rig.pose.bones["DEF-breast.L"].rotation_quaternion = (0.9, 0.3, 0.1, 0.0)  # a leftover pose
    retarget.retarget(smpl, rig, preset="rigify_deform")
    bones = rig.data.bones
    for frame in (1, 13, 24):
        depsgraph = go_to(frame)
        ev = rig.evaluated_get(depsgraph)
        for name in ("DEF-breast.L", "DEF-thigh.L.001", "DEF-spine.005", "DEF-pelvis.R"):
            pb, bone = ev.pose.bones[name], bones[name]
            assert np.allclose(np.array(pb.matrix_basis), np.eye(4), atol=1e-6), name
            rest_relative = np.array(bone.parent.matrix_local.inverted() @ bone.matrix_local)
            posed_relative = np.array(ev.pose.bones[bone.parent.name].matrix.inverted() @ pb.matrix)
            np.testing.assert_allclose(posed_relative, rest_relative, atol=1e-5)


def test_retarget_refuses_bad_input(shot_path):
    smpl = import_smpl(shot_path)
    rig = rigify_rig()
    with pytest.raises(ValueError, match="unknown preset 'maya'"):
        retarget.retarget(smpl, rig, preset="maya")
    with pytest.raises(ValueError, match="has no bones DEF-tail .1 missing.; press Build Mapping"):
        retarget.retarget(smpl, rig, mapping={"pelvis": "DEF-spine", "neck": "DEF-tail"})
    with pytest.raises(retarget_presets.MappingError, match="mapped from both"):
        retarget.retarget(smpl, rig, mapping={"pelvis": "DEF-spine", "spine1": "DEF-spine"})
    with pytest.raises(ValueError, match="no bones of 'RigifyLike' are mapped"):
        retarget.retarget(smpl, rig, preset="ue5")
    with pytest.raises(ValueError, match="has no action"):
        retarget.retarget(rig, smpl)
    assert len(bpy.data.actions) == 1  # nothing made


def test_warnings_name_constraints_and_missing_legs(shot_path):
    rig = rigify_rig()
    rig.pose.bones["DEF-thigh.L"].constraints.new('COPY_ROTATION')
    warnings = retarget.mapping_warnings(rig, {"pelvis": "DEF-spine", "left_hip": "DEF-thigh.L"})
    assert any("constraints" in w and "DEF-thigh.L" in w for w in warnings)
    assert any("No leg is mapped" in w for w in warnings)
    assert retarget.mapping_warnings(rig, {"left_hip": "DEF-thigh.L"})[1] == "The pelvis is not mapped: no root motion"
    assert retarget.mapping_warnings(build_rig("Clean", rigify_like_bones()), RIGIFY) == []


# -- mappings -----------------------------------------------------------------------------------

def test_name_mapping_finds_the_expected_pairs_on_both_rigs():
    """Without presets: names, sides and the spine chain found from the hierarchy
    (Rigify's DEF-spine.* carry no pelvis/chest/neck/head words)."""
    def names_and_parents(rig):
        return [(name, parent) for name, parent, *_ in retarget.candidate_bones(rig)]
    rigify = rigify_rig()
    assert retarget_presets.name_mapping(names_and_parents(rigify)) == RIGIFY
    mixamo = mixamo_rig()
    assert retarget_presets.name_mapping(names_and_parents(mixamo)) == MIXAMO
    assert retarget.build_mapping(rigify) == (RIGIFY, "rigify_deform")
    assert retarget.build_mapping(mixamo) == (MIXAMO, "mixamo")


def test_name_mapping_on_unreal_and_other_names():
    ue = [("root", None), ("pelvis", "root"), ("ik_foot_root", "root"), ("ik_foot_l", "ik_foot_root")]
    ue += [(f"spine_0{i}", "pelvis" if i == 1 else f"spine_0{i - 1}") for i in range(1, 6)]
    ue += [("neck_01", "spine_05"), ("neck_02", "neck_01"), ("head", "neck_02")]
    for s in "lr":
        ue += [(f"clavicle_{s}", "spine_05"), (f"upperarm_{s}", f"clavicle_{s}"),
               (f"upperarm_twist_01_{s}", f"upperarm_{s}"), (f"lowerarm_{s}", f"upperarm_{s}"),
               (f"hand_{s}", f"lowerarm_{s}"), (f"index_01_{s}", f"hand_{s}"),
               (f"thigh_{s}", "pelvis"), (f"thigh_twist_01_{s}", f"thigh_{s}"), (f"calf_{s}", f"thigh_{s}"),
               (f"calf_correctiveRoot_{s}", f"calf_{s}"), (f"foot_{s}", f"calf_{s}"), (f"ball_{s}", f"foot_{s}")]
    assert retarget_presets.name_mapping(ue) == UE5
    assert retarget_presets.auto_mapping(ue) == (UE5, "ue5")

    # Other conventions: side prefixes, camelCase, "Bip01 L ...", lower/upper synonyms.
    other = [("Bip01 Pelvis", None), ("Bip01 Spine", "Bip01 Pelvis"), ("Bip01 Spine1", "Bip01 Spine"),
             ("Bip01 Neck", "Bip01 Spine1"), ("Bip01 Head", "Bip01 Neck"),
             ("lCollar", "Bip01 Spine1"), ("L_UpperArm", "lCollar"), ("L_LowerArm", "L_UpperArm"),
             ("LeftWrist", "L_LowerArm"), ("rCollar", "Bip01 Spine1"), ("Bip01 R UpperArm", "rCollar"),
             ("thigh.L", "Bip01 Pelvis"), ("thigh.R", "Bip01 Pelvis"), ("LowerLeg_L", "thigh.L"),
             ("knee_r", "thigh.R")]
    assert retarget_presets.name_mapping(other) == {
        "pelvis": "Bip01 Pelvis", "spine1": "Bip01 Spine", "spine3": "Bip01 Spine1", "neck": "Bip01 Neck",
        "head": "Bip01 Head", "left_collar": "lCollar", "left_shoulder": "L_UpperArm",
        "left_elbow": "L_LowerArm", "left_wrist": "LeftWrist", "right_collar": "rCollar",
        "right_shoulder": "Bip01 R UpperArm", "left_hip": "thigh.L", "right_hip": "thigh.R",
        "left_knee": "LowerLeg_L", "right_knee": "knee_r"}


def test_presets_resolve_namespaces_and_case():
    names = [t.replace("mixamorig:", "mixamorig1:") for t in MIXAMO.values()] + ["Armature"]
    resolved = retarget_presets.resolve(MIXAMO, names)
    assert resolved == {s: t.replace("mixamorig:", "mixamorig1:") for s, t in MIXAMO.items()}
    assert retarget_presets.resolve(UE5, [t.upper() for t in UE5.values()])["pelvis"] == "PELVIS"
    assert retarget_presets.detect_preset(["Hips", "Spine"]) is None
    assert retarget_presets.SMPL_BONES == convert.JOINT_NAMES
    assert set(retarget_presets.SMPL_PARTS) | set(retarget_presets.SMPL_SPINE) | {"left_hand", "right_hand"} == \
        set(convert.JOINT_NAMES)
    for preset in (RIGIFY, MIXAMO, UE5):
        assert len(preset) == 22 and len(set(preset.values())) == 22


def test_mapping_json_round_trips_and_rejects_bad_files():
    text = retarget_presets.mapping_to_json(MIXAMO)
    assert json.loads(text)["pairs"][0] == {"source": "pelvis", "target": "mixamorig:Hips"}
    back = retarget_presets.mapping_from_json(text)
    assert back == MIXAMO and list(back) == list(MIXAMO)
    for bad, message in [("{", "not a JSON file"), ('{"format": "x"}', "not a Refine Motion bone mapping"),
                         (json.dumps({"format": retarget_presets.FORMAT, "pairs": [{"source": 1}]}), "'pairs'"),
                         (json.dumps({"format": retarget_presets.FORMAT, "pairs": [
                             {"source": "pelvis", "target": "a"}, {"source": "neck", "target": "a"}]}),
                          "mapped from both")]:
        with pytest.raises(retarget_presets.MappingError, match=message):
            retarget_presets.mapping_from_json(bad)
