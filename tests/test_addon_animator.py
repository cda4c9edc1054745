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
