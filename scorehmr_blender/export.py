# SPDX-License-Identifier: GPL-3.0-or-later
"""Export an animated armature as BVH (written here) or FBX (Blender's exporter).

Both write the armature where it is in the world (its object transform
included), so a file opens with the character standing where it stands in
Blender: on the floor, at the origin after a default import.

BVH: Blender's own BVH exporter writes armature space (Z up, object transform
left out), which every other program, and Blender's importer at its defaults,
reads lying on its back.  :func:`export_bvh` writes Y up by default (X right,
the character's front +Z: Blender's Z-up -Y-front world turned by AXES['Y']),
or Z up; positions in metres times global_scale.  Each joint has its rest
orientation along the file's axes (BVH's convention) and rotates by its pose's
change from rest relative to its parent's.

FBX: Blender's exporter, unsimplified (bake_anim_simplify_factor=0: its default
of 1 drops keys, losing up to 11.5 mm on the example shot).  Frame f is written
at time (f - 1) / fps (the keys are moved a frame earlier while it bakes), so
Blender's FBX importer, which adds its Animation Offset (1 frame by default),
gives the frames back as they were, as a file of Blender's own exporter does.  The
exporter works on the context (the selected objects) and bakes the scene's
frame range, so it runs under ``context.temp_override`` with the armature
active and selected, over its action's frame range; the scene's frame range,
frame and selection are restored after.

BVH holds the deform skeleton when only some bones deform (a Rigify rig's DEF- bones
under their nearest deform ancestors: its controls and mechanism bones stay out),
its root moving as the rig does.

Neither writes over an existing file unless asked to.
"""

import math
from contextlib import contextmanager
from pathlib import Path

import addon_utils
import bpy
import numpy as np
from mathutils import Matrix

from . import keyframes

# Frames earlier than the scene's an FBX is written at: Blender's importer adds one by default.
FBX_TIME_OFFSET = 1
# World (Blender: Z up, -Y front) -> BVH file axes, per up axis.
AXES = {'Y': Matrix(((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))), 'Z': Matrix.Identity(3)}


def action_frame_range(armature_obj):
    """(first, last) whole scene frames covering the armature's action."""
    action = armature_obj.animation_data.action if armature_obj.animation_data else None
    if action is None:
        raise ValueError(f"'{armature_obj.name}' has no action to export")
    start, end = action.frame_range
    return math.floor(start), math.ceil(end)


def export_bvh(armature_obj, path, *, overwrite=False, frame_start=None, frame_end=None, global_scale=1.0,
               rotate_mode='NATIVE', root_transform_only=True, up_axis='Y'):
    """Write ``armature_obj``'s animation to the BVH file ``path``; returns the Path.

    Frames default to the action's range.  up_axis 'Y' (default; what Blender's
    BVH importer and other programs expect) or 'Z'.  rotate_mode: the Euler order
    of the rotation channels ('XYZ' ...; 'NATIVE': the bone's own Euler order, XYZ
    for quaternion bones).  Only the root has position channels, its rest OFFSET
    zero and its positions absolute (as in CMU's files: programs that add the
    offset and programs that replace it read the same); root_transform_only=False
    gives bones not connected to their parent position channels too (their offset
    replaced, as Blender's importer reads it).  Raises FileExistsError for an
    existing file unless ``overwrite``, ValueError without an armature or action
    or for an unknown up_axis."""
    if up_axis not in AXES:
        raise ValueError(f"up_axis must be 'Y' or 'Z', not {up_axis!r}")
    path = _target_path(path, overwrite)
    first, last = _frames(armature_obj, frame_start, frame_end)
    scene = bpy.context.scene
    kept_frame = scene.frame_current, scene.frame_subframe
    try:
        text = _bvh_text(armature_obj, first, last, scene.render.fps / scene.render.fps_base, AXES[up_axis],
                         global_scale, rotate_mode, root_transform_only)
    finally:
        scene.frame_set(kept_frame[0], subframe=kept_frame[1])
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def skeleton(armature_obj):
    """{bone name: parent name or None} of the bones a BVH holds: the deform bones, each under its
    nearest deform ancestor, when only some bones deform (a Rigify rig's DEF- bones, not its
    controls and mechanism); else every bone."""
    bones = armature_obj.data.bones
    keep = {b.name for b in bones if b.use_deform}
    if not keep or len(keep) == len(bones):
        keep = set(bones.keys())
    parents = {}
    for bone in bones:
        if bone.name in keep:
            parent = bone.parent
            while parent is not None and parent.name not in keep:
                parent = parent.parent
            parents[bone.name] = parent.name if parent else None
    roots = [n for n, p in parents.items() if p is None]
    if len(roots) > 1 and len(keep) < len(bones):  # deform bones under mechanism only (Rigify's face)
        def size(root):
            return sum(1 for n in parents if _root_of(n, parents) == root)
        main = min(roots, key=lambda n: (_depth(bones[n]), -size(n)))  # nearest the armature's root
        tree = [n for n in parents if _root_of(n, parents) == main]
        for root in roots:
            if root != main:  # under the main skeleton's bone nearest its head
                head = bones[root].head_local
                parents[root] = min(tree, key=lambda n: (bones[n].head_local - head).length)
    return parents


def _depth(bone):
    return 0 if bone.parent is None else 1 + _depth(bone.parent)


def _under(bone, name):
    """Whether bone ``name`` is among ``bone``'s ancestors."""
    while bone.parent is not None:
        bone = bone.parent
        if bone.name == name:
            return True
    return False


def _root_of(name, parents):
    while parents[name] is not None:
        name = parents[name]
    return name


def _bvh_text(obj, first, last, fps, axes, scale, rotate_mode, root_transform_only):
    """The BVH file's text for frames first..last of ``obj`` (see the module docstring)."""
    parents = skeleton(obj)
    children = {name: [c for c, p in parents.items() if p == name] for name in parents}
    roots = [obj.data.bones[n] for n, p in parents.items() if p is None]
    bones = [obj.data.bones[n] for root in roots for n in _depth_first(root.name, children)]
    order = {b.name: _euler_order(obj.pose.bones[b.name], rotate_mode) for b in bones}
    # Position channels: the root, bones hung under a bone they do not follow (skeleton()), and with
    # root_transform_only False every bone not connected to its parent.
    moves = {b.name: parents[b.name] is None or not _under(b, parents[b.name]) or not (
        (b.use_connect and b.parent.name == parents[b.name]) or root_transform_only) for b in bones}

    world = obj.matrix_world.copy()
    rest_heads = {b.name: world @ b.head_local for b in bones}
    lines = ["HIERARCHY"]
    joint = (children, parents, rest_heads, world, axes, scale, order, moves)
    if len(roots) == 1:
        _bvh_joint(lines, roots[0], *joint, 0)
    else:  # BVH has one root: a still one at the origin holds the armature's root bones (as Blender's exporter)
        lines += [f"ROOT {_unused_name(rest_heads)}", "{", "\tOFFSET 0.000000 0.000000 0.000000", "\tCHANNELS 0"]
        for root in roots:
            _bvh_joint(lines, root, *joint, 1)
        lines.append("}")
    lines += ["MOTION", f"Frames: {last - first + 1}", f"Frame Time: {1.0 / fps:.6f}"]

    rest = {b.name: _rotation(world @ b.matrix_local) for b in bones}
    previous = {}
    scene = bpy.context.scene
    for frame in range(first, last + 1):
        scene.frame_set(frame)
        world = obj.matrix_world
        posed = {b.name: world @ obj.pose.bones[b.name].matrix for b in bones}
        change = {name: _rotation(m) @ rest[name].transposed() for name, m in posed.items()}  # world axes
        values = []
        for bone in bones:
            name, parent = bone.name, parents[bone.name]
            local = change[name] if parent is None else change[parent].transposed() @ change[name]
            if moves[name]:
                offset = posed[name].translation if parent is None else (
                    change[parent].transposed() @ (posed[name].translation - posed[parent].translation))
                values += list(axes @ offset * scale)
            # Euler order reversed: Blender's 'ZYX' is R = X Y Z, what channels "X Y Z" mean in BVH.
            compatible = (previous[name],) if name in previous else ()  # no jumps between frames
            euler = previous[name] = (axes @ local @ axes.transposed()).to_euler(order[name][::-1], *compatible)
            values += [math.degrees(euler["XYZ".index(axis)]) for axis in order[name]]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n"


def _bvh_joint(lines, bone, children, parents, rest_heads, world, axes, scale, order, moves, depth):
    """Append the HIERARCHY block of ``bone`` and its children (skeleton() names; rest offsets in
    file axes)."""
    indent = "\t" * depth
    head = rest_heads[bone.name]
    offset = head * 0.0 if parents[bone.name] is None else head - rest_heads[parents[bone.name]]
    lines.append(f"{indent}{'JOINT' if depth else 'ROOT'} {bone.name}")
    lines.append(f"{indent}{{")
    lines.append(f"{indent}\tOFFSET {_vector(axes @ offset * scale)}")
    rotations = " ".join(f"{axis}rotation" for axis in order[bone.name])
    positions = "Xposition Yposition Zposition " if moves[bone.name] else ""
    lines.append(f"{indent}\tCHANNELS {6 if moves[bone.name] else 3} {positions}{rotations}")
    for child in children[bone.name]:
        _bvh_joint(lines, bone.id_data.bones[child], children, parents, rest_heads, world, axes, scale, order,
                   moves, depth + 1)
    if not children[bone.name]:
        tail = world @ bone.tail_local - head
        lines += [f"{indent}\tEnd Site", f"{indent}\t{{", f"{indent}\t\tOFFSET {_vector(axes @ tail * scale)}",
                  f"{indent}\t}}"]
    lines.append(f"{indent}}}")


def _unused_name(names):
    return next(name for name in (f"__{i}" for i in range(len(names) + 1)) if name not in names)


def _depth_first(name, children):
    """``name`` and its descendants ({name: [child names]}) in the order BVH writes them."""
    out = [name]
    for child in children[name]:
        out += _depth_first(child, children)
    return out


def _euler_order(pose_bone, rotate_mode):
    if rotate_mode != 'NATIVE':
        return rotate_mode
    return pose_bone.rotation_mode if pose_bone.rotation_mode in _EULER_ORDERS else 'XYZ'


_EULER_ORDERS = ('XYZ', 'XZY', 'YXZ', 'YZX', 'ZXY', 'ZYX')


def _rotation(matrix):
    """The rotation (3x3) of a 4x4 transform, its scale left out."""
    return matrix.to_3x3().normalized()


def _vector(v):
    return " ".join(f"{x:.6f}" for x in v)


def export_fbx(armature_obj, path, *, overwrite=False, frame_start=None, frame_end=None, include_meshes=True,
               add_leaf_bones=False, **fbx_options):
    """Write ``armature_obj`` and its animation to the FBX file ``path``; returns the Path.

    The armature's child meshes (its skinned body) go along with include_meshes.
    Only the assigned action is baked, over the action's frame range (or
    frame_start/frame_end).  fbx_options pass on to bpy.ops.export_scene.fbx.
    Raises FileExistsError for an existing file unless ``overwrite``, ValueError
    without an armature or action."""
    path = _target_path(path, overwrite)
    first, last = _frames(armature_obj, frame_start, frame_end)
    _ensure_addon("io_scene_fbx", "export_scene", "fbx")
    meshes = [c for c in armature_obj.children if c.type == 'MESH'] if include_meshes else []
    options = {"use_selection": True, "object_types": {'ARMATURE', 'MESH'} if meshes else {'ARMATURE'},
               "bake_anim": True, "bake_anim_use_all_actions": False, "bake_anim_use_nla_strips": False,
               "bake_anim_simplify_factor": 0.0, "add_leaf_bones": add_leaf_bones, **fbx_options}
    scene = bpy.context.scene
    kept = scene.frame_start, scene.frame_end
    with _exporting(armature_obj, [armature_obj, *meshes]) as override, \
            _keys_moved(armature_obj.animation_data.action, -FBX_TIME_OFFSET):
        # The exporter bakes the scene's range, at time frame / fps.
        scene.frame_start, scene.frame_end = first - FBX_TIME_OFFSET, last - FBX_TIME_OFFSET
        try:
            with bpy.context.temp_override(**override):
                result = bpy.ops.export_scene.fbx(filepath=str(path), check_existing=False, **options)
        finally:
            scene.frame_start, scene.frame_end = kept
    return _written(result, path, "FBX")


@contextmanager
def _keys_moved(action, frames):
    """Every key (and its handles) of ``action`` moved by ``frames`` for the ``with`` block."""
    curves = _fcurves(action)

    def move(by):
        for fcurve in curves:
            for attribute in ("co", "handle_left", "handle_right"):
                values = np.empty(2 * len(fcurve.keyframe_points), dtype=np.float32)
                fcurve.keyframe_points.foreach_get(attribute, values)
                values[0::2] += by
                fcurve.keyframe_points.foreach_set(attribute, values)
            fcurve.update()
    move(frames)
    try:
        yield
    finally:
        move(-frames)


def _fcurves(action):
    """An action's F-curves, legacy (4.2) or layered (4.4+) layout."""
    if not keyframes.LAYERED_ACTIONS:
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]


def _target_path(path, overwrite):
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: turn on Overwrite to replace it (overwrite=True in a script)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    return path


def _frames(armature_obj, frame_start, frame_end):
    if armature_obj is None or armature_obj.type != 'ARMATURE':
        raise ValueError("export needs an armature object")
    first, last = action_frame_range(armature_obj)
    first = first if frame_start is None else int(frame_start)
    last = last if frame_end is None else int(frame_end)
    if last < first:
        raise ValueError(f"empty frame range {first}-{last}")
    return first, last


def _ensure_addon(module, category, name):
    """Enable Blender's bundled exporter add-on if this session lacks its operator."""
    try:
        getattr(getattr(bpy.ops, category), name).get_rna_type()
    except KeyError:
        addon_utils.enable(module, default_set=False)


@contextmanager
def _exporting(active, selected):
    """Object mode, ``selected`` selected and ``active`` active in the view layer while
    exporting (yields temp_override arguments); selection, active object and the
    scene frame come back after."""
    context = bpy.context
    view_layer = context.view_layer
    if active.name not in view_layer.objects:
        raise ValueError(f"'{active.name}' is not in the view layer '{view_layer.name}'")
    scene = context.scene
    kept_frame = scene.frame_current, scene.frame_subframe
    kept_active = view_layer.objects.active
    kept_selected = [o for o in view_layer.objects if o.select_get()]
    if context.mode != 'OBJECT' and kept_active is not None:
        bpy.ops.object.mode_set(mode='OBJECT')
    try:
        for obj in view_layer.objects:
            obj.select_set(obj in selected)
        view_layer.objects.active = active
        yield {"active_object": active, "object": active, "selected_objects": list(selected),
               "selected_editable_objects": list(selected)}
    finally:
        for obj in view_layer.objects:
            obj.select_set(obj in kept_selected)
        view_layer.objects.active = kept_active
        scene.frame_set(kept_frame[0], subframe=kept_frame[1])


def _written(result, path, kind):
    if result != {'FINISHED'} or not path.is_file():
        raise RuntimeError(f"Blender's {kind} exporter did not write {path}")
    return path
