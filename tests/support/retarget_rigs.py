"""Character rigs for the retargeting tests, built in real bpy, and the example shot's SMPL rig.

- rigify_like / mixamo_like: hand-built DEF-layer and Mixamo layouts (A-pose, own proportions
  and rolls; the Mixamo one in centimetres, Y up under a 90 deg X turn and 0.01 scale, like an
  FBX import).
- metarig(): Rigify's human metarig; generated_rigify(): the rig Rigify generates from it,
  made once per process and kept as a .blend (generation takes seconds).
- ue5_like, numbered (Bone, Bone.001 ...) and japanese: the same skeleton under other names,
  for automatic mapping by the skeleton's shape.
- shot_smpl(): the example shot's ground truth motion (examples/shot/ground_truth.npz) written
  as an OUT.npz-format result by tests/support/result_fixture.py and imported by the add-on.
"""
import math
from pathlib import Path

import bpy
import numpy as np
import torch
from mathutils import Matrix

from scorehmr_blender import importer
from tests.support import result_fixture

SHOT = Path(__file__).resolve().parents[2] / "examples" / "shot" / "ground_truth.npz"


def build_rig(name, bones, matrix_world=None, rotation_modes=None):
    """An armature object from [(name, head, tail, roll_deg, parent)] (armature space)."""
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.collection.objects.link(obj)
    obj.matrix_world = matrix_world if matrix_world is not None else Matrix.Identity(4)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode='EDIT')
    for bone_name, head, tail, roll, parent in bones:
        bone = data.edit_bones.new(bone_name)
        bone.head, bone.tail, bone.roll = head, tail, math.radians(roll)
        if parent:
            bone.parent = data.edit_bones[parent]
            bone.use_connect = (bone.parent.tail - bone.head).length < 1e-9
    bpy.ops.object.mode_set(mode='OBJECT')
    for bone_name, mode in (rotation_modes or {}).items():
        obj.pose.bones[bone_name].rotation_mode = mode
    return obj


def _mirror(bones, flip):
    """Right-side copies of left-side bone specs (x -> -x, roll -> -roll, names by ``flip``)."""
    return [(flip(n), (-h[0], h[1], h[2]), (-t[0], t[1], t[2]), -roll, flip(p) if p else p)
            for n, h, t, roll, p in bones]


def _along(head, direction, length):
    d = np.asarray(direction, dtype=float)
    return tuple(np.asarray(head) + length * d / np.linalg.norm(d))


def _mid(a, b):
    return tuple((np.asarray(a) + np.asarray(b)) / 2)


def rigify_like_bones():
    """[(name, head, tail, roll_deg, parent)]: Rigify's DEF layer on the human metarig's
    proportions (legs ~1 m, longer than SMPL's), arms in an A-pose, twist segments."""
    spine = [(0, 0.0552, 1.0099), (0, 0.0172, 1.1573), (0, 0.0004, 1.2929), (0, 0.0059, 1.4657),
             (0, 0.0114, 1.6582), (0, -0.013, 1.7197), (0, -0.016, 1.78), (0, -0.016, 1.98)]
    names = ["DEF-spine"] + [f"DEF-spine.00{i}" for i in range(1, 7)]
    center = [(n, spine[i], spine[i + 1], (0, 5, -7, 12, 0, 20, -30)[i], names[i - 1] if i else None)
              for i, n in enumerate(names)]
    hip, knee, ankle, ball = (0.098, 0.0124, 1.072), (0.098, -0.0286, 0.5372), (0.098, 0.0162, 0.0852), \
        (0.098, -0.0934, 0.0167)
    shoulder = (0.1953, 0.0267, 1.5846)
    elbow = _along(shoulder, (0.7071, 0.03, -0.7071), 0.29)   # 45 deg down
    wrist = _along(elbow, (0.69, -0.12, -0.71), 0.27)
    left = [
        ("DEF-pelvis.L", spine[0], (0.1112, -0.0451, 1.1533), -61.6, "DEF-spine"),
        ("DEF-thigh.L", hip, _mid(hip, knee), 8, "DEF-spine"),
        ("DEF-thigh.L.001", _mid(hip, knee), knee, 8, "DEF-thigh.L"),
        ("DEF-shin.L", knee, _mid(knee, ankle), -15, "DEF-thigh.L.001"),
        ("DEF-shin.L.001", _mid(knee, ankle), ankle, -15, "DEF-shin.L"),
        ("DEF-foot.L", ankle, ball, 3, "DEF-shin.L.001"),
        ("DEF-toe.L", ball, (0.098, -0.17, 0.0167), 0, "DEF-foot.L"),
        ("DEF-shoulder.L", (0.0183, -0.0684, 1.6051), (0.1694, 0.0205, 1.605), 0.02, "DEF-spine.003"),
        ("DEF-upper_arm.L", shoulder, _mid(shoulder, elbow), 35, "DEF-shoulder.L"),
        ("DEF-upper_arm.L.001", _mid(shoulder, elbow), elbow, 35, "DEF-upper_arm.L"),
        ("DEF-forearm.L", elbow, _mid(elbow, wrist), 80, "DEF-upper_arm.L.001"),
        ("DEF-forearm.L.001", _mid(elbow, wrist), wrist, 80, "DEF-forearm.L"),
        ("DEF-hand.L", wrist, _along(wrist, (0.69, -0.12, -0.71), 0.1), -120, "DEF-forearm.L.001"),
        ("DEF-breast.L", (0.1184, 0.0485, 1.4596), (0.1184, -0.0907, 1.4596), 0, "DEF-spine.003"),
    ]
    return center + left + _mirror(left, lambda n: n.replace(".L", ".R"))


def mixamo_like_bones(prefix="mixamorig:"):
    """Mixamo names and layout in centimetres, Y up, facing +Z (left = +X): shorter
    legs (~0.72 m) than SMPL's, arms 45 deg down, three fingers, FBX-like rolls."""
    m = prefix
    hips, spine = (0, 85, 0), [(0, 94, -0.5), (0, 105, -1), (0, 117, -1)]
    neck, head, top = (0, 133, -2), (0, 141, 0), (0, 160, 0)
    center = [(m + "Hips", hips, spine[0], 40, None),
              (m + "Spine", spine[0], spine[1], -70, m + "Hips"),
              (m + "Spine1", spine[1], spine[2], 15, m + "Spine"),
              (m + "Spine2", spine[2], neck, 100, m + "Spine1"),
              (m + "Neck", neck, head, -5, m + "Spine2"),
              (m + "Head", head, top, 60, m + "Neck"),
              (m + "HeadTop_End", top, (0, 170, 0), 0, m + "Head")]
    clav, arm = (6, 128, -2), (15, 127, -3)
    elbow = _along(arm, (0.7071, -0.7071, 0), 25)
    wrist = _along(elbow, (0.68, -0.73, 0.06), 24)
    finger = _along(wrist, (0.68, -0.73, 0.06), 9)
    up_leg, knee, ankle, ball = (9, 80, 0), (9.5, 45, 1), (10, 8, -3), (10, 1, 9)
    left = [(m + "LeftShoulder", clav, arm, -25, m + "Spine2"),
            (m + "LeftArm", arm, elbow, 170, m + "LeftShoulder"),
            (m + "LeftForeArm", elbow, wrist, -45, m + "LeftArm"),
            (m + "LeftHand", wrist, finger, 10, m + "LeftForeArm"),
            *[(m + f"LeftHand{f}1", _along(finger, (0, 0, dz), 1.5 * abs(dz)),
               _along(_along(finger, (0, 0, dz), 1.5 * abs(dz)), (0.68, -0.73, 0.06), 3), 0, m + "LeftHand")
              for f, dz in (("Index", 1), ("Middle", 0.01), ("Ring", -1))],
            (m + "LeftUpLeg", up_leg, knee, -100, m + "Hips"),
            (m + "LeftLeg", knee, ankle, 30, m + "LeftUpLeg"),
            (m + "LeftFoot", ankle, ball, 5, m + "LeftLeg"),
            (m + "LeftToeBase", ball, (10, 1, 17), 90, m + "LeftFoot"),
            (m + "LeftToe_End", (10, 1, 17), (10, 1, 21), 0, m + "LeftToeBase")]
    return center + left + _mirror(left, lambda n: n.replace("Left", "Right"))


# Mixamo FBX imports: Y-up centimetre data turned Z up and scaled to metres by the object.
MIXAMO_OBJECT = Matrix.Translation((-1.2, 0.5, 0.0)) @ Matrix.Rotation(math.pi / 2, 4, 'X') @ Matrix.Scale(0.01, 4)
RIGIFY_OBJECT = Matrix.Translation((1.5, 0.0, 0.0))
# Bones keyed in other rotation modes than quaternions (as some imports leave them).
MIXAMO_MODES = {"mixamorig:LeftForeArm": 'YXZ', "mixamorig:RightUpLeg": 'XYZ', "mixamorig:Neck": 'AXIS_ANGLE'}


def rigify_like(matrix_world=RIGIFY_OBJECT):
    return build_rig("RigifyLike", rigify_like_bones(), matrix_world)


def mixamo_like(matrix_world=MIXAMO_OBJECT):
    return build_rig("MixamoLike", mixamo_like_bones(), matrix_world, MIXAMO_MODES)


# Other naming conventions over the Mixamo-like skeleton: {Mixamo bone (no prefix): name}.
_UE5_NAMES = {"Hips": "pelvis", "Spine": "spine_01", "Spine1": "spine_02", "Spine2": "spine_03", "Neck": "neck_01",
              "Head": "head", "HeadTop_End": "head_end", "LeftShoulder": "clavicle_l", "LeftArm": "upperarm_l",
              "LeftForeArm": "lowerarm_l", "LeftHand": "hand_l", "LeftHandIndex1": "index_01_l",
              "LeftHandMiddle1": "middle_01_l", "LeftHandRing1": "ring_01_l", "LeftUpLeg": "thigh_l",
              "LeftLeg": "calf_l", "LeftFoot": "foot_l", "LeftToeBase": "ball_l", "LeftToe_End": "ball_end_l"}
_JAPANESE = {"Hips": "下半身", "Spine": "上半身", "Spine1": "上半身2", "Spine2": "上半身3", "Neck": "首", "Head": "頭",
             "HeadTop_End": "頭先", "LeftShoulder": "左肩", "LeftArm": "左腕", "LeftForeArm": "左ひじ",
             "LeftHand": "左手首", "LeftHandIndex1": "左人指１", "LeftHandMiddle1": "左中指１",
             "LeftHandRing1": "左薬指１", "LeftUpLeg": "左足", "LeftLeg": "左ひざ", "LeftFoot": "左足首",
             "LeftToeBase": "左つま先", "LeftToe_End": "左つま先先"}


def _renamed(name, table, to_right):
    """The Mixamo-like skeleton as rig ``name`` under other names: ``table`` {Mixamo left/centre
    bone: new name}, right-side names made by ``to_right``; returns (rig, {Mixamo bone: new name})."""
    def rename(bone):
        bare = bone.split(":", 1)[1]
        return table[bare] if bare in table else to_right(table[bare.replace("Right", "Left")])
    specs = mixamo_like_bones()
    bones = [(rename(n), h, t, r, rename(p) if p else p) for n, h, t, r, p in specs]
    return build_rig(name, bones, MIXAMO_OBJECT), {n.split(":", 1)[1]: rename(n) for n, *_ in specs}


def ue5_like():
    """The Mixamo-like skeleton under UE5 mannequin names (pelvis, spine_01, thigh_l ...)."""
    return _renamed("MannyLike", _UE5_NAMES, lambda n: n[:-2] + "_r")


def japanese():
    """The Mixamo-like skeleton under MMD-style Japanese names (左 left, 右 right)."""
    return _renamed("Japanese", _JAPANESE, lambda n: n.replace("左", "右"))


def numbered():
    """The Rigify-like deform skeleton with Blender's default names: Bone, Bone.001, ... in
    file order (nothing in a name says what it is); returns (rig, {Rigify-like name: new name})."""
    specs = rigify_like_bones()
    names = {n: ("Bone" if i == 0 else f"Bone.{i:03d}") for i, (n, *_) in enumerate(specs)}
    bones = [(names[n], h, t, r, names[p] if p else p) for n, h, t, r, p in specs]
    return build_rig("Numbered", bones), names


def metarig(location=(0.0, 0.0, 0.0)):
    """Rigify's human metarig (needs the Rigify add-on enabled: enable_rigify())."""
    bpy.ops.object.armature_human_metarig_add()
    rig = bpy.context.active_object
    rig.location = location
    return rig


def enable_rigify():
    """Enable the bundled Rigify add-on (also across factory resets) and return its module."""
    import addon_utils

    return addon_utils.enable("rigify", default_set=True, persistent=True)


def generated_rigify(cache_dir, location=(0.0, 0.0, 0.0)):
    """A rig generated by Rigify from its human metarig, appended from ``cache_dir``/rigify.blend
    (generated there on the first call) into the current scene and moved to ``location``."""
    path = Path(cache_dir) / "rigify.blend"
    if not path.exists():
        _generate(path)
    with bpy.data.libraries.load(str(path), link=False) as (source, data):
        data.objects = [n for n in source.objects if n == "rig"]
    rig = data.objects[0]
    bpy.context.collection.objects.link(rig)
    rig.location = location
    return rig


def _generate(path):
    """Generate a Rigify rig in a scratch scene and save only it (plus its widgets) to ``path``."""
    scene = bpy.data.scenes.new("RigifyScratch")
    window_scene = bpy.context.window.scene if bpy.context.window else None
    if bpy.context.window:
        bpy.context.window.scene = scene
    try:
        meta = metarig()
        bpy.ops.pose.rigify_generate()
        rig = bpy.context.active_object
        bpy.data.libraries.write(str(path), {rig}, fake_user=False)
        bpy.data.objects.remove(meta)
        for obj in list(scene.objects):
            bpy.data.objects.remove(obj)
    finally:
        if window_scene is not None:
            bpy.context.window.scene = window_scene
        bpy.data.scenes.remove(scene)


def shot_result(path):
    """Write the example shot's ground truth (96 frames, 24 fps) as an OUT.npz-format result."""
    truth = np.load(SHOT)
    t = {k: torch.as_tensor(truth[k], dtype=torch.float64) for k in ("global_orient", "body_pose", "transl", "betas")}
    arrays = result_fixture.result_arrays(t["global_orient"], t["body_pose"], t["transl"], t["betas"], fps=24.0)
    np.savez(path, **arrays)
    return path


def import_smpl(path):
    return importer.import_result(bpy.context, str(path), frame_start=1, add_camera=False).armature


# -- the five characters of the skating check and picture ----------------------------------------------

def five_rigs(cache_dir, spacing=1.1):
    """The five characters side by side along +X from ``spacing``: {name: (rig, {SMPL joint:
    deforming bone})} (a generated Rigify rig, Rigify's metarig, the Mixamo-style rig, and the
    numbered and Japanese-named ones)."""
    from scorehmr_blender.retarget_presets import MIXAMO, RIGIFY_DEFORM, RIGIFY_METARIG

    numbered_rig, numbered_names = numbered()
    japanese_rig, japanese_names = japanese()
    rigs = {"generated Rigify": (generated_rigify(cache_dir), RIGIFY_DEFORM),
            "Rigify metarig": (metarig(), RIGIFY_METARIG),
            "Mixamo-style": (mixamo_like(), MIXAMO),
            "numbered": (numbered_rig, {s: numbered_names[t] for s, t in RIGIFY_DEFORM.items()}),
            "Japanese": (japanese_rig, {s: japanese_names[t.split(":", 1)[1]] for s, t in MIXAMO.items()})}
    for k, (rig, _) in enumerate(rigs.values(), 1):
        rig.location = (k * spacing, 0.0, 0.0)
    return rigs


def smpl_contacts(smpl, frames):
    """The SMPL rig's foot contacts (F, 4) (retarget.FOOT_JOINTS order) as the retarget reads them."""
    from scorehmr_blender import retarget

    _, feet = retarget.sample_pose(smpl, list(retarget.FOOT_JOINTS), frames)
    world = np.array(smpl.matrix_world)
    rest = [(world @ np.array(smpl.data.bones[j].matrix_local))[2, 3] for j in retarget.FOOT_JOINTS]
    standing = np.array(rest) - min(rest)
    return retarget.source_contacts(smpl.animation_data.action, frames, feet, standing)


def foot_skating(points, contacts):
    """Slide and drift of foot joints while in contact: points (F, J, 3) world, contacts (F, J);
    returns (mean and worst slide (m per frame) over consecutive contact frames, worst drift (m):
    the farthest a joint gets from where its contact began)."""
    steps, drift = [], 0.0
    for j in range(points.shape[1]):
        flags = contacts[:, j].astype(np.int8)
        edges = np.diff(np.r_[0, flags, 0])
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            run = points[start:stop, j]
            steps += list(np.linalg.norm(np.diff(run, axis=0), axis=-1))
            drift = max(drift, np.linalg.norm(run - run[0], axis=-1).max())
    return (float(np.mean(steps)) if steps else 0.0), (float(np.max(steps)) if steps else 0.0), drift
