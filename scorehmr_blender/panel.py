# SPDX-License-Identifier: GPL-3.0-or-later
"""3D View sidebar panel (N panel, "Refine Motion" tab)."""

from typing import TYPE_CHECKING

import bpy

from . import operators, preferences
from .runner import job as jobs
from .runner import placement

if TYPE_CHECKING:
    from .properties import RefineMotionSettings, ShotInputs


class REFINEMOTION_PT_main(bpy.types.Panel):
    """The tab's header; the steps are its sub-panels, in the user's order: Refine (footage, keypoints,
    frames, the button; its Tuning closed), Import Result, Retarget & Export."""
    bl_idname = "REFINEMOTION_PT_main"
    bl_label = "Refine Motion"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Refine Motion"

    def draw(self, context):
        pass


class REFINEMOTION_PT_refine(bpy.types.Panel):
    bl_idname = "REFINEMOTION_PT_refine"
    bl_label = "Refine"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Refine Motion"
    bl_parent_id = "REFINEMOTION_PT_main"

    def draw(self, context):
        draw_refine(self.layout, context)


def draw_refine(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The user's order: footage, keypoints (a file, clip tracks or detected), the mode and frames (the
    whole footage unless a range is set), then the Refine button, or the running job's progress; the
    latest job's warnings."""
    settings = context.scene.refine_motion
    multi_view = settings.mode == 'MULTI_VIEW'
    layout.use_property_split = True
    layout.use_property_decorate = False

    draw_shot_inputs(layout.column(), settings, multi_view)
    if multi_view:
        draw_views(layout, settings)

    col = layout.column()
    col.prop(settings, "mode")
    if settings.mode != 'SINGLE_FRAME':
        col.prop(settings, "use_footage_range")
        sub = col.column(align=True)
        sub.active = not settings.use_footage_range
        sub.prop(settings, "frame_start", text="Frame Start")
        sub.prop(settings, "frame_end", text="End")
    col.prop(settings, "footage_rate")
    col.prop(settings, "use_active_rig")

    layout.separator()
    job = jobs.active_job()
    if job is None:
        kind, _, _ = placement.engine_status(*preferences.engine_choice(preferences.get(context)))
        if kind == "none":
            layout.label(text="Engine not set up: see the add-on preferences", icon='ERROR')
        layout.operator(operators.REFINEMOTION_OT_refine.bl_idname, icon='PLAY')
        for warning in jobs.LAST_WARNINGS:
            layout.label(text=warning, icon='ERROR')
        return
    text = "Cancelling..." if job.cancelling else jobs.progress_text(job)
    if "progress" in bpy.types.UILayout.bl_rna.functions:  # Blender 4.0+
        layout.progress(factor=job.fraction, type='BAR', text=text)
    else:
        layout.label(text=f"{text} ({100 * job.fraction:.0f}%)", icon='SORTTIME')
    layout.label(text="Esc cancels", icon='CANCEL')


class REFINEMOTION_PT_tuning(bpy.types.Panel):
    bl_idname = "REFINEMOTION_PT_tuning"
    bl_label = "Tuning"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Refine Motion"
    bl_parent_id = "REFINEMOTION_PT_refine"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context):
        draw_tuning(self.layout, context)


def draw_tuning(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """What most refinements leave as it is: the body model, the engine's weights, the person's height, the
    keypoint files' first frame number, the initial estimate, the camera's intrinsics and the device."""
    settings = context.scene.refine_motion
    layout.label(text="Body model: " + preferences.body_model_label(preferences.get(context)), icon='ARMATURE_DATA')
    layout.use_property_split = True
    layout.use_property_decorate = False
    col = layout.column()
    col.prop(settings, "keypoint_trust")
    sub = col.column()
    sub.active = settings.mode == 'VIDEO'  # the temporal terms are video-only
    sub.prop(settings, "smoothing")
    col.prop(settings, "height")
    col.prop(settings, "keypoints_first_auto")
    if not settings.keypoints_first_auto:
        col.prop(settings, "keypoints_first_number")
    col.prop(settings, "init_path")
    col.prop(settings, "intrinsics")
    if settings.intrinsics == 'MANUAL':
        col.prop(settings, "focal_length")
    col.prop(settings, "device")


class REFINEMOTION_PT_import(bpy.types.Panel):
    bl_idname = "REFINEMOTION_PT_import"
    bl_label = "Import Result"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Refine Motion"
    bl_parent_id = "REFINEMOTION_PT_main"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context):
        self.layout.operator(operators.REFINEMOTION_OT_import_result.bl_idname, icon='IMPORT')


def draw_shot_inputs(layout: bpy.types.UILayout, inputs: "ShotInputs", with_camera: bool) -> None:
    """One camera's footage and keypoints (the main shot's or a view's), and its Blender camera."""
    layout.prop(inputs, "footage_source")
    layout.prop(inputs, "footage_clip" if inputs.footage_source == 'CLIP' else "footage_path")
    layout.prop(inputs, "keypoints_source")
    if inputs.keypoints_source == 'FILE':
        layout.prop(inputs, "keypoints_path")
    elif inputs.keypoints_source == 'DETECT':
        layout.prop(inputs, "detect_markers")
    if with_camera:
        layout.prop(inputs, "camera_object")


class REFINEMOTION_UL_views(bpy.types.UIList):
    """Views 1, 2, ... of a multi-view shot: footage and Blender camera."""

    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_propname, index=0):
        clip = item.footage_clip if item.footage_source == 'CLIP' else None
        footage = clip.name if clip is not None else bpy.path.basename(item.footage_path) or "no footage"
        row = layout.row()
        row.label(text=f"View {index + 1}: {footage}", icon='FILE_MOVIE')
        if item.camera_object is not None:
            row.label(text=item.camera_object.name, icon='CAMERA_DATA')


def draw_views(layout: bpy.types.UILayout, settings: "RefineMotionSettings") -> None:
    """Multi-View: the other cameras (the footage above is view 0) and the selected one's inputs."""
    layout.label(text="Views (the footage above is view 0)", icon='OUTLINER_OB_CAMERA')
    layout.template_list(REFINEMOTION_UL_views.__name__, "", settings, "views", settings, "active_view", rows=3)
    row = layout.row(align=True)
    row.operator(operators.REFINEMOTION_OT_view_add.bl_idname, icon='ADD')
    row.operator(operators.REFINEMOTION_OT_view_remove.bl_idname, icon='REMOVE')
    if 0 <= settings.active_view < len(settings.views):
        draw_shot_inputs(layout.column(), settings.views[settings.active_view], with_camera=True)


class REFINEMOTION_PT_retarget(bpy.types.Panel):
    bl_idname = "REFINEMOTION_PT_retarget"
    bl_label = "Retarget & Export"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Refine Motion"
    bl_parent_id = "REFINEMOTION_PT_main"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context):
        draw_retarget(self.layout, context)


def draw_retarget(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """SMPL armature -> character: the reviewable mapping list, Retarget; BVH/FBX export."""
    from . import retarget_ops

    settings = retarget_ops.settings_of(context)
    layout.use_property_split = True
    layout.use_property_decorate = False

    col = layout.column()
    col.prop(settings, "source")
    col.prop(settings, "target")
    col.prop(settings, "preset")
    col.prop(settings, "in_place")
    layout.operator(retarget_ops.REFINEMOTION_OT_retarget_build_mapping.bl_idname, icon='BONE_DATA')
    layout.template_list(retarget_ops.REFINEMOTION_UL_retarget_pairs.__name__, "", settings, "pairs",
                         settings, "active_pair", rows=6)
    row = layout.row(align=True)
    row.operator(retarget_ops.REFINEMOTION_OT_retarget_mapping_load.bl_idname, icon='FILEBROWSER')
    row.operator(retarget_ops.REFINEMOTION_OT_retarget_mapping_save.bl_idname, icon='FILE_TICK')
    layout.prop(settings, "action_name")
    layout.operator(retarget_ops.REFINEMOTION_OT_retarget.bl_idname, icon='ARMATURE_DATA')

    layout.separator()
    layout.label(text="Export Active Armature", icon='EXPORT')
    row = layout.row(align=True)
    row.operator(retarget_ops.REFINEMOTION_OT_export_bvh.bl_idname, text="BVH")
    row.operator(retarget_ops.REFINEMOTION_OT_export_fbx.bl_idname, text="FBX")


classes = (REFINEMOTION_UL_views, REFINEMOTION_PT_main, REFINEMOTION_PT_refine, REFINEMOTION_PT_tuning,
           REFINEMOTION_PT_import, REFINEMOTION_PT_retarget)
