"""The animator's last mile (issue 20): the panel's Refine and Import, and the batch, as a user drives
them in real bpy, with the stand-in engine of test_addon_refine.py."""

import bpy
import numpy as np
import pytest

from scorehmr_blender import panel, refine
from scorehmr_blender.runner import job as jobs
from tests.test_addon import real_layout  # noqa: F401 -- a fixture
from tests.test_addon_refine import (  # noqa: F401 -- addon, scene, shot and fake_engine are fixtures
    addon,
    assert_refused,
    draw,
    fake_engine,
    scene,
    shot,
    use_shot,
)


def test_single_frame_refine_keeps_the_scene_frame_range(shot, fake_engine):
    """Item 18: refining the current frame keys it without collapsing the scene to frames 5-5."""
    use_shot(shot, mode='SINGLE_FRAME')
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 8
    scene.frame_set(5)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    assert (scene.frame_start, scene.frame_end, scene.frame_current) == (1, 8, 5)


def test_footage_without_a_keypoint_file_points_at_detect_from_footage(shot, fake_engine):
    """Item 14: footage chosen, Keypoints: File left empty: the one line names the step that user needs."""
    use_shot(shot, keypoints_path="")
    assert_refused("No keypoints: set Keypoints to Detect from Footage", fake_engine)


def _build_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("refine_motion_build_ui", Path(__file__).parents[1] / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoothing_and_keypoint_trust_have_the_batch_s_scale(shot, fake_engine):
    """Item 19: the panel's Smoothing / Keypoint Trust are the batch's --smoothing / --keypoint-trust: the
    same default (1 = the engine's weight), the same range 0-2, the value sent to the engine as it is."""
    settings = bpy.context.scene.refine_motion
    defaults = _build_module().refine_parser().parse_args(["--footage", "x"])
    for name in ("smoothing", "keypoint_trust"):
        prop = settings.bl_rna.properties[name]
        batch_default = getattr(defaults, name)
        assert prop.default == (1.0 if batch_default is None else batch_default)
        assert (prop.hard_min, prop.hard_max) == (0.0, 2.0)
    use_shot(shot, smoothing=1.5, keypoint_trust=0.75)
    assert bpy.ops.refinemotion.refine() == {'FINISHED'}
    (call,) = fake_engine.calls
    assert (call["options"].smoothing, call["options"].keypoint_trust) == (1.5, 0.75)
