# SPDX-License-Identifier: GPL-3.0-or-later
"""3D View sidebar panel (N panel, "Refine Motion" tab)."""

import bpy

from . import operators, preferences


class REFINEMOTION_PT_main(bpy.types.Panel):
    bl_idname = "REFINEMOTION_PT_main"
    bl_label = "Refine Motion"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Refine Motion"

    def draw(self, context):
        draw_main(self.layout, context)


def draw_main(layout, context):
    """Panel body, kept apart from the Panel class so it can be drawn into any layout."""
    settings = context.scene.refine_motion
    prefs = preferences.get(context)

    layout.label(text="Body model: " + preferences.body_model_label(prefs), icon='ARMATURE_DATA')

    layout.use_property_split = True
    layout.use_property_decorate = False

    layout.prop(settings, "mode")

    if settings.mode != 'SINGLE_FRAME':
        col = layout.column(align=True)
        col.prop(settings, "frame_start", text="Frame Start")
        col.prop(settings, "frame_end", text="End")

    col = layout.column()
    col.prop(settings, "keypoint_trust")
    sub = col.column()
    sub.active = settings.mode != 'SINGLE_FRAME'
    sub.prop(settings, "smoothing")

    layout.separator()
    layout.operator(operators.REFINEMOTION_OT_import_result.bl_idname, icon='IMPORT')


classes = (REFINEMOTION_PT_main,)
