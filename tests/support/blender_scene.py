"""Set-up shared by the add-on tests (real bpy): the add-on registered for a test module, a
fresh empty scene per test, and reading an action's keys back."""
import bpy
import numpy as np

import scorehmr_blender
from scorehmr_blender import keyframes


def registered_addon():
    """Module fixture body: register the add-on on a factory-fresh file, unregister after."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scorehmr_blender.register()
    yield scorehmr_blender
    scorehmr_blender.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=True)


def fresh_scene(fps: int, frame_end: int | None = None):
    """A factory-fresh empty scene at ``fps`` (frames 1..frame_end when given)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, 1.0
    if frame_end is not None:
        scene.frame_start, scene.frame_end = 1, frame_end
    return scene


def fcurves_of(action):
    """An action's F-curves by (data_path, index), legacy (4.2) or layered (4.4+) layout."""
    if hasattr(action, "fcurves") and not keyframes.LAYERED_ACTIONS:
        curves = action.fcurves
    else:
        curves = [fc for layer in action.layers for strip in layer.strips
                  for bag in strip.channelbags for fc in bag.fcurves]
    return {(fc.data_path, fc.array_index): fc for fc in curves}


def keys(fcurve):
    """(frames, values) of an F-curve's keys, read in bulk."""
    co = np.empty(2 * len(fcurve.keyframe_points), dtype=np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    return co[0::2], co[1::2]
