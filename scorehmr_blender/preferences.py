# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: the body model, and where the engine runs (in Blender or a worker
Python), with a one-click set-up of the worker environment."""

import os
from typing import TYPE_CHECKING

import bpy
from bpy.props import EnumProperty, StringProperty

from .runner import placement, worker_env
from .runner.engine import RefineError

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_BODY_MODEL = "Free default (Anny-based SMPL format)"

ENGINE_LOCATION_ITEMS = (
    ('AUTO', "Automatic", "In Blender when torch imports in Blender's Python, else the worker Python"),
    ('WORKER', "Worker Python", "Always in the worker Python (a separate process)"),
)


def _setup_command(index: int) -> "Callable[[bpy.types.AddonPreferences], str]":
    def get(_self):
        try:
            return worker_env.shell_line(worker_env.setup_commands()[index])
        except RefineError as ex:
            return str(ex)
    return get


class RefineMotionPreferences(bpy.types.AddonPreferences):
    # As an extension this is "bl_ext.<repo>.refine_motion"; never hard-code it.
    bl_idname = __package__

    smpl_path: StringProperty(
        name="SMPL Model File",
        description="Optional SMPL model file (.pkl or .npz) you have a license for. "
                    "Leave empty to use the free default body model",
        subtype='FILE_PATH',
    )
    engine_location: EnumProperty(
        name="Run Engine",
        description="Where the refinement engine (torch) runs",
        items=ENGINE_LOCATION_ITEMS,
        default='AUTO',
    )
    worker_python: StringProperty(
        name="Worker Python",
        description="Python interpreter with torch and the engine's packages, used to run the "
                    "refinement outside Blender. Leave empty to use the environment that "
                    "'Set Up Worker Environment' makes",
        subtype='FILE_PATH',
    )
    # Read-only, so that Ctrl+C over a field copies the command.
    setup_command_venv: StringProperty(name="1", get=_setup_command(0))
    setup_command_torch: StringProperty(name="2", get=_setup_command(1))
    setup_command_engine: StringProperty(name="3", get=_setup_command(2))

    def draw(self, _context):
        draw_preferences(self.layout, self)


def draw_preferences(layout: bpy.types.UILayout, prefs: "RefineMotionPreferences") -> None:
    layout.use_property_split = True
    layout.prop(prefs, "smpl_path")

    layout.separator()
    layout.prop(prefs, "engine_location")
    layout.prop(prefs, "worker_python")
    draw_engine_status(layout, prefs)

    layout.separator()
    draw_worker_setup(layout.box(), prefs)


def draw_engine_status(layout: bpy.types.UILayout, prefs: "RefineMotionPreferences") -> None:
    """Where the engine runs and on which device (both cached: nothing is read from disk here)."""
    kind, text, runner = placement.engine_status(*engine_choice(prefs))
    col = layout.column(align=True)
    col.label(text=("Engine runs: " if kind != "none" else "") + text,
              icon='CHECKMARK' if kind != "none" else 'ERROR')
    if kind == "none":
        return
    device = placement.device_text(runner)
    row = col.row()
    row.label(text="Device: " + (device or "checking..."), icon='MEMORY')
    row.operator("refinemotion.check_device", icon='FILE_REFRESH')
    if device is None:
        _redraw_while_checking()


def draw_worker_setup(layout: bpy.types.UILayout, prefs: "RefineMotionPreferences") -> None:
    layout.label(text="Worker Environment", icon='CONSOLE')
    task = worker_env.current_task()
    if task is not None and task.state == "running":
        layout.label(text=f"Step {task.step + 1}/{len(task.commands)}: {task.last_output[:120]}", icon='SORTTIME')
        layout.label(text="Esc cancels")
    else:
        layout.operator("refinemotion.setup_worker", icon='IMPORT')
        if task is not None and task.state != "done":
            layout.label(text=task.error, icon='ERROR')
        layout.label(text=f"Makes {placement.default_worker_python()} (downloads 1-3 GB)")
    col = layout.column(align=True)
    col.label(text="Or by hand, in a terminal (Ctrl+C over a line copies it):")
    for name in ("setup_command_venv", "setup_command_torch", "setup_command_engine"):
        col.prop(prefs, name)
    col.label(text="then leave Worker Python empty, or set it to that environment's python.")


def _redraw_preferences_tick() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == 'PREFERENCES':
                area.tag_redraw()
    return 0.5 if placement.device_query_running() else None


def _redraw_while_checking() -> None:
    """Redraw the preferences until the device query answers (draw() itself cannot wait)."""
    if not bpy.app.timers.is_registered(_redraw_preferences_tick):
        bpy.app.timers.register(_redraw_preferences_tick, first_interval=0.5)


classes = (RefineMotionPreferences,)


def get(context: bpy.types.Context) -> "RefineMotionPreferences | None":
    """This add-on's preferences, or None while it is not enabled as an add-on
    (for instance when registered directly from a script or a test)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def engine_choice(prefs: "RefineMotionPreferences") -> tuple[str, str]:
    """(engine location, worker python setting) for runner.placement.choose_runner."""
    if prefs is None:
        return "AUTO", ""
    return prefs.engine_location, prefs.worker_python


def body_model_label(prefs: "RefineMotionPreferences") -> str:
    """Human-readable name of the body model that refinement will use."""
    path = prefs.smpl_path.strip() if prefs is not None else ""
    if path:
        return "User SMPL: " + os.path.basename(path)
    return DEFAULT_BODY_MODEL
