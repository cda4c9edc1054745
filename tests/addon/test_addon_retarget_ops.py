"""The retarget/export operators, settings, mapping list and panel in real bpy (5.x and 4.2)."""

import json
import types

import bpy
import pytest

from scorehmr_blender import importer, panel, retarget_ops, retarget_presets
from scorehmr_blender.retarget_presets import MIXAMO
from tests.support import blender_scene, result_fixture
from tests.addon.test_addon import CheckedLayout
from tests.addon.test_addon_retarget import fcurves_of, mixamo_rig

# blender_versions (repeated on 4.2 and 4.5 LTS): the operators, UI list and panel in this Blender's API; mappings
# applied to its actions.
pytestmark = pytest.mark.blender_versions

FPS = 30


addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


@pytest.fixture(autouse=True)
def empty_scene():
    return blender_scene.fresh_scene(FPS)


@pytest.fixture(scope="module")
def shot_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "Shot.npz"
    result_fixture.write_result(path, num_frames=8, fps=FPS)
    return path


@pytest.fixture
def rigs(shot_path):
    smpl = importer.import_result(bpy.context, str(shot_path), frame_start=1, add_camera=False).armature
    character = mixamo_rig()
    settings = bpy.context.scene.refine_motion_retarget
    settings.source, settings.target = smpl, character
    return smpl, character, settings


def test_registered_with_a_sub_panel_and_scene_settings():
    for op in ("retarget", "retarget_build_mapping", "retarget_mapping_save", "retarget_mapping_load",
               "export_bvh", "export_fbx"):
        getattr(bpy.ops.refinemotion, op).get_rna_type()
    assert bpy.types.REFINEMOTION_PT_retarget.bl_parent_id == "REFINEMOTION_PT_main"
    settings = bpy.context.scene.refine_motion_retarget
    assert settings.preset == 'AUTO' and len(settings.pairs) == 0
    assert {i.identifier for i in settings.bl_rna.properties["preset"].enum_items} == {
        'AUTO', 'RIGIFY', 'RIGIFY_METARIG', 'RIGIFY_DEFORM', 'MIXAMO', 'UE5'}
    assert settings.in_place is False  # root motion by default
    assert not bpy.ops.refinemotion.retarget.poll()  # no rigs chosen yet


def test_source_and_target_pickers_take_the_right_armatures(rigs):
    smpl, character, _ = rigs
    assert retarget_ops._poll_source(None, smpl) and not retarget_ops._poll_source(None, character)
    assert retarget_ops._poll_target(None, character) and not retarget_ops._poll_target(None, smpl)


def test_build_edit_save_load_and_retarget(rigs, tmp_path):
    _, character, settings = rigs
    assert bpy.ops.refinemotion.retarget_build_mapping() == {'FINISHED'}
    assert [p.source for p in settings.pairs] == list(retarget_presets.SMPL_BONES)
    assert retarget_ops.mapping_of(settings) == MIXAMO

    # Review: unmap the toes, then save and load the edited list.
    for pair in settings.pairs:
        if pair.source.endswith("_foot"):
            pair.target = ""
    edited = retarget_ops.mapping_of(settings)
    path = tmp_path / "mixamo_like.json"
    assert bpy.ops.refinemotion.retarget_mapping_save(filepath=str(path)) == {'FINISHED'}
    assert retarget_presets.mapping_from_json(path.read_text()) == edited
    settings.pairs.clear()
    assert bpy.ops.refinemotion.retarget_mapping_load(filepath=str(path)) == {'FINISHED'}
    assert retarget_ops.mapping_of(settings) == edited and len(settings.pairs) == 24

    settings.action_name = "Take 1"
    assert bpy.ops.refinemotion.retarget() == {'FINISHED'}
    action = character.animation_data.action
    assert action.name == "Take 1"
    keyed = {path.split('"')[1] for path, _ in fcurves_of(action)}
    assert keyed == set(edited.values())  # the toes stay unkeyed


def test_retarget_with_an_empty_list_builds_it_from_the_preset(rigs):
    _, character, settings = rigs
    settings.preset = 'MIXAMO'
    assert bpy.ops.refinemotion.retarget() == {'FINISHED'}
    assert retarget_ops.mapping_of(settings) == MIXAMO
    assert character.animation_data.action.name == "Shot_retarget"


def test_bad_mapping_files_are_reported(rigs, tmp_path):
    _, _, settings = rigs
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(RuntimeError, match="not a Refine Motion bone mapping file"):
        bpy.ops.refinemotion.retarget_mapping_load(filepath=str(path))
    assert len(settings.pairs) == 0


def test_export_operators_write_the_active_armature_and_never_overwrite(rigs, tmp_path):
    smpl, _, _ = rigs
    bpy.context.view_layer.objects.active = smpl
    for op, name in ((bpy.ops.refinemotion.export_bvh, "a.bvh"), (bpy.ops.refinemotion.export_fbx, "a.fbx")):
        path = tmp_path / name
        assert op(filepath=str(path)) == {'FINISHED'}
        size = path.stat().st_size
        path.write_bytes(b"x")
        with pytest.raises(RuntimeError, match="exists"):
            op(filepath=str(path))
        assert path.read_bytes() == b"x"
        assert op(filepath=str(path), overwrite=True) == {'FINISHED'}
        assert path.stat().st_size == size
    bpy.context.view_layer.objects.active = smpl.children[0]
    assert not bpy.ops.refinemotion.export_bvh.poll()


def test_mapping_folder_is_a_user_folder():
    folder = retarget_ops.mapping_folder()
    assert folder.replace("\\", "/").rstrip("/").endswith("retarget_mappings")


@pytest.fixture(scope="module")
def real_layout():
    try:
        layout = bpy.context.window_manager.popmenu_begin__internal("Retarget test", icon='NONE').layout
    except (AttributeError, RuntimeError, TypeError) as ex:
        pytest.skip(f"no UILayout can be made headless in this Blender: {ex}")
    return layout


class ListCheckedLayout(CheckedLayout):
    """CheckedLayout that records template_list() instead of calling it: a UI list
    needs a real region (it crashes in the headless popup layout)."""

    def __getattr__(self, name):
        if name != "template_list":  # (the panel draws its list straight into the panel layout)
            return CheckedLayout.__getattr__(self, name)

        def template_list(list_type, list_id, data, prop, active_data, active_prop, **_options):
            assert list_type in {cls.__name__ for cls in bpy.types.UIList.__subclasses__()}
            assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
            self._log["lists"].append((list_type, prop, active_prop))
        return template_list


def test_panel_draws_the_mapping_list_and_buttons(rigs, real_layout):
    log = {"props": [], "labels": [], "operators": [], "lists": []}
    panel.REFINEMOTION_PT_retarget.draw(types.SimpleNamespace(layout=ListCheckedLayout(real_layout, log)),
                                        bpy.context)
    assert log["lists"] == [("REFINEMOTION_UL_retarget_pairs", "pairs", "active_pair")]
    assert log["props"] == ["source", "target", "preset", "in_place", "action_name"]
    assert log["operators"] == ["refinemotion.retarget_build_mapping", "refinemotion.retarget_mapping_load",
                                "refinemotion.retarget_mapping_save", "refinemotion.retarget",
                                "refinemotion.export_bvh", "refinemotion.export_fbx"]
    # The list rows draw too (with and without a character to pick bones from).
    _, _, settings = rigs
    retarget_ops.fill_pairs(settings, MIXAMO)
    row_log = {"props": [], "labels": [], "operators": []}
    for target in (settings.target, None):
        settings.target = target
        retarget_ops.REFINEMOTION_UL_retarget_pairs.draw_item(
            None, bpy.context, CheckedLayout(real_layout, row_log), settings, settings.pairs[0], 0, settings,
            "active_pair", 0)
    assert row_log["labels"] == ["pelvis", "pelvis"] and row_log["props"] == ["target"]  # else prop_search


def test_an_import_fills_in_the_smpl_armature(shot_path):
    settings = bpy.context.scene.refine_motion_retarget
    assert settings.source is None
    smpl = importer.import_result(bpy.context, str(shot_path), frame_start=1, add_camera=False).armature
    assert settings.source == smpl
    importer.import_result(bpy.context, str(shot_path), frame_start=1, add_camera=False)
    assert settings.source == smpl  # a chosen one stays


def test_switching_the_character_drops_the_old_mapping(rigs):
    """A mapping built for one character is not kept for another: Retarget builds the new one from
    the preset; a mapping that does not fit the character says to press Build Mapping."""
    from tests.addon.test_addon_retarget import rigify_rig

    smpl, mixamo, settings = rigs
    assert bpy.ops.refinemotion.retarget_build_mapping() == {'FINISHED'}
    assert retarget_ops.mapping_of(settings) == MIXAMO
    other = rigify_rig()
    settings.target = other
    assert bpy.ops.refinemotion.retarget() == {'FINISHED'}
    assert retarget_ops.mapping_of(settings)["left_hip"] == "DEF-thigh.L"

    from scorehmr_blender import retarget
    with pytest.raises(ValueError, match="press Build Mapping"):
        retarget.retarget(smpl, other, mapping=MIXAMO)


def test_an_action_pushed_to_the_nla_is_retargeted(rigs):
    smpl, character, settings = rigs
    action = smpl.animation_data.action
    track = smpl.animation_data.nla_tracks.new()
    track.strips.new(action.name, 1, action)
    smpl.animation_data.action = None
    assert bpy.ops.refinemotion.retarget() == {'FINISHED'}
    start, end = character.animation_data.action.frame_range
    assert (start, end) == (1, 8)


def test_export_after_the_file_browser_replaces_the_file(rigs, tmp_path):
    """The file browser (invoke) asks before replacing a file: the export then overwrites it."""
    smpl, _, _ = rigs
    bpy.context.view_layer.objects.active = smpl
    for op, name in ((bpy.ops.refinemotion.export_bvh, "a.bvh"), (bpy.ops.refinemotion.export_fbx, "a.fbx")):
        path = tmp_path / name
        path.write_text("keep me")
        with pytest.raises(RuntimeError, match="turn on Overwrite"):  # a script's call without Overwrite
            op(filepath=str(path))
        operator = getattr(retarget_ops, "REFINEMOTION_OT_export_" + name[2:])
        assert "confirmed" in operator.invoke.__code__.co_names  # invoke marks the browser's confirmation
        assert op(filepath=str(path), confirmed=True) == {'FINISHED'}
        assert path.stat().st_size > 1000
