# SPDX-License-Identifier: GPL-3.0-or-later
"""Retarget and export: settings (``scene.refine_motion_retarget``), the editable
bone mapping list and the operators.  The numpy-based modules (retarget, export)
load when an operator runs, not with the add-on."""

import os

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import retarget_presets

PRESET_ITEMS = (
    ('AUTO', "Automatic", "Use a preset whose bone names the character has, else map by the skeleton's shape "
              "(topology and bone lengths)"),
    *((key.upper(), label, f"Map onto the {label} bone names")
      for key, label in retarget_presets.PRESET_LABELS.items()),
)
MAPPING_FOLDER = "retarget_mappings"


def _is_smpl(obj: bpy.types.Object) -> bool:
    return obj.type == 'ARMATURE' and all(n in obj.data.bones for n in retarget_presets.SMPL_BONES)


def _poll_source(_settings: "RetargetSettings", obj: bpy.types.Object) -> bool:
    return _is_smpl(obj)


def _poll_target(_settings: "RetargetSettings", obj: bpy.types.Object) -> bool:
    return obj.type == 'ARMATURE' and not _is_smpl(obj)


def _target_changed(settings: "RetargetSettings", _context: bpy.types.Context) -> None:
    """A new Character drops a mapping made for another (Retarget then builds one from the preset)."""
    if settings.target is not None and any(p.target and p.target not in settings.target.data.bones
                                           for p in settings.pairs):
        settings.pairs.clear()


def offer_source(scene: bpy.types.Scene, armature_obj: bpy.types.Object) -> None:
    """Fill in SMPL Armature with a just-imported rig when it is empty (or its rig is gone)."""
    settings = getattr(scene, "refine_motion_retarget", None)
    if settings is not None and (settings.source is None or settings.source.name not in scene.objects):
        settings.source = armature_obj


class RetargetPair(bpy.types.PropertyGroup):
    source: StringProperty(name="SMPL Bone", description="Bone of the SMPL armature")
    target: StringProperty(name="Character Bone",
                           description="Bone of the character that follows the SMPL bone (empty: not mapped)")


class RetargetSettings(bpy.types.PropertyGroup):
    source: PointerProperty(
        type=bpy.types.Object, name="SMPL Armature", poll=_poll_source,
        description="Animated SMPL armature (from Import Refined Motion) whose action is retargeted")
    target: PointerProperty(
        type=bpy.types.Object, name="Character", poll=_poll_target, update=_target_changed,
        description="Character armature that gets the motion as a new action")
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default='AUTO',
                         description="How Build Mapping pairs the bones")
    pairs: CollectionProperty(type=RetargetPair)
    active_pair: IntProperty(name="Active Pair")
    in_place: BoolProperty(
        name="In Place", default=False,
        description="Keep the character over its rest position (only its height follows the motion) "
                    "instead of travelling like the SMPL rig (root motion)")
    action_name: StringProperty(
        name="Action Name",
        description="Name of the new action (default: the SMPL action's name + '_retarget'); "
                    "an existing action of that name is kept")


def settings_of(context: bpy.types.Context) -> "RetargetSettings":
    return context.scene.refine_motion_retarget


def mapping_of(settings: "RetargetSettings") -> dict[str, str]:
    """{SMPL bone: character bone} of the list's filled rows."""
    return {pair.source: pair.target for pair in settings.pairs if pair.target}


def fill_pairs(settings: "RetargetSettings", mapping: dict[str, str]) -> list[str]:
    """One row per SMPL bone, targets from ``mapping``; returns source names that are
    not SMPL bones (left out)."""
    settings.pairs.clear()
    for name in retarget_presets.SMPL_BONES:
        pair = settings.pairs.add()
        pair.source, pair.target = name, mapping.get(name, "")
    settings.active_pair = 0
    return [name for name in mapping if name not in retarget_presets.SMPL_BONES]


def mapping_folder(create: bool = False) -> str:
    """Folder for saved mappings: the extension's user data folder, or for a
    non-extension install (a script, tests) Blender's user config folder."""
    try:
        return bpy.utils.extension_path_user(__package__, path=MAPPING_FOLDER, create=create)
    except ValueError:  # not installed as an extension
        return bpy.utils.user_resource('CONFIG', path=os.path.join("refine_motion", MAPPING_FOLDER), create=create)


class REFINEMOTION_UL_retarget_pairs(bpy.types.UIList):
    """SMPL bone -> character bone rows; the target is picked from the character's bones."""

    def draw_item(self, _context, layout, data, item, _icon, _active_data, _active_propname, _index=0):
        split = layout.split(factor=0.4)
        split.label(text=item.source, icon='BONE_DATA')
        if data.target is not None:
            split.prop_search(item, "target", data.target.data, "bones", text="")
        else:
            split.prop(item, "target", text="")


class REFINEMOTION_OT_retarget_build_mapping(bpy.types.Operator):
    """Fill the bone mapping list for the character from the preset (or automatically)"""
    bl_idname = "refinemotion.retarget_build_mapping"
    bl_label = "Build Mapping"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return settings_of(context).target is not None

    def execute(self, context):
        from . import retarget

        settings = settings_of(context)
        preset = None if settings.preset == 'AUTO' else settings.preset.lower()
        mapping, used = retarget.build_mapping(settings.target, preset)
        fill_pairs(settings, mapping)
        how = f"preset {retarget_presets.PRESET_LABELS[used]}" if used else "the skeleton's shape"
        self.report({'INFO'}, f"Mapped {len(mapping)} of {len(retarget_presets.SMPL_BONES)} SMPL bones "
                              f"onto '{settings.target.name}' by {how}")
        return {'FINISHED'}


class REFINEMOTION_OT_retarget_mapping_save(bpy.types.Operator, ExportHelper):
    """Save the bone mapping list as a JSON file"""
    bl_idname = "refinemotion.retarget_mapping_save"
    bl_label = "Save Mapping"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={'HIDDEN'})

    @classmethod
    def poll(cls, context):
        return any(pair.target for pair in settings_of(context).pairs)

    def invoke(self, context, event):
        if not self.filepath:
            target = settings_of(context).target
            self.filepath = os.path.join(mapping_folder(create=True), (target.name if target else "mapping") + ".json")
        return ExportHelper.invoke(self, context, event)

    def execute(self, context):
        try:
            text = retarget_presets.mapping_to_json(mapping_of(settings_of(context)))
            with open(self.filepath, "w", encoding="utf-8") as file:
                file.write(text)
        except (OSError, retarget_presets.MappingError) as ex:
            self.report({'ERROR'}, f"Save Mapping: {ex}")
            return {'CANCELLED'}
        self.report({'INFO'}, f"Saved the bone mapping to {self.filepath}")
        return {'FINISHED'}


class REFINEMOTION_OT_retarget_mapping_load(bpy.types.Operator, ImportHelper):
    """Load a bone mapping JSON file into the mapping list"""
    bl_idname = "refinemotion.retarget_mapping_load"
    bl_label = "Load Mapping"
    bl_options = {'REGISTER', 'UNDO'}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={'HIDDEN'})

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = mapping_folder(create=True) + os.sep
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        try:
            with open(self.filepath, encoding="utf-8") as file:
                mapping = retarget_presets.mapping_from_json(file.read())
        except (OSError, UnicodeDecodeError, retarget_presets.MappingError) as ex:
            self.report({'ERROR'}, f"Load Mapping: {os.path.basename(self.filepath)}: {ex}")
            return {'CANCELLED'}
        settings = settings_of(context)
        unknown = fill_pairs(settings, mapping)
        if unknown:
            self.report({'WARNING'}, f"Left out bones that are not SMPL bones: {', '.join(unknown)}")
        if settings.target is not None:
            missing = [t for t in mapping.values() if t not in settings.target.data.bones]
            if missing:
                self.report({'WARNING'}, f"'{settings.target.name}' has no bones {', '.join(missing)}")
        return {'FINISHED'}


class REFINEMOTION_OT_retarget(bpy.types.Operator):
    """Bake the SMPL armature's motion onto the character as a new action, following
    the mapping list (built from the preset first if it is empty)"""
    bl_idname = "refinemotion.retarget"
    bl_label = "Retarget"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        settings = settings_of(context)
        return settings.source is not None and settings.target is not None

    def execute(self, context):
        from . import retarget

        settings = settings_of(context)
        source, target = settings.source, settings.target
        if context.mode != 'OBJECT':
            bpy.ops.object.mode_set(mode='OBJECT')
        try:
            mapping = mapping_of(settings)
            if not mapping:
                mapping, _ = retarget.build_mapping(target, None if settings.preset == 'AUTO'
                                                    else settings.preset.lower())
                fill_pairs(settings, mapping)
            action = retarget.retarget(source, target, mapping=mapping, name=settings.action_name.strip() or None,
                                       in_place=settings.in_place)
        except ValueError as ex:  # MappingError included
            self.report({'ERROR'}, f"Retarget: {ex}")
            return {'CANCELLED'}
        for warning in retarget.mapping_warnings(target, mapping):
            self.report({'WARNING'}, warning)
        start, end = action.frame_range
        self.report({'INFO'}, f"Retargeted {len(mapping)} bones onto '{target.name}': action '{action.name}', "
                              f"frames {start:g}-{end:g}")
        return {'FINISHED'}


class _ExportArmature(ExportHelper):
    """Shared parts of the BVH and FBX export operators (the active armature)."""

    overwrite: BoolProperty(name="Overwrite", default=False,
                            description="Replace an existing file (otherwise exporting onto one fails)")
    confirmed: BoolProperty(options={'HIDDEN', 'SKIP_SAVE'},
                            description="The file browser asked before replacing a file (set by invoke)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return obj is not None and obj.type == 'ARMATURE' and obj.animation_data is not None \
            and obj.animation_data.action is not None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            self.filepath = bpy.path.clean_name(context.active_object.animation_data.action.name) + self.filename_ext
        self.confirmed = True  # the file browser confirms replacing an existing file itself
        return ExportHelper.invoke(self, context, event)

    def execute(self, context: bpy.types.Context) -> set[str]:
        from . import export

        try:
            path = self.write(export, context.active_object)
        except (OSError, ValueError, RuntimeError) as ex:
            self.report({'ERROR'}, f"{self.bl_label}: {ex}")
            return {'CANCELLED'}
        self.report({'INFO'}, f"Exported '{context.active_object.name}' to {path}")
        return {'FINISHED'}


class REFINEMOTION_OT_export_bvh(bpy.types.Operator, _ExportArmature):
    """Export the active armature's action as BVH (the action's frame range)"""
    bl_idname = "refinemotion.export_bvh"
    bl_label = "Export BVH"

    filename_ext = ".bvh"
    filter_glob: StringProperty(default="*.bvh", options={'HIDDEN'})

    def write(self, export, obj):
        return export.export_bvh(obj, self.filepath, overwrite=self.overwrite or self.confirmed,
                                 up_axis=self.up_axis)

    up_axis: EnumProperty(
        name="Up Axis",
        description="The file's up axis (the armature is written where it stands in the world)",
        items=(('Y', "Y Up", "What Blender's BVH import and most programs expect"),
               ('Z', "Z Up", "Blender's own axes (import it with Up Z, Forward Y)")),
        default='Y',
    )


class REFINEMOTION_OT_export_fbx(bpy.types.Operator, _ExportArmature):
    """Export the active armature and its action as FBX (the action's frame range)"""
    bl_idname = "refinemotion.export_fbx"
    bl_label = "Export FBX"

    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={'HIDDEN'})
    include_meshes: BoolProperty(name="Include Meshes", default=True,
                                 description="Export the armature's child meshes (its skinned body) too")

    def write(self, export, obj):
        return export.export_fbx(obj, self.filepath, overwrite=self.overwrite or self.confirmed,
                                 include_meshes=self.include_meshes)


classes = (
    RetargetPair,
    RetargetSettings,
    REFINEMOTION_UL_retarget_pairs,
    REFINEMOTION_OT_retarget_build_mapping,
    REFINEMOTION_OT_retarget_mapping_save,
    REFINEMOTION_OT_retarget_mapping_load,
    REFINEMOTION_OT_retarget,
    REFINEMOTION_OT_export_bvh,
    REFINEMOTION_OT_export_fbx,
)


def attach() -> None:
    bpy.types.Scene.refine_motion_retarget = PointerProperty(type=RetargetSettings)


def detach() -> None:
    del bpy.types.Scene.refine_motion_retarget
