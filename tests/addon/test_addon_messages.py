"""Messages that name things that exist (issue 14, item 9), in real bpy: what the user reads names
the control they can change."""

import bpy
import pytest

from scorehmr_blender import importer
from tests.support import blender_scene, result_fixture

addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


@pytest.fixture(autouse=True)
def empty_scene():
    return blender_scene.fresh_scene(24, 250)


def test_an_existing_export_file_names_the_operators_overwrite_option(tmp_path):
    result_fixture.write_result(tmp_path / "Shot.npz", num_frames=3, fps=24)
    rig = importer.import_result(bpy.context, str(tmp_path / "Shot.npz"), frame_start=1, add_camera=False).armature
    bpy.context.view_layer.objects.active = rig
    path = tmp_path / "a.bvh"
    path.write_text("keep me")
    with pytest.raises(RuntimeError, match="a.bvh exists: turn on Overwrite to replace it"):
        bpy.ops.refinemotion.export_bvh(filepath=str(path))
    assert path.read_text() == "keep me"
    assert bpy.ops.refinemotion.export_bvh.get_rna_type().properties["overwrite"].name == "Overwrite"
