# SPDX-License-Identifier: GPL-3.0-or-later
"""The footage camera: a Blender camera matching the result's intrinsics (glue;
maths in convert.camera_settings).  It stands where the result's world frame puts
it (convert.world_camera_to_blender: height, pitch and roll over the floor), or
looks along +Y, the pose convert.CAMERA_TO_WORLD assumes, from the world origin or
from where the floor placement moved it (staging.floor_placement), so the imported
body lines up with the footage seen through it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
import numpy as np
from mathutils import Matrix

from .convert import OPENCV_TO_BLENDER_CAMERA, camera_settings

if TYPE_CHECKING:
    from collections.abc import Sequence


def new_camera(name: str, image_size: Sequence[float], focal_px: float, principal_point: Sequence[float] | None,
               camera_to_world: np.ndarray) -> bpy.types.Object:
    """A camera object (not linked to any collection) for pinhole intrinsics in pixels,
    placed where ``camera_to_world`` (4, 4), an OpenCV camera -> world transform, puts it."""
    data = bpy.data.cameras.new(name)
    for key, value in camera_settings(image_size, focal_px, principal_point).items():
        setattr(data, key, value)
    obj = bpy.data.objects.new(name, data)
    pose = np.array(camera_to_world, dtype=np.float64)
    pose[:3, :3] = pose[:3, :3] @ OPENCV_TO_BLENDER_CAMERA  # Blender cameras look down -Z, +Y up
    obj.matrix_world = Matrix(pose.tolist())
    return obj


def resolution_mismatch(scene: bpy.types.Scene, image_size: Sequence[float]) -> str | None:
    """A warning when the scene's render size differs from the footage's, else None."""
    render = scene.render
    scene_size = (render.resolution_x, render.resolution_y)
    width, height = (round(v) for v in image_size)
    if scene_size == (width, height) and render.pixel_aspect_x == render.pixel_aspect_y:
        return None
    return (f"Scene resolution {scene_size[0]}x{scene_size[1]} differs from the footage's "
            f"{width}x{height}: the camera view will not match the footage until they agree")


def footage_mismatch(footage_size: Sequence[float], image_size: Sequence[float]) -> str | None:
    """A warning when the footage's frame size differs from the images the result was refined on, else None."""
    footage = tuple(round(v) for v in footage_size)
    image = tuple(round(v) for v in image_size)
    if footage == image:
        return None
    return (f"The footage is {footage[0]}x{footage[1]} but the result was refined on {image[0]}x{image[1]} images: "
            "the camera view will not match the footage")


def set_resolution(scene: bpy.types.Scene, image_size: Sequence[float]) -> None:
    render = scene.render
    render.resolution_x, render.resolution_y = (round(v) for v in image_size)
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0


def load_clip(path: str) -> bpy.types.MovieClip:
    """The footage as a movie clip (an existing one if already loaded); RuntimeError if unreadable."""
    return bpy.data.movieclips.load(bpy.path.abspath(path), check_existing=True)


def show_footage(camera_obj: bpy.types.Object, clip: bpy.types.MovieClip, frame_start: int) -> None:
    """Show ``clip`` behind the camera view, its first frame at scene ``frame_start``.

    Blender plays a clip one footage frame per scene frame."""
    clip.frame_start = frame_start
    data = camera_obj.data
    background = data.background_images.new()
    background.source = 'MOVIE_CLIP'
    background.clip = clip
    data.show_background_images = True
