# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators.  The numpy-based modules they use load on first use, not with the add-on."""

import traceback
from typing import TYPE_CHECKING

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import preferences
from .runner import job as jobs
from .runner import placement, worker_env
from .runner.engine import RefineError

if TYPE_CHECKING:
    from . import refine


class REFINEMOTION_OT_import_result(bpy.types.Operator, ImportHelper):
    """Import a refined motion result (.npz) as an SMPL armature with a skinned body,
    a new action and a camera matching the footage"""
    bl_idname = "refinemotion.import_result"
    bl_label = "Import Refined Motion"
    bl_options = {'REGISTER', 'UNDO'}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={'HIDDEN'})

    shot_name: StringProperty(
        name="Shot Name",
        description="Name of the new armature and action (default: the file's name). "
                    "An existing action of that name is kept; the new one gets a .001 suffix",
    )
    frame_start: IntProperty(
        name="Start Frame",
        description="Scene frame of the result's first frame (default: the scene's start)",
        default=1,
    )
    use_active_rig: BoolProperty(
        name="Onto Active Rig",
        description="Give the new action to the active armature from an earlier import instead of "
                    "building a new rig and body (the rig keeps its body shape; its previous "
                    "action is kept with a fake user)",
        default=False,
    )
    add_camera: BoolProperty(
        name="Add Camera",
        description="Add a camera matching the footage's intrinsics, placed with the body (see Placement)",
        default=True,
    )
    footage_path: StringProperty(
        name="Footage",
        description="Optional movie or image sequence to show behind the camera view",
        subtype='FILE_PATH',
    )
    set_resolution: BoolProperty(
        name="Set Scene Resolution",
        description="Set the scene's render resolution to the footage's, so the camera view frames it",
        default=True,
    )
    set_camera: BoolProperty(
        name="Make Scene Camera",
        description="Make the footage camera the scene's camera (else only when the scene has none)",
        default=True,
    )
    update_scene_duration: BoolProperty(
        name="Update Scene Duration",
        description="Set the scene's frame range to the motion's frames",
        default=True,
    )

    def invoke(self, context, event):
        if not self.properties.is_property_set("frame_start"):
            self.frame_start = context.scene.frame_start
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        from . import importer, result

        start = self.frame_start if self.properties.is_property_set("frame_start") else None
        try:
            imported = importer.import_result(
                context, self.filepath, shot_name=self.shot_name, frame_start=start,
                onto_rig=self._target_rig(context), add_camera=self.add_camera,
                footage_path=self.footage_path, set_resolution=self.set_resolution, set_camera=self.set_camera,
                update_scene_duration=self.update_scene_duration, placement=self.placement,
                timing=self.timing, prepare_scene=self.prepare_scene)
        except Exception as ex:  # any failure: nothing was left behind, report and cancel
            if not isinstance(ex, (result.ResultError, RuntimeError)):
                traceback.print_exc()
            self.report({'ERROR'}, f"Import Refined Motion: {ex}")
            return {'CANCELLED'}
        for level, message in imported.messages:
            self.report({level}, message)
        return {'FINISHED'}

    def _target_rig(self, context):
        if not self.use_active_rig:
            return None
        if context.active_object is None:
            raise RuntimeError("'Onto Active Rig' needs an active armature")
        return context.active_object

    # -- staging in the scene (importer.PLACEMENTS, importer.TIMINGS, scene_setup) --
    placement: EnumProperty(
        name="Placement",
        description="Where the motion goes.  A result with a world frame (video, static camera) stands on the "
                    "floor the engine found, its camera placed and tilted there, unless As Filmed; others go on a "
                    "floor guessed from the body (a calibrated multi-view result stays in its cameras' world); the "
                    "footage camera moves with the body, so the overlay still lines up",
        items=(('ORIGIN', "Floor at Origin", "The engine's floor, or the clip's lowest contact, on Z = 0, its first "
                                              "frame above the world origin"),
               ('FLOOR', "Floor", "The engine's floor on Z = 0, or the clip's lowest contact with the camera above "
                                  "the origin"),
               ('CAMERA', "As Filmed", "In front of a camera at the world origin, as the footage saw it")),
        default='ORIGIN',
    )
    timing: EnumProperty(
        name="Timing",
        description="Where the keys go when the result's frame rate differs from the scene's",
        items=(('RESAMPLE', "Whole Frames", "A key on every whole scene frame, the motion resampled"),
               ('EXACT', "Original Timing", "A key per result frame at its own time (fractional scene frames)"),
               ('SCENE_RATE', "Set Scene Rate", "Set the scene's frame rate to the result's, a key per frame")),
        default='RESAMPLE',
    )
    prepare_scene: BoolProperty(
        name="Prepare Scene",
        description="Add a grey World and a sun where the scene has none, and a ground plane on the floor "
                    "(collection 'Refine Motion Ground'), so it renders right away",
        default=True,
    )


# -- Refine ---------------------------------------------------------------------------------------

def _start_job(context: bpy.types.Context, iterations: int | None) -> "tuple[refine.Plan, jobs.Job]":
    """Check the scene's settings and write the job's inputs: (plan, job), not started yet."""
    from . import refine

    prefs = preferences.get(context)
    plan = refine.plan(context, context.scene.refine_motion,
                       smpl_file=prefs.smpl_path if prefs is not None else "", iterations=iterations)
    if context.scene.refine_motion.use_active_rig:
        refine.active_rig(context)  # checked before the engine runs
    runner = placement.choose_runner(*preferences.engine_choice(prefs))
    known = placement.cached_device_text(runner)
    if plan.request.device == "cuda" and known is not None and not known.startswith("CUDA"):
        raise RefineError(f"Device is CUDA GPU but the engine's torch sees none ({known}): "
                          "set Device to Automatic or CPU")
    return plan, jobs.Job(plan.request, runner, plan.name)


def _status_text(job: jobs.Job) -> str:
    if job.cancelling:
        return "Refine Motion: cancelling..."
    if not job.progress[1]:
        return f"Refine Motion: starting the engine ({job.runner.describe()})...  Esc cancels"
    return f"Refine Motion: {100 * job.fraction:.0f}% ({jobs.progress_text(job)})  Esc cancels"


def _redraw_panels(context: bpy.types.Context) -> None:
    for area in context.screen.areas if context.screen else ():
        if area.type == 'VIEW_3D':
            area.tag_redraw()


class REFINEMOTION_OT_refine(bpy.types.Operator):
    """Refine the person's motion in the footage from its 2D keypoints, then add it as an SMPL
    armature with a new action and a footage camera.  Esc cancels and changes nothing"""
    bl_idname = "refinemotion.refine"
    bl_label = "Refine Motion"
    bl_options = {'REGISTER', 'UNDO'}

    iterations: IntProperty(
        name="Iterations",
        description="Outer iterations of the engine (0 = its default; fewer is faster and rougher)",
        default=0,
        min=0,
        options={'SKIP_SAVE'},
    )

    @classmethod
    def poll(cls, context):
        if jobs.active_job() is not None:
            cls.poll_message_set("A refinement is running (Esc cancels it)")
            return False
        return context.scene is not None

    def invoke(self, context, event):
        if bpy.app.background:  # timers do not fire: run to the end here
            return self.execute(context)
        if not self._start(context):
            return {'CANCELLED'}
        self._job.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        context.workspace.status_text_set(_status_text(self._job))
        return {'RUNNING_MODAL'}

    def modal(self, context, event):
        if event.type == 'ESC' and event.value == 'PRESS':
            self._job.cancel()
            self._stop(context)
            return self._finish(context)
        if event.type != 'TIMER':
            return {'PASS_THROUGH'}
        if not self._job.finished:
            context.workspace.status_text_set(_status_text(self._job))
            _redraw_panels(context)
            return {'PASS_THROUGH'}
        self._stop(context)
        return self._finish(context)

    def execute(self, context):
        if not self._start(context):
            return {'CANCELLED'}
        try:
            self._job.run()
        except KeyboardInterrupt:  # Ctrl+C in a terminal running Blender in the background: cancelled
            pass
        return self._finish(context)

    def _start(self, context):
        try:
            self._plan, self._job = _start_job(context, self.iterations)
        except RefineError as ex:
            self.report({'ERROR'}, f"Refine Motion: {ex}")
            return False
        except Exception as ex:  # a bug: report it, the scene is unchanged
            traceback.print_exc()
            self.report({'ERROR'}, f"Refine Motion: unexpected {type(ex).__name__}: {ex}")
            return False
        for warning in self._job.warnings:  # the keypoint reader's notes, frames without evidence
            self.report({'WARNING'}, f"Refine Motion: {warning}")
        self._reported = set(self._job.warnings)  # not again with the import's messages
        return True

    def _stop(self, context):
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        _redraw_panels(context)

    def _finish(self, context):
        """Import the result of a finished job (or report why there is none)."""
        from . import refine, result

        job = self._job
        if job.cancelling:
            self.report({'WARNING'}, "Refine Motion: cancelled; nothing was changed")
            return {'CANCELLED'}
        if job.state == "failed":
            self.report({'ERROR'}, f"Refine Motion: {job.error}")
            return {'CANCELLED'}
        try:
            rig = refine.active_rig(context) if context.scene.refine_motion.use_active_rig else None
            imported = refine.import_result(context, self._plan, job, onto_rig=rig)
        except Exception as ex:  # the importer left nothing behind
            if not isinstance(ex, (result.ResultError, RuntimeError, RefineError)):
                traceback.print_exc()
            self.report({'ERROR'}, f"Refine Motion: cannot import the result ({ex})")
            return {'CANCELLED'}
        for level, message in imported.messages:
            if message not in self._reported:
                self.report({level}, message)
        return {'FINISHED'}


# -- Multi-View: the Views list --------------------------------------------------------------------

class REFINEMOTION_OT_view_add(bpy.types.Operator):
    """Add a camera to the Multi-View list: its footage, keypoints and optional Blender camera"""
    bl_idname = "refinemotion.view_add"
    bl_label = "Add View"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        settings = context.scene.refine_motion
        settings.views.add()
        settings.active_view = len(settings.views) - 1
        return {'FINISHED'}


class REFINEMOTION_OT_view_remove(bpy.types.Operator):
    """Remove the selected camera from the Multi-View list"""
    bl_idname = "refinemotion.view_remove"
    bl_label = "Remove View"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        settings = context.scene.refine_motion
        return 0 <= settings.active_view < len(settings.views)

    def execute(self, context):
        settings = context.scene.refine_motion
        settings.views.remove(settings.active_view)
        settings.active_view = max(0, min(settings.active_view, len(settings.views) - 1))
        return {'FINISHED'}


# -- engine set-up (preferences) ------------------------------------------------------------------

def online_access() -> bool:
    """Whether Blender allows network access (Preferences > System > Network)."""
    return getattr(bpy.app, "online_access", True)


def _redraw_preferences(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == 'PREFERENCES':
                area.tag_redraw()


class REFINEMOTION_OT_setup_worker(bpy.types.Operator):
    """Create a Python environment for the engine in the add-on's user folder and install the
    pinned torch and engine packages into it with pip (downloads 1-3 GB; Esc cancels)"""
    bl_idname = "refinemotion.setup_worker"
    bl_label = "Set Up Worker Environment"

    @classmethod
    def poll(cls, context):
        task = worker_env.current_task()
        if task is not None and task.state == "running":
            cls.poll_message_set("The set-up is running")
            return False
        return True

    def execute(self, context):
        if not online_access():
            self.report({'ERROR'}, "Set Up Worker Environment needs the internet: allow Online Access in "
                                   "Preferences > System > Network, or run the commands shown by hand")
            return {'CANCELLED'}
        try:
            commands = worker_env.setup_commands()
        except RefineError as ex:
            self.report({'ERROR'}, str(ex))
            return {'CANCELLED'}
        task = worker_env.SetupTask(commands, placement.process_dir() / "worker-setup.log")
        if bpy.app.background:
            task.run()
            return self._finish(task)
        self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {'RUNNING_MODAL'}

    def modal(self, context, event):
        task = worker_env.current_task()
        if event.type == 'ESC' and event.value == 'PRESS':
            task.cancel()
        elif event.type != 'TIMER':
            return {'PASS_THROUGH'}
        _redraw_preferences(context)
        if not task.poll():
            return {'PASS_THROUGH'}
        context.window_manager.event_timer_remove(self._timer)
        return self._finish(task)

    def _finish(self, task):
        placement.forget_devices()
        if task.state == "done":
            self.report({'INFO'}, f"Worker environment ready: {placement.default_worker_python()}")
            return {'FINISHED'}
        if task.state == "cancelled":
            self.report({'WARNING'}, "Set Up Worker Environment: cancelled (run it again to finish)")
            return {'CANCELLED'}
        self.report({'ERROR'}, f"Set Up Worker Environment: {task.error} (log: {task.log_path})")
        return {'CANCELLED'}


class REFINEMOTION_OT_check_device(bpy.types.Operator):
    """Ask the engine's Python again which device (CUDA GPU or CPU) torch runs on"""
    bl_idname = "refinemotion.check_device"
    bl_label = "Check Again"

    def execute(self, context):
        placement.forget_devices()
        _redraw_preferences(context)
        return {'FINISHED'}


def menu_import(self: bpy.types.Menu, _context: bpy.types.Context) -> None:
    self.layout.operator(REFINEMOTION_OT_import_result.bl_idname, text="Refined Motion (.npz)")


classes = (REFINEMOTION_OT_import_result, REFINEMOTION_OT_refine, REFINEMOTION_OT_view_add,
           REFINEMOTION_OT_view_remove, REFINEMOTION_OT_setup_worker, REFINEMOTION_OT_check_device)


def attach() -> None:
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def detach() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
