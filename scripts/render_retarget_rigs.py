"""Render docs/retarget_rigs.png: the example shot's SMPL rig and the five retargeted characters
(generated Rigify, Rigify metarig, Mixamo-style, numbered and Japanese bone names; feet pinned
while SMPL's are in contact) at one frame on a floor, Workbench, headless.

    .venv/bin/python scripts/render_retarget_rigs.py [--frame 60]

Armatures do not render, so every deforming bone gets a thin box mesh parented to it."""
import argparse
import sys
import tempfile
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scorehmr_blender  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from scorehmr_blender import retarget  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from tests.support import retarget_rigs  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)


# Rigify bones drawn (not the face, fingers, breasts or pelvis wings).
RIGIFY_BODY = {"spine", "shoulder", "upper_arm", "forearm", "hand", "thigh", "shin", "foot", "toe"}


def bone_boxes(rig, names, color):
    """A thin box along each bone in ``names``, parented to the bone (so it follows the pose)."""
    material = bpy.data.materials.new(rig.name + "Bones")
    material.diffuse_color = color
    for name in names:
        bone = rig.data.bones[name]
        w, length = 0.12 * bone.length if bone.length < 0.5 else 0.03, bone.length
        w = min(max(w, 0.01), 0.035) / max(rig.matrix_world.to_scale()[0], 1e-9)
        verts = [(x, y, z) for y in (0.0, length) for x in (-w, w) for z in (-w, w)]
        faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata(verts, [], faces)
        mesh.materials.append(material)
        obj = bpy.data.objects.new(f"{rig.name}:{name}", mesh)
        bpy.context.collection.objects.link(obj)
        obj.parent, obj.parent_type, obj.parent_bone = rig, 'BONE', name
        obj.location = (0.0, -length, 0.0)  # bone parenting starts at the tail


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frame", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "docs" / "retarget_rigs.png"))
    args = parser.parse_args()
    retarget_rigs.enable_rigify()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    retarget_rigs.enable_rigify()
    scorehmr_blender.register()
    scene = bpy.context.scene
    scene.render.fps, scene.frame_start, scene.frame_end = 24, 1, 96
    folder = Path(tempfile.mkdtemp())
    smpl = retarget_rigs.import_smpl(retarget_rigs.shot_result(folder / "Shot.npz"))
    # Stand the SMPL rig at the origin on Z = 0 (the retarget does not depend on where it is).
    pose, world = retarget.evaluated_matrices(smpl, np.arange(1, 97))
    heads = world[:, None, :3, :3] @ pose[..., :3, 3:4] + world[:, None, :3, 3:4]
    rows = [smpl.pose.bones.find(j) for j in retarget.FOOT_JOINTS]
    lowest = np.median(heads[:, rows, 2, 0].min(axis=1))  # where its feet stand most of the time
    pelvis = heads[0, smpl.pose.bones.find("pelvis"), :, 0]
    smpl.location = np.array(smpl.location) - np.array([pelvis[0], pelvis[1], lowest])
    colors = ((0.2, 0.5, 0.9, 1), (0.3, 0.75, 0.35, 1), (0.9, 0.55, 0.2, 1), (0.7, 0.35, 0.8, 1),
              (0.85, 0.3, 0.3, 1))
    for (name, (rig, _)), color in zip(retarget_rigs.five_rigs(folder).items(), colors):
        retarget.retarget(smpl, rig)
        drawn = [b.name for b in rig.data.bones if b.use_deform and (
            not b.name.startswith("DEF-") or b.name[4:].split(".")[0] in RIGIFY_BODY)]
        if name == "Rigify metarig":
            drawn = [b.name for b in rig.data.bones if b.name.split(".")[0] in RIGIFY_BODY]
        bone_boxes(rig, drawn, color)
    for obj in [o for o in scene.objects if o.name.startswith("Refine Motion Ground")]:
        bpy.data.objects.remove(obj)  # the import's ground, under the SMPL rig only: one floor under all
    floor = bpy.data.objects.new("Floor", bpy.data.meshes.new("Floor"))
    floor.data.from_pydata([(-3.0, -3.0, 0.0), (9.0, -3.0, 0.0), (9.0, 6.0, 0.0), (-3.0, 6.0, 0.0)], [],
                           [(0, 1, 2, 3)])
    scene.collection.objects.link(floor)
    for child in smpl.children:
        if child.type == 'MESH':
            child.hide_render = False
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.data.type, camera.data.ortho_scale = 'ORTHO', 7.4
    camera.location, camera.rotation_euler = (2.8, -8.0, 1.3), (np.radians(84), 0.0, 0.0)
    scene.camera = camera
    scene.render.engine = 'BLENDER_WORKBENCH'
    scene.display.shading.light, scene.display.shading.color_type = 'STUDIO', 'MATERIAL'
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 1200, 420, 100
    scene.render.image_settings.file_format = 'PNG'
    scene.frame_set(args.frame)
    scene.render.filepath = args.out
    bpy.ops.render.render(write_still=True)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
