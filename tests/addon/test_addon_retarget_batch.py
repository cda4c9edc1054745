"""The batch's --retarget (build.py, a subprocess) and the panel's Retarget on characters turned,
scaled and parented as imports leave them, in real bpy (5.0, 4.5, 4.2): they land where the
panel puts them, only the character is linked, and a preset that leaves limbs unmapped is refused."""
import math
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from scorehmr_blender import importer, retarget
from tests.support import blender_scene, result_fixture, retarget_rigs

ROOT = Path(__file__).resolve().parents[2]
FRAMES = np.arange(1, 9)
HIPS = "mixamorig:Hips"

addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


def run_build(*args):
    return subprocess.run([sys.executable, str(ROOT / "build.py"), "--", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"})


def character(parented):
    """The Mixamo-style character as an FBX import leaves it (turned 90 deg about X, scale 0.01),
    with a skinned mesh; ``parented``: under an Empty that turns and scales it again."""
    rig = retarget_rigs.mixamo_like()
    body = bpy.data.objects.new("MixamoBody", bpy.data.meshes.new("MixamoBody"))
    bpy.context.collection.objects.link(body)
    body.parent = rig
    body.modifiers.new("Armature", 'ARMATURE').object = rig
    if parented:
        holder = bpy.data.objects.new("Holder", None)
        bpy.context.collection.objects.link(holder)
        holder.matrix_world = Matrix.Translation((0.5, -0.3, 0.0)) @ Matrix.Rotation(math.radians(30), 4, 'Z') \
            @ Matrix.Scale(1.5, 4)
        rig.parent = holder
    return rig


def character_file(path, parented):
    """A .blend like a character file: the character, a metarig armature named to sort first and a
    widget mesh nobody deforms."""
    blender_scene.fresh_scene(30)
    rig = character(parented)
    meta = retarget_rigs.build_rig("A_metarig", [("spine", (0, 0, 1), (0, 0, 1.2), 0, None)])
    meta.location = (3.0, 0.0, 0.0)
    widget = bpy.data.objects.new("WGT-rig_torso", bpy.data.meshes.new("WGT-rig_torso"))
    bpy.context.collection.objects.link(widget)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return rig.name


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "Shot.npz"
    result_fixture.write_result(path, num_frames=len(FRAMES), fps=30)
    return path


def hips_world(rig):
    """World heads (F, 3) of the character's hips over the clip."""
    return retarget.sample_pose(rig, [HIPS], FRAMES)[1][:, 0]


def panel_retarget(shot, parented, settle, script=False):
    """Import the shot, make the character (``settle``: update the view layer after) and retarget
    onto it with the panel's operator (``script``: retarget.retarget(), as a script does); returns
    the character."""
    smpl = importer.import_result(bpy.context, str(shot), frame_start=1, add_camera=False).armature
    rig = character(parented)
    if settle:
        bpy.context.view_layer.update()
    settings = bpy.context.scene.refine_motion_retarget
    settings.source, settings.target = smpl, rig
    if script:
        retarget.retarget(smpl, rig)
    else:
        assert bpy.ops.refinemotion.retarget() == {'FINISHED'}
    return rig


@pytest.mark.parametrize("parented, script", [(False, False), (True, False), (True, True)])
def test_panel_retarget_reads_a_character_just_moved(shot, parented, script):
    """The character's object is turned and scaled (and parented) right before Retarget, as a script
    or an import does: the bake reads its evaluated world matrix, so the result is the same as
    after the view layer updated."""
    blender_scene.fresh_scene(30)
    expected = hips_world(panel_retarget(shot, parented, settle=True))
    blender_scene.fresh_scene(30)
    rig = panel_retarget(shot, parented, settle=False, script=script)  # no view layer update before Retarget
    np.testing.assert_allclose(hips_world(rig), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("parented, in_place", [(False, False), (True, True)])
def test_batch_retarget_lands_the_character_where_the_panel_does(shot, tmp_path, parented, in_place):
    """A Mixamo FBX-style character (turned 90 deg about X, scale 0.01; also under a turned, scaled
    Empty, retargeted In Place) retargeted by the batch stands and travels as the panel's Retarget
    makes it; only the character (its armature, its mesh and the Empty it hangs under) is linked."""
    blend = tmp_path / "character.blend"
    name = character_file(blend, parented)
    proc = run_build("--result", shot, "--out", tmp_path / "out.blend", "--retarget", blend,
                     *(["--in-place"] if in_place else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    blender_scene.fresh_scene(30)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "out.blend"))
    batch_rig = bpy.data.objects[name]
    linked = {obj.name for obj in bpy.context.scene.objects if obj.type in ('ARMATURE', 'MESH', 'EMPTY')
              and not obj.name.startswith("Refine Motion")}  # the import's ground plane
    got = hips_world(batch_rig)

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    smpl = importer.import_result(bpy.context, str(shot), frame_start=1, add_camera=False).armature
    rig = bpy.data.objects[name]
    retarget.retarget(smpl, rig, in_place=in_place)
    np.testing.assert_allclose(got, hips_world(rig), atol=1e-4)
    assert linked == {"Shot", "Shot_body", name, "MixamoBody", *(["Holder"] if parented else [])}, linked
    blender_scene.fresh_scene(30)


@pytest.mark.slow
def test_batch_refuses_a_preset_that_leaves_limbs_unmapped(shot, tmp_path):
    blend = tmp_path / "character.blend"
    character_file(blend, parented=False)
    proc = run_build("--result", shot, "--out", tmp_path / "out.blend", "--retarget", blend, "--preset", "ue5")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "leaves" in line]
    assert len(lines) == 1, proc.stderr
    assert "the preset 'ue5' leaves pelvis, left leg, left arm, right leg, right arm unmapped (1 bone mapped)" \
        in lines[0]
    assert not (tmp_path / "out.blend").exists()
    blender_scene.fresh_scene(30)
