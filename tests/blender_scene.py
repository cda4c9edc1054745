"""Set-up shared by the add-on tests (real bpy): the add-on registered for a test module, and a
fresh empty scene per test."""
import bpy

import scorehmr_blender


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
