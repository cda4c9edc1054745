"""scripts/panel_picture.py records the real panels: it must break loudly when the panel changes.

Runs the recorder (the stand-in UILayout) on the add-on's own draw() methods, not the matplotlib
drawing, so it stays fast."""

import importlib.util
from pathlib import Path

import bpy
import pytest

from tests import blender_scene

ROOT = Path(__file__).resolve().parents[1]

addon = pytest.fixture(scope="module", autouse=True)(blender_scene.registered_addon)


@pytest.fixture(scope="module")
def pictures():
    spec = importlib.util.spec_from_file_location("panel_picture", ROOT / "scripts" / "panel_picture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _props(nodes, identifier):
    return [n.attrs for n in nodes if n.kind == "prop" and n.attrs["identifier"] == identifier]


def _panel_of(records, predicate):
    return [rec for record in records for rec in record.walk() if any(predicate(n) for n in rec.tree.walk())]


def test_recorder_sees_refine_button_and_inputs_with_their_ui_names(pictures):
    pictures.fill_example()
    records = pictures.record_sidebar()
    assert [r.label for r in records] == ["Refine Motion"]
    nodes = [n for r in records for n in r.nodes()]

    refine = [n.attrs for n in nodes if n.kind == "operator" and n.attrs["idname"] == "refinemotion.refine"]
    assert len(refine) == 1
    assert refine[0]["text"] == bpy.types.REFINEMOTION_OT_refine.bl_label == "Refine Motion"
    assert refine[0]["enabled"]

    expected = {  # identifier: (UI name, shown value)
        "mode": ("Mode", "Video"),
        "footage_source": ("Footage", "Video File"),
        "footage_path": ("Video File", pictures.EXAMPLE_FOOTAGE),
        "keypoints_source": ("Keypoints", "File"),
        "keypoints_path": ("Keypoint File", pictures.EXAMPLE_KEYPOINTS),
    }
    for identifier, (ui_name, shown) in expected.items():
        found = _props(nodes, identifier)
        assert len(found) == 1, f"{identifier} drawn {len(found)} times"
        assert (found[0]["ui_name"], found[0]["text"], found[0]["display"]) == (ui_name, ui_name, shown)
    assert _props(nodes, "footage_path")[0]["subtype"] == 'FILE_PATH'
    assert _props(nodes, "mode")[0]["split"]  # label left, widget right

    # The Refine button sits in the sub-panel with the footage and keypoints, after them.
    panels = _panel_of(records, lambda n: n.kind == "operator" and n.attrs["idname"] == "refinemotion.refine")
    assert [p.label for p in panels] == ["Refine"] and panels[0].level == 1
    order = [n.attrs.get("identifier") or n.attrs.get("idname") for n in panels[0].tree.walk()
             if n.kind in {"prop", "operator"}]
    assert order.index("footage_path") < order.index("keypoints_path") < order.index("refinemotion.refine")


def test_recorder_fails_loudly_on_a_missing_property(pictures):
    layout = pictures.RecordingLayout(pictures.Node("layout"), bpy.context)
    with pytest.raises(KeyError, match="no_such_setting"):
        layout.prop(bpy.context.scene.refine_motion, "no_such_setting")
    with pytest.raises(KeyError):
        layout.operator("refinemotion.no_such_operator")


def test_multiview_picture_records_the_views_list(pictures):
    pictures.fill_example()
    if not pictures.fill_multiview():
        pytest.skip("the settings have no Multi-View list of views")
    try:
        nodes = [n for r in pictures.record_sidebar() for n in r.nodes()]
        assert _props(nodes, "mode")[0]["display"] == "Multi-View"
        lists = [n for n in nodes if n.kind == "list" and n.attrs["propname"] == pictures.views_property(
            bpy.context.scene.refine_motion)]
        assert len(lists) == 1 and lists[0].attrs["count"] == 2
    finally:
        pictures.fill_example()
