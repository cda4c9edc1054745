# SPDX-License-Identifier: GPL-3.0-or-later
"""Retarget the SMPL armature's motion onto a character armature, baked to a new action.

Method: world-space rotation transfer with per-bone rest offsets.  For a mapped
pair (source s, target t), with G world rotations (object transform included):

    G_t(f) = Y^T G_s(f) G_s,rest^T A_t G_t,rest

A_t re-poses the target's rest onto the source's: ``Y`` turns the whole target
about world Z to face like the source (from the hips' left-right vectors), then
a minimal swing turns the target bone's rest direction onto the source bone's
(head to the head of the next mapped bone down the chain, so bone axes and rolls
do not matter and an A-pose meets SMPL's T-pose).  Leaf bones (head, hands, toes)
have no such direction; they keep their rest angle to their parent (the nearest
mapped ancestor's A).  ``Y^T`` turns the result back to the target's facing.
So in the clip every mapped chain bone points where its SMPL bone points.

The world rotations become pose rotations through the target's hierarchy, parents
first (unmapped bones stay at rest, so they follow their parents); then the rig is
evaluated and every mapped bone re-solved from its parent's evaluated matrix until
nothing changes, so controls that hang under constraint-driven bones (a generated
Rigify rig) reach their rotations too.  The bone mapped to SMPL's pelvis also
moves (through its own location, or that of the control that carries it:
retarget_presets.MOTION_ROOTS), with the legs' length ratio (target hip-knee-ankle
length over SMPL's) as scale: across, it travels like the pelvis since the first frame, turned by Y^T (or
stays in place); up and down, it puts the target's lowest mapped foot joint on the
target's floor (its rest height) wherever SMPL's lowest foot joint is on SMPL's
floor (its lowest over the clip), the height in between scaled.  Nothing depends
on where the SMPL rig is placed.

Maths: numpy functions at the top (rotations (..., 3, 3), positions (..., 3));
Blender glue below.  Keys go in with keyframes' bulk helpers (4.2 legacy and
4.4+ layered actions).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import bpy
import numpy as np
from mathutils import Matrix

from backend.contract.rotations import rotation_between  # smallest rotation (3, 3) taking a direction onto another

from . import convert, keyframes, retarget_presets

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    Plan = dict  # _plan()'s rest-pose data of one source / target pair
    Channels = list[tuple[str, str, np.ndarray]]  # (bone, data path, values (F, k))
    Curves = dict[tuple[str, int], bpy.types.FCurve]  # (data path, index) -> F-curve

# SMPL's leg chains (hip, knee, ankle) for the root-motion scale.
LEG_CHAINS = (("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"))
# SMPL's foot joints: their lowest point over the clip is the source's floor.
FOOT_JOINTS = ("left_ankle", "right_ankle", "left_foot", "right_foot")
# The bake re-keys against the evaluated rig until no rotation entry moves more than
# CONVERGED (and the root no more than CONVERGED x the longest bone), MAX_PASSES at most.
CONVERGED, MAX_PASSES = 1e-5, 16
# Bone pairs whose left-right vector gives a rig's facing: hips, else shoulders.
SIDE_PAIRS = (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_collar", "right_collar"))
# A source foot joint is in contact within CONTACT_HEIGHT (m) of its standing height, slower than
# CONTACT_SPEED (m/s); a pinned foot eases in and out over PIN_EASE seconds around its contacts.
CONTACT_HEIGHT, CONTACT_SPEED, PIN_EASE = 0.03, 0.12, 0.25
# SMPL's legs (hip, knee, ankle, ball) and their columns in FOOT_JOINTS / foot_contacts (ankle, ball).
LEGS = (("left_hip", "left_knee", "left_ankle", "left_foot", 0, 2),
        ("right_hip", "right_knee", "right_ankle", "right_foot", 1, 3))


# -- maths --------------------------------------------------------------------------------

def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def yaw_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation about world Z (3, 3) taking the horizontal part of ``a`` onto that of ``b``;
    identity if either is (nearly) vertical."""
    a, b = np.array([a[0], a[1]], dtype=np.float64), np.array([b[0], b[1]], dtype=np.float64)
    if np.linalg.norm(a) < 1e-9 or np.linalg.norm(b) < 1e-9:
        return np.eye(3)
    angle = math.atan2(b[1], b[0]) - math.atan2(a[1], a[0])
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def alignments(src_dirs: np.ndarray, tgt_dirs: np.ndarray, inherit: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """Rest alignments A (N, 3, 3) re-posing each target bone onto its source bone.

    src_dirs, tgt_dirs (N, 3) world rest directions, NaN rows for leaf bones;
    inherit (N,) index of the pair whose A a leaf takes (an earlier row, -1: none);
    facing (3, 3) Y."""
    A = np.empty((len(src_dirs), 3, 3))
    for i in range(len(src_dirs)):
        if not np.isnan(tgt_dirs[i]).any():
            A[i] = rotation_between(facing @ tgt_dirs[i], src_dirs[i]) @ facing
        else:
            A[i] = A[inherit[i]] if inherit[i] >= 0 else facing
    return A


def rest_offsets(src_rest: np.ndarray, tgt_rest: np.ndarray, align: np.ndarray) -> np.ndarray:
    """Per-pair offsets O = G_s,rest^T A G_t,rest (N, 3, 3) from world rest rotations (N, 3, 3)."""
    return np.swapaxes(src_rest, -1, -2) @ align @ tgt_rest


def target_world_rotations(src_world: np.ndarray, offsets: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """Target world rotations (F, N, 3, 3) = Y^T G_s(f) O from source ones (F, N, 3, 3)."""
    return facing.T @ src_world @ offsets


def pose_rotations(rest: np.ndarray, parents: np.ndarray, posed_mapped: np.ndarray,
                   mapped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose-bone rotations Q and posed rotations M (both (F, M, 3, 3), armature space).

    rest (M, 3, 3) rest rotations (bone.matrix_local); parents (M,) parent index or
    -1, parents before children; posed_mapped (F, M, 3, 3) wanted armature-space
    rotations, read where ``mapped`` (M,) is True.  Blender chains a bone as
    M_b = M_p P^T B Q_b (P, B rest rotations of parent and bone), so
    Q_b = B^T P M_p^T M_b; an unmapped bone keeps Q = I and follows its parent."""
    posed = np.empty_like(posed_mapped)
    Q = np.broadcast_to(np.eye(3), posed.shape).copy()
    for b, p in enumerate(parents):
        if mapped[b]:
            posed[:, b] = posed_mapped[:, b]
            parent = rest[p] @ np.swapaxes(posed[:, p], -1, -2) if p >= 0 else np.eye(3)  # P M_p^T
            Q[:, b] = rest[b].T @ parent @ posed[:, b]
        elif p >= 0:
            posed[:, b] = posed[:, p] @ rest[p].T @ rest[b]
        else:
            posed[:, b] = rest[b]
    return Q, posed


def root_locations(rest4: np.ndarray, parents: np.ndarray, posed: np.ndarray, bone: int,
                   heads: np.ndarray) -> np.ndarray:
    """Pose-bone locations (F, 3) putting bone ``bone``'s head at ``heads`` (F, 3), armature space.

    rest4 (M, 4, 4) bone.matrix_local; posed (F, M, 3, 3) from pose_rotations()
    (ancestors keep zero locations).  The bone's matrix is X T(location) with
    X = [M_p P^T B | posed parent head + M_p P^T (B_head - P_head)]."""
    chain = [bone]
    while parents[chain[-1]] >= 0:
        chain.append(parents[chain[-1]])
    chain.reverse()  # the root of the chain first
    rot, pos = rest4[:, :3, :3], rest4[:, :3, 3]
    head = np.broadcast_to(pos[chain[0]], heads.shape)
    X = np.broadcast_to(rot[chain[0]], heads.shape[:1] + (3, 3))
    for p, b in itertools.pairwise(chain):
        to_world = posed[:, p] @ rot[p].T
        head = head + np.einsum("fij,j->fi", to_world, pos[b] - pos[p])
        X = to_world @ rot[b]
    return np.einsum("fji,fj->fi", X, heads - head)


def root_heads(src_heads: np.ndarray, src_standing_z: float, tgt_rest_head: np.ndarray, ratio: float,
               facing: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Target root head positions (F, 3), world, from the source root's (F, 3).

    Height: the target's rest height plus ``ratio`` times the source root's height
    over its standing height ``src_standing_z`` (its floor plus its rest height over
    its feet), so a standing source puts the target's feet on the target's floor.
    Across: the target's rest position plus ``ratio`` times the source's travel since
    the first frame turned by Y^T, or none ``in_place``."""
    src_heads = np.asarray(src_heads, dtype=np.float64)
    travel = ratio * (src_heads - src_heads[0]) @ facing
    if in_place:
        travel[:, :2] = 0.0
    travel[:, 2] = ratio * (src_heads[:, 2] - src_standing_z)
    return np.asarray(tgt_rest_head) + travel


def chain_length(points: np.ndarray) -> float:
    """Length of the polyline through ``points`` (K, 3)."""
    return float(np.linalg.norm(np.diff(points, axis=0), axis=-1).sum())


def world_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation (..., 3, 3) of world matrices (..., 4, 4) with scale divided out."""
    R = np.asarray(matrix, dtype=np.float64)[..., :3, :3]
    return R / np.linalg.norm(R, axis=-2, keepdims=True)


# -- foot contacts -------------------------------------------------------------------------------

def derived_contacts(heights: np.ndarray, speeds: np.ndarray, standing: np.ndarray, fps: float) -> np.ndarray:
    """Contacts (F, J) of foot joints from their own motion: near the floor and slow.

    heights (F, J) world heights (m); speeds (F, J) m/s; standing (J,) each joint's
    height over the floor standing at rest.  The floor is where the feet stand most
    of the time (the median of each frame's lowest joint less its standing height:
    a dip of the feet does not move it); a joint is in contact within CONTACT_HEIGHT of
    its standing height over it, slower than CONTACT_SPEED; blips shorter than a
    tenth of a second are dropped."""
    over = heights - standing
    floor = np.median(over.min(axis=1))
    contact = (over - floor < CONTACT_HEIGHT) & (speeds < CONTACT_SPEED)
    shortest = max(2, round(0.1 * fps))
    return np.stack([_drop_short(c, shortest) for c in contact.T], axis=-1)


def _drop_short(flags: np.ndarray, shortest: int) -> np.ndarray:
    """``flags`` (F,) bool with runs of True shorter than ``shortest`` frames set False."""
    out = flags.copy()
    for start, stop in _runs(flags):
        if stop - start < shortest:
            out[start:stop] = False
    return out


def _runs(flags: np.ndarray) -> list:
    """[(start, stop)] of the runs of True in ``flags`` (F,), stop excluded."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def pin_offsets(ankle: np.ndarray, ball: np.ndarray, kind: np.ndarray, ease: int) -> np.ndarray:
    """Per-frame translations (F, 3) that pin one foot while it is in contact.

    ankle, ball (F, 3): the foot's joints as baked (world); kind (F,) 0 free, 1 the
    ankle in contact (it is pinned), 2 only the ball (the ball is pinned).  Over a
    contact the pinned point stays where it was at the contact's start; on a switch
    between ankle and ball the point pinned so far stays put that frame and the other
    is held from there, so the foot never moves with the bake's own motion (In Place,
    the body's travel).  The whole contact is moved across by its mean offset so the
    correction is centred; between contacts the offset eases
    (smoothstep over ``ease`` frames, or across the gap when shorter) to zero or to
    the next contact's."""
    points = np.stack([ankle, ankle, ball])  # by kind
    offsets = np.zeros_like(ankle)
    contacts = _runs(kind > 0)
    for start, stop in contacts:
        pinned = points[kind[start], start].copy()
        for f in range(start, stop):
            if f > start and kind[f] != kind[f - 1]:
                pinned = points[kind[f], f] + (pinned - points[kind[f - 1], f])
            offsets[f] = pinned - points[kind[f], f]
        offsets[start:stop, :2] -= offsets[start:stop, :2].mean(axis=0)
    ends = [(0, None)] + contacts + [(None, len(kind))]
    for (_, gap_start), (gap_stop, _) in itertools.pairwise(ends):
        gap_start = 0 if gap_start is None else gap_start
        gap_stop = len(kind) if gap_stop is None else gap_stop
        before = offsets[gap_start - 1] if gap_start > 0 else np.zeros(3)
        after = offsets[gap_stop] if gap_stop < len(kind) else np.zeros(3)
        offsets[gap_start:gap_stop] = _eased_gap(before, after, gap_stop - gap_start, ease)
    return offsets


def _eased_gap(before: np.ndarray, after: np.ndarray, length: int, ease: int) -> np.ndarray:
    """Offsets (length, 3) over a gap between contacts: from ``before`` to zero over
    ``ease`` frames and from zero to ``after`` over ``ease`` frames, or straight
    from one to the other when the gap is shorter than 2 x ease (smoothstep)."""
    t = np.arange(1, length + 1, dtype=np.float64)
    if length < 2 * ease:
        w = _smoothstep(t / (length + 1))
        return (1 - w)[:, None] * before + w[:, None] * after
    out = (1 - _smoothstep(np.clip(t / (ease + 1), 0, 1)))[:, None] * before
    return out + _smoothstep(np.clip((t - (length - ease)) / (ease + 1), 0, 1))[:, None] * after


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3 - 2 * t)


def two_bone_swings(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, target: np.ndarray,
                    bend: np.ndarray) -> tuple:
    """Rotations (F, 3, 3) of a thigh about the hip and then of the shin about its
    new knee that put the ankle on ``target``, the knee staying in the plane it bends
    in now (``bend`` (F, 3): a fallback direction for a straight leg).

    hip, knee, ankle, target (F, 3); a target out of reach is brought to 99.9 % of
    the leg's length (or its fold).  New world rotations: thigh R1 G, shin R2 G."""
    upper = np.linalg.norm(knee - hip, axis=-1, keepdims=True)
    lower = np.linalg.norm(ankle - knee, axis=-1, keepdims=True)
    to_target = target - hip
    reach = np.linalg.norm(to_target, axis=-1, keepdims=True)
    u = to_target / np.maximum(reach, 1e-12)
    d = np.clip(reach, np.abs(upper - lower) * 1.001 + 1e-9, (upper + lower) * 0.999)
    side = knee - hip
    side = side - (side * u).sum(-1, keepdims=True) * u
    fallback = bend - (bend * u).sum(-1, keepdims=True) * u
    straight = np.linalg.norm(side, axis=-1, keepdims=True) < 1e-6 * upper
    side = unit(np.where(straight, fallback, side))
    cos_hip = np.clip((upper ** 2 + d ** 2 - lower ** 2) / (2 * upper * d), -1.0, 1.0)
    new_knee = hip + upper * (cos_hip * u + np.sqrt(1 - cos_hip ** 2) * side)
    thigh = swings(knee - hip, new_knee - hip)
    shin = swings(ankle - knee, hip + d * u - new_knee)
    return thigh, shin


def reach_drop(hip: np.ndarray, target: np.ndarray, length: np.ndarray, up: np.ndarray) -> np.ndarray:
    """How far (F,) to lower the hips along ``up`` (3,) (unit) so a leg of ``length`` (F,)
    reaches ``target`` from ``hip`` (both (F, 3)): 0 where it already does."""
    D = hip - target
    along = D @ up
    disc = along ** 2 - (D * D).sum(-1) + (0.999 * length) ** 2
    drop = along - np.sqrt(np.maximum(disc, 0.0))
    return np.where(np.linalg.norm(D, axis=-1) > 0.999 * length, np.maximum(drop, 0.0), 0.0)


def swings(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations (F, 3, 3) taking directions ``a`` onto ``b`` (F, 3), row by row
    (rotation_between where they are (nearly) opposite)."""
    a, b = unit(a), unit(b)
    v, c = np.cross(a, b), (a * b).sum(-1)
    K = np.zeros(a.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    out = np.eye(3) + K + K @ K / np.maximum(1.0 + c, 1e-12)[..., None, None]
    for i in np.flatnonzero(c < -0.999999):
        out[i] = rotation_between(a[i], b[i])
    return out


# -- mapping ---------------------------------------------------------------------------------

def candidate_bones(obj: bpy.types.Object) -> list[tuple[str, str | None, tuple[float, ...], tuple[float, ...]]]:
    """[(name, parent, head, tail)] for auto mapping: the deform bones (all bones if none
    deform), each parented to its nearest candidate ancestor; rest heads and tails (3,)
    in world space (Z up)."""
    bones, world = obj.data.bones, obj.matrix_world
    keep = {b.name for b in bones if b.use_deform} or {b.name for b in bones}
    rows = []
    for bone in bones:
        if bone.name in keep:
            parent = bone.parent
            while parent is not None and parent.name not in keep:
                parent = parent.parent
            rows.append((bone.name, parent.name if parent else None,
                         tuple(world @ bone.head_local), tuple(world @ bone.tail_local)))
    return rows


def build_mapping(target: bpy.types.Object, preset: str | None = None) -> dict[str, str]:
    """(mapping, preset used or None) for ``target``: ``preset`` (a key of
    retarget_presets.PRESETS) resolved on its bones, or with None a detected preset,
    else the skeleton's shape (retarget_presets.auto_mapping())."""
    if preset is None:
        names = target.data.bones.keys()
        detected = retarget_presets.detect_preset(names)
        if detected is not None:  # over all bones: a generated Rigify rig's controls do not deform
            return retarget_presets.resolve(retarget_presets.PRESETS[detected], names), detected
        return retarget_presets.auto_mapping(candidate_bones(target))
    key = preset.lower()
    if key not in retarget_presets.PRESETS:
        raise ValueError(f"unknown preset '{preset}' (use one of {', '.join(retarget_presets.PRESETS)})")
    return retarget_presets.resolve(retarget_presets.PRESETS[key], target.data.bones.keys()), key


def check_mapping(source: bpy.types.Object, target: bpy.types.Object, mapping: dict[str, str]) -> dict[str, str]:
    """``mapping`` if every name exists on its armature; else ValueError."""
    retarget_presets.check(mapping)
    if not mapping:
        raise ValueError(f"no bones of '{target.name}' are mapped")
    missing = [s for s in mapping if s not in source.data.bones]
    if missing:
        raise ValueError(f"bones not found on '{source.name}': {', '.join(missing)}")
    missing = [t for t in mapping.values() if t not in target.data.bones]
    if missing:
        raise ValueError(f"the mapping is for another character: '{target.name}' has no bones "
                         f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} ({len(missing)} missing); "
                         "press Build Mapping")
    return mapping


def mapping_warnings(target: bpy.types.Object, mapping: dict[str, str]) -> list[str]:
    """Problems the bake cannot fix, as lines for the user."""
    warnings = []
    constrained = [t for t in mapping.values()
                   if any(c.enabled and c.influence > 0 for c in target.pose.bones[t].constraints)]
    if constrained:
        warnings.append(f"{len(constrained)} mapped bones have constraints that override their keys "
                        f"(e.g. '{constrained[0]}'); disable them or map the rig's controls")
    root = mapping.get(convert.JOINT_NAMES[0])
    if root is None:
        warnings.append("The pelvis is not mapped: no root motion")
    elif target.data.bones[root].use_connect:
        warnings.append(f"'{root}' is connected to its parent: it cannot follow the root motion")
    if not any(all(j in mapping for j in chain) for chain in LEG_CHAINS):
        warnings.append("No leg is mapped (hip, knee, ankle): root motion is not scaled")
    return warnings


# -- Blender glue --------------------------------------------------------------------------------

def retarget(source_armature_obj: bpy.types.Object, target_armature_obj: bpy.types.Object, preset: str | None = None,
             mapping: dict[str, str] | None = None, *, frames: Sequence[float] | None = None, name: str | None = None,
             in_place: bool = False) -> bpy.types.Action:
    """Bake ``source_armature_obj``'s action onto ``target_armature_obj`` as a new action.

    mapping {source bone: target bone} wins over ``preset``; with neither, the
    mapping is automatic (build_mapping()).  frames: scene frames to key (default:
    every whole frame of the source action's range).  name: the new action's
    (default "<source action>_retarget"; an existing action of that name is kept
    and the new one gets a .001 suffix).  in_place: keep the character over its
    rest position (only the height moves) instead of travelling like the source.
    The action is assigned to the target; its previous action, if any, gets a fake
    user.  Rigify IK/FK switches of mapped FK controls are set to FK and keyed.
    Returns the new Action."""
    source, target = source_armature_obj, target_armature_obj
    bpy.context.view_layer.update()  # world matrices of objects just linked or moved
    for obj in (source, target):
        if obj is None or obj.type != 'ARMATURE':
            raise ValueError("retarget needs two armature objects")
        if obj.mode == 'EDIT':
            raise ValueError(f"'{obj.name}' is in Edit Mode")
    if source == target:
        raise ValueError("the source and target armature are the same object")
    action, (start, end) = source_action(source)
    if mapping is None:
        mapping, _ = build_mapping(target, preset)
    mapping = check_mapping(source, target, dict(mapping))
    if frames is None:
        frames = np.arange(math.floor(start), math.ceil(end) + 1)
    frames = np.asarray(frames, dtype=np.float64)

    plan = _plan(source, target, mapping)
    feet = [j for j in FOOT_JOINTS if j in source.data.bones]
    src_world, src_heads = sample_pose(source, plan["sources"] + feet, frames)
    to_armature = world_rotation(np.array(target.matrix_world)).T
    wanted = to_armature @ target_world_rotations(src_world[:, :len(plan["sources"])], plan["offsets"], plan["facing"])
    rest4 = np.array([np.array(target.data.bones[n].matrix_local) for n in plan["order"]])
    Q, posed = pose_rotations(rest4[:, :3, :3], plan["parents"], _scatter(plan, wanted), plan["mapped"])
    Q = Q[:, plan["target_rows"]]

    heads_armature, locations, feet_low = None, None, None
    if plan["root"] is not None:
        src_root, tgt_root = plan["root"]
        floor = src_heads[:, len(plan["sources"]):, 2].min() if feet else plan["src_foot_rest"]
        heads = root_heads(src_heads[:, plan["sources"].index(src_root)], floor + plan["src_standing"],
                           plan["tgt_rest_heads"][tgt_root], plan["ratio"], plan["facing"], in_place)
        inverse = np.linalg.inv(np.array(target.matrix_world))
        heads_armature = heads @ inverse[:3, :3].T + inverse[:3, 3]
        if plan["motion_root"] == tgt_root:
            locations = root_locations(rest4, plan["parents"], posed, plan["order"].index(tgt_root), heads_armature)
        else:  # a separate root control: found against the evaluated rig
            locations = np.zeros((len(frames), 3))
        if feet and plan["tgt_feet"]:  # the lowest foot joint's height over the floor, scaled
            src_low = src_heads[:, len(plan["sources"]):, 2].min(axis=1)
            feet_low = plan["tgt_floor"] + plan["ratio"] * (src_low - src_low.min())

    switches = [(bone, prop, value) for bone, prop, value in retarget_presets.fk_switches(mapping)
                if bone in target.pose.bones and prop in target.pose.bones[bone]]
    new, curves = _new_action(name or f"{action.name}_retarget", target, frames,
                              _channels(target, plan, Q, locations) + _switch_channels(target, switches, frames))
    for pose_bone in target.pose.bones:  # unkeyed channels rest, so unmapped bones stay at rest
        pose_bone.matrix_basis = Matrix.Identity(4)
    for bone, prop, value in switches:
        target.pose.bones[bone][prop] = value
    previous = target.animation_data.action if target.animation_data else None
    if previous is not None and not previous.use_fake_user:
        previous.use_fake_user = True  # unassigned, it would be lost on save
    keyframes.assign(target, new)
    Q, locations, heads_armature = _follow_evaluation(target, frames, plan, wanted, heads_armature, feet_low, Q,
                                                      locations, curves)
    legs = _pinned_legs(plan, mapping)
    if legs and heads_armature is not None and feet:
        contacts = source_contacts(action, frames, src_heads[:, len(plan["sources"]):], plan["src_feet_standing"])
        _pin_feet(target, frames, plan, legs, contacts, wanted, heads_armature, Q, locations, curves)
    return new


def source_action(source: bpy.types.Object) -> tuple[bpy.types.Action, tuple[float, float]]:
    """(action, (first, last) scene frames) of the motion on ``source``: its active action, else
    the one action its NLA strips play (pushed down) over the strips' frames; ValueError if none."""
    anim = source.animation_data
    if anim is not None and anim.action is not None:
        return anim.action, tuple(anim.action.frame_range)
    strips = [strip for track in (anim.nla_tracks if anim else ()) for strip in track.strips if strip.action]
    actions = {strip.action for strip in strips}
    if len(actions) != 1:
        how = f"{len(actions)} actions in its NLA tracks: make one active" if actions else "no action to retarget"
        raise ValueError(f"'{source.name}' has {how}")
    return strips[0].action, (min(s.frame_start for s in strips), max(s.frame_end for s in strips))


def _scatter(plan: Plan, wanted: np.ndarray) -> np.ndarray:
    """Wanted rotations (F, N, 3, 3) of the mapped bones laid out over plan["order"] (F, M, 3, 3)."""
    out = np.broadcast_to(np.eye(3), (len(wanted), len(plan["order"]), 3, 3)).copy()
    out[:, plan["target_rows"]] = wanted
    return out


def _channels(target: bpy.types.Object, plan: Plan, Q: np.ndarray, locations: np.ndarray) -> Channels:
    """[(bone, data path, values (F, k))]: every mapped bone's rotation and the root's location."""
    channels = [(t, *_rotation_channel(target.pose.bones[t], Q[:, k])) for k, t in enumerate(plan["targets"])]
    if locations is not None:
        root = plan["motion_root"]
        channels.append((root, target.pose.bones[root].path_from_id("location"), locations))
    return channels


def _switch_channels(target: bpy.types.Object, switches: list[tuple], frames: np.ndarray) -> Channels:
    """Channels holding each switch (bone, property, value) at its value over the clip."""
    return [(bone, target.pose.bones[bone].path_from_id(f'["{prop}"]'), np.full((len(frames), 1), value))
            for bone, prop, value in switches]


def _follow_evaluation(target: bpy.types.Object, frames: np.ndarray, plan: Plan, wanted: np.ndarray, heads: np.ndarray,
                       feet_low: np.ndarray | None, Q: np.ndarray, locations: np.ndarray,
                       curves: Curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-key until the evaluated rig matches: each mapped bone's rotation is solved
    from its parent's evaluated matrix, so bones a parent follows through constraints
    (a Rigify control under its MCH bones) still reach the wanted rotation.  A rig
    without such constraints is already right (one check pass); each further pass
    settles one more level of the chain.

    wanted (F, N, 3, 3) armature-space rotations of plan["targets"]; heads (F, 3) the
    pelvis bone's wanted heads, armature space, or None (no root motion); feet_low
    (F,) the wanted world height of the lowest mapped foot joint, or None: the motion
    root (plan["motion_root"]) moves until the pelvis bone's head and the feet are there.
    Returns the keyed Q, locations and the pelvis bone's heads (those the feet set)."""
    bones, names = target.data.bones, target.pose.bones.keys()
    world = np.array(target.matrix_world)
    up = np.linalg.inv(world)[:3, :3] @ np.array([0.0, 0.0, 1.0])  # world +Z in armature space
    foot_rows = [names.index(t) for t in plan["tgt_feet"]]
    scale = max(b.length for b in bones)
    for _ in range(MAX_PASSES):
        evaluated = evaluated_matrices(target, frames)[0]
        # Blender: M_b = M_p P^-1 B Q_b, so Q_b = B^T P M_p^T M_b (rotations).
        new_Q = np.swapaxes(world_rotation(_unposed(evaluated, bones, names, plan["targets"])), -1, -2) @ wanted
        change = np.abs(new_Q - Q).max()
        new_locations = locations
        if heads is not None:
            if feet_low is not None:
                low = (evaluated[:, foot_rows][..., :3, 3] @ world[2, :3] + world[2, 3]).min(axis=1)  # world Z
                heads = heads + (feet_low - low)[:, None] * up
            # The motion root's location moves the pelvis bone rigidly (the root keeps its rotation).
            X = _unposed(evaluated, bones, names, [plan["motion_root"]])[:, 0]
            miss = heads - evaluated[:, names.index(plan["root"][1]), :3, 3]
            new_locations = locations + np.einsum("fij,fj->fi", np.linalg.inv(X[:, :3, :3]), miss)
            change = max(change, np.abs(new_locations - locations).max() / scale)
        if change < CONVERGED:
            break
        Q, locations = new_Q, new_locations
        for _bone, path, values in _channels(target, plan, Q, locations):
            for axis in range(values.shape[1]):
                _set_keys(curves[path, axis], frames, values[:, axis])
    return Q, locations, heads


def _pinned_legs(plan: Plan, mapping: dict[str, str]) -> list[tuple]:
    """[(thigh, shin, foot, ball or None, ankle column, ball column)] of the character's mapped
    legs (target bone names; columns of FOOT_JOINTS), their thigh and shin keyed by the bake."""
    legs = []
    for hip, knee, ankle, ball, ankle_column, ball_column in LEGS:
        if all(j in mapping for j in (hip, knee, ankle)) and mapping[hip] in plan["targets"]:
            legs.append((mapping[hip], mapping[knee], mapping[ankle], mapping.get(ball), ankle_column, ball_column))
    return legs


def source_contacts(action: bpy.types.Action, frames: np.ndarray, feet: np.ndarray, standing: float) -> np.ndarray:
    """Foot contacts (F, 4) of the source at ``frames`` (FOOT_JOINTS order): those the
    result marked (stored on the action by the importer) where the joint is also slow,
    else derived from the joints' own motion.  feet (F, 4, 3) the source's foot joints
    (world); standing (4,) their heights over its floor at rest."""
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    seconds = np.gradient(frames) / fps if len(frames) > 1 else np.ones(len(frames))
    speeds = np.linalg.norm(np.gradient(feet, axis=0), axis=-1) / seconds[:, None] if len(frames) > 1 \
        else np.zeros(feet.shape[:2])
    marked = keyframes.stored_contacts(action, frames)
    if marked is not None:
        return marked & (speeds < CONTACT_SPEED)
    return derived_contacts(feet[..., 2], speeds, standing, fps)


def _pin_feet(target: bpy.types.Object, frames: np.ndarray, plan: Plan, legs: list[tuple], contacts: np.ndarray,
              wanted: np.ndarray, heads: np.ndarray, Q: np.ndarray, locations: np.ndarray, curves: Curves) -> None:
    """Keep the character's feet where they are while the source's are in contact (contacts
    (F, 4)), eased in and out: each pinned ankle (or ball, with the heel up) gets a target,
    the hips come down where a leg cannot reach it, and the thigh and shin turn (two-bone
    solve in the leg's bend plane) to put the ankle there; the foot keeps its rotation.
    Two rounds against the evaluated rig (a Rigify control follows through its MCH bones)."""
    names = target.pose.bones.keys()
    world = np.array(target.matrix_world)
    inverse = np.linalg.inv(world)
    up = unit(inverse[:3, :3] @ np.array([0.0, 0.0, 1.0]))  # world +Z in armature space
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    ease = max(2, round(PIN_EASE * fps))
    evaluated = evaluated_matrices(target, frames)[0]
    targets = []
    for thigh, shin, foot, ball, ankle_column, ball_column in legs:
        ankle = evaluated[:, names.index(foot), :3, 3] @ world[:3, :3].T + world[:3, 3]
        tip = evaluated[:, names.index(ball), :3, 3] @ world[:3, :3].T + world[:3, 3] if ball else ankle
        kind = np.where(contacts[:, ankle_column], 1, np.where(contacts[:, ball_column] & (ball is not None), 2, 0))
        pinned = ankle + pin_offsets(ankle, tip, kind, ease)
        targets.append(pinned @ inverse[:3, :3].T + inverse[:3, 3])
    for _ in range(2):
        drop = np.zeros(len(frames))
        for (thigh, shin, foot, *_), aim in zip(legs, targets):
            hip, knee, ankle = (evaluated[:, names.index(n), :3, 3] for n in (thigh, shin, foot))
            length = np.linalg.norm(knee - hip, axis=-1) + np.linalg.norm(ankle - knee, axis=-1)
            drop = np.maximum(drop, reach_drop(hip, aim, length, up))
        heads = heads - drop[:, None] * up
        for (thigh, shin, foot, *_), aim in zip(legs, targets):
            hip, knee, ankle = (evaluated[:, names.index(n), :3, 3] - drop[:, None] * up for n in (thigh, shin, foot))
            upper, lower = plan["targets"].index(thigh), plan["targets"].index(shin)
            turn_thigh, turn_shin = two_bone_swings(hip, knee, ankle, aim, wanted[:, upper, :, 2])
            wanted[:, upper] = turn_thigh @ wanted[:, upper]
            wanted[:, lower] = turn_shin @ wanted[:, lower]
        Q, locations, heads = _follow_evaluation(target, frames, plan, wanted, heads, None, Q, locations, curves)
        evaluated = evaluated_matrices(target, frames)[0]


def _unposed(evaluated: np.ndarray, bones: bpy.types.ArmatureBones, names: list[str], which: list[str]) -> np.ndarray:
    """Where bones ``which`` sit before their own pose, X = M_p P^-1 B (F, K, 4, 4),
    from the evaluated pose matrices (F, B, 4, 4) of all bones (``names`` order)."""
    out = np.empty((len(evaluated), len(which), 4, 4))
    for k, name in enumerate(which):
        bone = bones[name]
        rest = np.array(bone.matrix_local)
        if bone.parent is None:
            out[:, k] = rest
        else:
            out[:, k] = evaluated[:, names.index(bone.parent.name)] @ np.linalg.inv(
                np.array(bone.parent.matrix_local)) @ rest
    return out


def _set_keys(fcurve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray) -> None:
    co = np.empty(2 * len(frames), dtype=np.float32)
    co[0::2], co[1::2] = frames, values
    fcurve.keyframe_points.foreach_set("co", co)
    fcurve.update()


def _plan(source: bpy.types.Object, target: bpy.types.Object, mapping: dict[str, str]) -> Plan:
    """Everything the bake needs from the rest poses (world space)."""
    src_bones, tgt_bones = source.data.bones, target.data.bones
    order = _topological([tgt_bones[t] for t in mapping.values()])  # mapped bones and their ancestors
    position = {n: i for i, n in enumerate(order)}
    parents = np.array([position[tgt_bones[n].parent.name] if tgt_bones[n].parent else -1 for n in order])
    pairs = sorted(mapping.items(), key=lambda st: position[st[1]])  # target parents first
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]

    src_rest, src_heads = _world_rest(source, src_bones.keys())
    tgt_rest, tgt_heads = _world_rest(target, tgt_bones.keys())

    facing = np.eye(3)
    for left, right in SIDE_PAIRS:
        if left in mapping and right in mapping:
            facing = yaw_between(tgt_heads[mapping[left]] - tgt_heads[mapping[right]],
                                 src_heads[left] - src_heads[right])
            break

    src_dirs, tgt_dirs = np.full((len(pairs), 3), np.nan), np.full((len(pairs), 3), np.nan)
    inherit = np.full(len(pairs), -1)
    for k, (s, t) in enumerate(pairs):
        child = _direction_child(s, t, mapping, src_bones, tgt_bones)
        if child is not None:
            src_dirs[k] = src_heads[child] - src_heads[s]
            tgt_dirs[k] = tgt_heads[mapping[child]] - tgt_heads[t]
        ancestor = tgt_bones[t].parent
        while ancestor is not None and ancestor.name not in targets:
            ancestor = ancestor.parent
        inherit[k] = targets.index(ancestor.name) if ancestor is not None else -1
    align = alignments(src_dirs, tgt_dirs, inherit, facing)
    offsets = rest_offsets(np.array([src_rest[s] for s in sources]), np.array([tgt_rest[t] for t in targets]), align)

    roots = [(s, t) for s, t in pairs if src_bones[s].parent is None]
    lengths = [(chain_length([src_heads[j] for j in chain]), chain_length([tgt_heads[mapping[j]] for j in chain]))
               for chain in LEG_CHAINS if all(j in mapping for j in chain)]
    ratio = sum(t for _, t in lengths) / sum(s for s, _ in lengths) if lengths else 1.0
    mapped = np.zeros(len(order), dtype=bool)
    mapped[[position[t] for t in targets]] = True
    tgt_feet = [mapping[j] for j in FOOT_JOINTS if j in mapping]
    feet = [src_heads[j][2] for j in FOOT_JOINTS if j in src_heads]
    foot_rest = min(feet) if feet else min(h[2] for h in src_heads.values())
    root_height = src_heads[roots[0][0]][2] - foot_rest if roots else 0.0
    return {"order": order, "parents": parents, "sources": sources, "targets": targets, "offsets": offsets,
            "target_rows": [position[t] for t in targets], "mapped": mapped,
            "facing": facing, "root": roots[0] if roots else None, "ratio": ratio,
            "motion_root": retarget_presets.motion_root(roots[0][1], tgt_bones.keys()) if roots else None,
            "src_foot_rest": foot_rest, "src_standing": root_height, "tgt_rest_heads": tgt_heads,
            "tgt_feet": tgt_feet, "tgt_floor": min((tgt_heads[t][2] for t in tgt_feet), default=0.0),
            "src_feet_standing": np.array([src_heads[j][2] - foot_rest for j in FOOT_JOINTS if j in src_heads])}


def deformed_meshes(armature_obj: bpy.types.Object, objects: Iterable[bpy.types.Object]) -> list[bpy.types.Object]:
    """The mesh objects among ``objects`` that ``armature_obj`` deforms (an Armature modifier on
    it) or that are parented to it."""
    return [obj for obj in objects if obj.type == 'MESH' and (
        obj.parent == armature_obj
        or any(m.type == 'ARMATURE' and m.object == armature_obj for m in obj.modifiers))]


def leg_ratio(source: bpy.types.Object, target: bpy.types.Object, mapping: dict[str, str]) -> float:
    """Target over source hip-knee-ankle length (world units), 1.0 without a mapped leg."""
    return _plan(source, target, mapping)["ratio"]


def _direction_child(s: str, t: str, mapping: dict[str, str], src_bones: bpy.types.ArmatureBones,
                     tgt_bones: bpy.types.ArmatureBones) -> str | None:
    """The mapped source bone that gives pair (s, t) its rest direction, or None (a leaf).

    It is the source child at s's tail (SMPL bones point at the mid-line child),
    or its nearest mapped descendant, whose target is a descendant of t."""
    bone = src_bones[s]
    if not bone.children:
        return None
    tail_child = min(bone.children, key=lambda c: (c.head_local - bone.tail_local).length)
    todo = [tail_child]
    while todo:  # breadth first: nearest mapped descendant
        child = todo.pop(0)
        if child.name in mapping and _is_descendant(tgt_bones[mapping[child.name]], t):
            return child.name
        todo.extend(child.children)
    return None


def _is_descendant(bone: bpy.types.Bone, name: str) -> bool:
    bone = bone.parent
    while bone is not None:
        if bone.name == name:
            return True
        bone = bone.parent
    return False


def _topological(bones: Iterable[bpy.types.Bone]) -> list[str]:
    """Names of ``bones`` and all their ancestors, parents before children."""
    order, seen = [], set()
    for bone in bones:
        chain = []
        while bone is not None and bone.name not in seen:
            chain.append(bone)
            bone = bone.parent
        for b in reversed(chain):
            order.append(b.name)
            seen.add(b.name)
    return order


def _world_rest(obj: bpy.types.Object, names: Iterable[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """{name: world rest rotation (3, 3)}, {name: world rest head (3,)}."""
    world = np.array(obj.matrix_world)
    rest = {n: world @ np.array(obj.data.bones[n].matrix_local) for n in names}
    return ({n: world_rotation(m) for n, m in rest.items()}, {n: m[:3, 3] for n, m in rest.items()})


def evaluated_matrices(obj: bpy.types.Object, frames: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Armature-space pose matrices (F, B, 4, 4) of all of ``obj``'s bones (pose.bones
    order) and the object's world matrices (F, 4, 4) at scene ``frames`` (fractional
    allowed), evaluated with constraints and drivers; the scene's frame is restored.

    A rig whose evaluation reads no other object (self_contained()) is evaluated in a
    scratch scene of its own: a frame change there evaluates that rig alone, not every
    animated object of the user's scene (a retarget evaluates the clip a dozen times)."""
    scene = bpy.context.scene
    if obj.name not in scene.objects:
        raise ValueError(f"'{obj.name}' is not in the scene '{scene.name}'")
    count = len(obj.pose.bones)
    buffer = np.empty(count * 16, dtype=np.float32)
    out, world = np.empty((len(frames), count, 4, 4)), np.empty((len(frames), 4, 4))

    def read(i: int, depsgraph) -> None:
        evaluated = obj.evaluated_get(depsgraph)
        evaluated.pose.bones.foreach_get("matrix", buffer)
        out[i] = np.swapaxes(buffer.reshape(-1, 4, 4), -1, -2)  # foreach_get gives columns first
        world[i] = np.array(evaluated.matrix_world)

    if self_contained(obj):
        scratch = bpy.data.scenes.new(".refine_motion_evaluation")
        try:
            scratch.collection.objects.link(obj)
            with bpy.context.temp_override(scene=scratch, view_layer=scratch.view_layers[0]):
                depsgraph = bpy.context.evaluated_depsgraph_get()
            for i, frame in enumerate(frames):
                scratch.frame_current = math.floor(frame)
                scratch.frame_subframe = float(frame - math.floor(frame))
                depsgraph.update()
                read(i, depsgraph)
        finally:
            bpy.data.scenes.remove(scratch)
        return out, world
    kept = scene.frame_current, scene.frame_subframe
    try:
        for i, frame in enumerate(frames):
            whole = math.floor(frame)
            scene.frame_set(whole, subframe=float(frame - whole))
            read(i, bpy.context.evaluated_depsgraph_get())
    finally:
        scene.frame_set(kept[0], subframe=kept[1])
    return out, world


def self_contained(obj: bpy.types.Object) -> bool:
    """Whether evaluating ``obj`` reads no other object: no parent, no object constraint, bone
    constraints that target only ``obj`` itself and drivers (on the object or its armature) whose
    variables read only ``obj`` or its armature."""
    if obj.parent is not None or len(obj.constraints):
        return False
    own = {obj, obj.data}
    for bone in obj.pose.bones:
        for constraint in bone.constraints:
            targets = [getattr(constraint, attr, None) for attr in ("target", "pole_target")]
            targets += [t.target for t in getattr(constraint, "targets", ())]
            if any(t is not None and t not in own for t in targets):
                return False
    for animated in (obj, obj.data):
        drivers = animated.animation_data.drivers if animated.animation_data else ()
        for curve in drivers:
            for variable in curve.driver.variables:
                if any(t.id is not None and t.id not in own for t in variable.targets):
                    return False
    return True


def sample_pose(obj: bpy.types.Object, names: Sequence[str], frames: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (F, N, 3, 3) and heads (F, N, 3) of bones ``names`` at scene ``frames``."""
    index = [obj.pose.bones.find(n) for n in names]
    pose, object_world = evaluated_matrices(obj, frames)
    world = object_world[:, None] @ pose[:, index]
    return world_rotation(world), world[..., :3, 3]


def _rotation_channel(pose_bone: bpy.types.PoseBone, Q: np.ndarray) -> tuple[str, np.ndarray]:
    """(data path, values (F, k)) keying rotations Q (F, 3, 3) in the bone's rotation mode."""
    q = convert.continuous_quaternions(convert.matrix_to_quaternion(Q))
    mode = pose_bone.rotation_mode
    if mode == 'QUATERNION':
        return pose_bone.path_from_id("rotation_quaternion"), q
    if mode == 'AXIS_ANGLE':
        sin_half = np.linalg.norm(q[:, 1:], axis=-1, keepdims=True)
        axis = np.where(sin_half > 1e-9, q[:, 1:] / np.maximum(sin_half, 1e-12), [0.0, 1.0, 0.0])
        angle = 2.0 * np.arctan2(sin_half, q[:, :1])
        return pose_bone.path_from_id("rotation_axis_angle"), np.concatenate([angle, axis], -1)
    eulers, previous = [], None
    for m in Q:  # Euler angles kept continuous with the previous frame's
        e = Matrix(m.tolist()).to_euler(mode) if previous is None else Matrix(m.tolist()).to_euler(mode, previous)
        eulers.append(tuple(e))
        previous = e
    return pose_bone.path_from_id("rotation_euler"), np.array(eulers)


def _new_action(name: str, obj: bpy.types.Object, frames: np.ndarray,
                channels: Channels) -> tuple[bpy.types.Action, Curves]:
    """A new action for ``obj`` keying channels [(bone, data path, values (F, k))] at
    ``frames``; returns it and its F-curves {(data path, index): FCurve}."""
    action = bpy.data.actions.new(name)
    new_fcurve = keyframes.fcurve_factory(action, obj)
    curves = {}
    for bone, path, values in channels:
        for axis in range(values.shape[1]):
            curves[path, axis] = new_fcurve(path, axis, bone)
            keyframes.fill_fcurve(curves[path, axis], frames, values[:, axis])
    return action, curves
