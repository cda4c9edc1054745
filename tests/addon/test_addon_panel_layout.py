"""The add-on's real draw() methods, recorded (tests/support/layout_recorder.py): every property, operator
and layout call they use exists, they show what the settings hold, and the README's outline of
the panel is current."""
import bpy
import pytest

from scorehmr_blender import operators
from tests.support import blender_scene
from tests.support import layout_recorder as recorder

# blender_versions (repeated on 4.2 and 4.5 LTS): every layout call and property is checked against this Blender's
# own UI API.
pytestmark = pytest.mark.blender_versions

addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


def _props(nodes, identifier):
    return [n.attrs for n in nodes if n.kind == "prop" and n.attrs["identifier"] == identifier]


def _panels_with(records, predicate):
    return [rec for record in records for rec in record.walk() if any(predicate(n) for n in rec.tree.walk())]


def test_recorder_sees_refine_button_and_inputs_with_their_ui_names():
    recorder.fill_example()
    records = recorder.record_sidebar()
    assert [r.label for r in records] == ["Refine Motion"]
    nodes = [n for r in records for n in r.nodes()]

    refine = [n.attrs for n in nodes if n.kind == "operator" and n.attrs["idname"] == "refinemotion.refine"]
    assert len(refine) == 1
    assert refine[0]["text"] == bpy.types.REFINEMOTION_OT_refine.bl_label == "Refine Motion"
    assert refine[0]["enabled"]

    expected = {  # identifier: (UI name, shown value)
        "mode": ("Mode", "Video"),
        "footage_source": ("Footage", "Video File"),
        "footage_path": ("Video File", recorder.EXAMPLE_FOOTAGE),
        "keypoints_source": ("Keypoints", "File"),
        "keypoints_path": ("Keypoint File", recorder.EXAMPLE_KEYPOINTS),
    }
    for identifier, (ui_name, shown) in expected.items():
        found = _props(nodes, identifier)
        assert len(found) == 1, f"{identifier} drawn {len(found)} times"
        assert (found[0]["ui_name"], found[0]["text"], found[0]["display"]) == (ui_name, ui_name, shown)
    assert _props(nodes, "footage_path")[0]["subtype"] == 'FILE_PATH'
    assert _props(nodes, "mode")[0]["split"]  # label left, widget right

    # The Refine button sits in the sub-panel with the footage and keypoints, after them.
    panels = _panels_with(records, lambda n: n.kind == "operator" and n.attrs["idname"] == "refinemotion.refine")
    assert [p.label for p in panels] == ["Refine"] and panels[0].level == 1
    order = [n.attrs.get("identifier") or n.attrs.get("idname") for n in panels[0].tree.walk()
             if n.kind in {"prop", "operator"}]
    assert order.index("footage_path") < order.index("keypoints_path") < order.index("refinemotion.refine")


def test_smoothing_is_inactive_outside_video_mode():
    settings = recorder.fill_example()
    shown = lambda: _props([n for r in recorder.record_sidebar() for n in r.nodes()], "smoothing")[0]["active"]
    assert shown()
    settings.mode = 'SINGLE_FRAME'
    assert not shown()


def test_recorder_fails_loudly_on_what_blender_lacks():
    layout = recorder.RecordingLayout(recorder.Node("layout"), bpy.context)
    with pytest.raises(KeyError, match="no_such_setting"):
        layout.prop(bpy.context.scene.refine_motion, "no_such_setting")
    with pytest.raises(KeyError):
        layout.operator("refinemotion.no_such_operator")
    with pytest.raises(AttributeError, match="no_such_layout_call"):
        layout.no_such_layout_call()
    layout.template_ID(bpy.context.scene, "camera")   # a real UILayout call without a recorder of its own
    assert [n.kind for n in layout._node.children] == ["other"]


def test_switched_off_layouts_switch_off_their_content():
    layout = recorder.RecordingLayout(recorder.Node("layout"), bpy.context)
    outer = layout.column()
    outer.enabled = False
    outer.row().prop(bpy.context.scene.refine_motion, "smoothing")
    outer.column().operator("refinemotion.view_add")
    prop, button = [n.attrs for n in layout._node.walk() if n.kind in {"prop", "operator"}]
    assert not prop["enabled"] and not button["enabled"] and prop["active"]


def test_multiview_records_the_views_list_and_the_selected_view():
    recorder.fill_multiview()
    try:
        nodes = [n for r in recorder.record_sidebar() for n in r.nodes()]
        assert _props(nodes, "mode")[0]["display"] == "Multi-View"
        lists = [n for n in nodes if n.kind == "list" and n.attrs["propname"] == "views"]
        assert len(lists) == 1 and lists[0].attrs["count"] == 2
        rows = [[c.attrs["text"] for c in row.walk() if c.kind == "label"] for row in lists[0].children]
        assert rows == [["View 1: cam1.mp4", "Cam 1"], ["View 2: cam2.mp4", "Cam 2"]]
        # View 0's camera and the selected view's (view 1) inputs.
        assert [p["display"] for p in _props(nodes, "camera_object")] == ["Cam 0", "Cam 1"]
        assert _props(nodes, "footage_path")[1]["display"] == f"{recorder.MULTIVIEW_FOLDER}/cam1.mp4"
        assert {operators.REFINEMOTION_OT_view_add.bl_idname, operators.REFINEMOTION_OT_view_remove.bl_idname} <= \
            {n.attrs["idname"] for n in nodes if n.kind == "operator"}
    finally:
        recorder.fill_example()


def test_preferences_draw_every_setting():
    prefs, undo = recorder.enabled_preferences()
    try:   # prefs is freed by undo(): read everything first
        nodes = list(recorder.record_preferences(prefs).nodes())
        settings = {p.identifier for p in prefs.bl_rna.properties} - {"rna_type", "bl_idname"}
    finally:
        undo()
    drawn = {n.attrs["identifier"] for n in nodes if n.kind == "prop"}
    assert drawn == settings
    assert "refinemotion.setup_worker" in {n.attrs["idname"] for n in nodes if n.kind == "operator"}


def test_readme_outline_is_current():
    readme = recorder.readme_outline(recorder.README.read_text())
    assert readme is not None, "README.md lost its panel outline block"
    assert recorder.example_outline() == readme, \
        "the panel changed: run `.venv/bin/python scripts/panel_outline.py --readme`"
