# SPDX-License-Identifier: GPL-3.0-or-later
"""A scene ready to look at after an import: a neutral World and a sun where the scene
has none (without them EEVEE and Cycles render black), and a ground plane on the
floor Z = 0 in its own collection, which the user can hide or delete in one click.
Nothing the scene already has is changed."""

from __future__ import annotations

import math

import bpy
import numpy as np

WORLD_NAME = "Refine Motion World"
LIGHT_NAME = "Refine Motion Sun"
GROUND_NAME = "Refine Motion Ground"  # the collection and its plane object
WORLD_GREY = 0.18  # linear mid grey: lights the body evenly without tinting it
SUN_STRENGTH = 3.0
GROUND_MARGIN = 2.0  # metres around the motion and the camera
GROUND_CELL = 1.0    # metres: the plane is a grid of 1 m squares, a scale reference in the viewport


def ensure_world(scene: bpy.types.Scene) -> bpy.types.World | None:
    """Give ``scene`` a neutral grey World unless it has one; returns the World made, or None."""
    if scene.world is not None:
        return None
    world = bpy.data.worlds.new(WORLD_NAME)
    world.color = (WORLD_GREY,) * 3  # Workbench and a World without nodes
    if bpy.app.version < (5, 0, 0):  # 5.0 always uses the node tree (use_nodes is deprecated)
        world.use_nodes = True
    background = next(n for n in world.node_tree.nodes if n.type == 'BACKGROUND')
    background.inputs["Color"].default_value = (WORLD_GREY, WORLD_GREY, WORLD_GREY, 1.0)
    background.inputs["Strength"].default_value = 1.0
    scene.world = world
    return world


def ensure_light(scene: bpy.types.Scene, collection: bpy.types.Collection) -> bpy.types.Object | None:
    """Add a sun to ``collection`` unless ``scene`` has a light; returns the object made, or None."""
    if any(obj.type == 'LIGHT' for obj in scene.objects):
        return None
    data = bpy.data.lights.new(LIGHT_NAME, 'SUN')
    data.energy = SUN_STRENGTH
    sun = bpy.data.objects.new(LIGHT_NAME, data)
    sun.rotation_euler = (math.radians(40.0), 0.0, math.radians(30.0))  # from above, front left
    collection.objects.link(sun)
    return sun


def ensure_ground(scene: bpy.types.Scene, points: np.ndarray) -> bpy.types.Object | None:
    """A grid plane on Z = 0 covering ``points`` (N, 3) world positions plus a margin,
    in its own collection ``GROUND_NAME``, unless the scene has that object already.

    It draws as wire in the viewport, so the footage behind the camera view stays
    visible; renders show it solid.  Returns the object made, or None."""
    if GROUND_NAME in scene.objects:
        return None
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    low = np.floor((xy.min(0) - GROUND_MARGIN) / GROUND_CELL) * GROUND_CELL
    high = np.ceil((xy.max(0) + GROUND_MARGIN) / GROUND_CELL) * GROUND_CELL
    mesh = bpy.data.meshes.new(GROUND_NAME)
    mesh.from_pydata(*_grid(low, high, GROUND_CELL))
    mesh.update()
    ground = bpy.data.objects.new(GROUND_NAME, mesh)
    ground.display_type = 'WIRE'
    collection = bpy.data.collections.new(GROUND_NAME)
    scene.collection.children.link(collection)
    collection.objects.link(ground)
    return ground


def _grid(low: np.ndarray, high: np.ndarray, cell: float) -> tuple[list[tuple[float, float, float]], list,
                                                                  list[tuple[int, int, int, int]]]:
    """(vertices, edges, faces) of a flat grid on Z = 0 from ``low`` to ``high`` (2,) in ``cell`` squares."""
    nx, ny = (int(round(n)) for n in (high - low) / cell)
    xs, ys = low[0] + cell * np.arange(nx + 1), low[1] + cell * np.arange(ny + 1)
    vertices = [(x, y, 0.0) for y in ys for x in xs]
    faces = [(r * (nx + 1) + c, r * (nx + 1) + c + 1, (r + 1) * (nx + 1) + c + 1, (r + 1) * (nx + 1) + c)
             for r in range(ny) for c in range(nx)]
    return vertices, [], faces
