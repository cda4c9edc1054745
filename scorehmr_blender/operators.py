# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators.  The numpy-based modules they use load on first use, not with the add-on."""

import traceback

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper


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
        description="Add a camera at the world origin matching the footage's intrinsics",
        default=True,
    )
    footage_path: StringProperty(
        name="Footage",
        description="Optional movie or image sequence to show behind the camera view",
        subtype='FILE_PATH',
    )
    set_resolution: BoolProperty(
        name="Set Scene Resolution",
        description="Set the scene's render resolution to the footage's",
        default=False,
    )
    update_scene_duration: BoolProperty(
        name="Update Scene Duration",
        description="Extend the scene's end frame to the end of the motion",
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
                footage_path=self.footage_path, set_resolution=self.set_resolution,
                update_scene_duration=self.update_scene_duration)
        except Exception as ex:  # noqa: BLE001 -- any failure: nothing was left behind, report and cancel
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


def menu_import(self, _context):
    self.layout.operator(REFINEMOTION_OT_import_result.bl_idname, text="Refined Motion (.npz)")


classes = (REFINEMOTION_OT_import_result,)


def attach():
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def detach():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
